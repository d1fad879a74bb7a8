"""The microphone: PyAudio capture published as AudioDataStamped + AudioInfo (transient local).

The device is chosen by index or by a substring of its name. 16 kHz is asked for first; USB
microphones often offer only 44.1/48 kHz, so the device's native rate is the fallback and the
interaction node resamples. The PortAudio callback only copies into a bounded queue and counts
overflows; a timer publishes from that queue on the executor thread.
"""
from __future__ import annotations

import queue
import sys
from dataclasses import dataclass

import rclpy
from audio_common_msgs.msg import AudioDataStamped, AudioInfo
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node

from ..core.protocol import SAMPLE_RATE_HZ
from . import messages, qos, runtime
from .portaudio import quiet_portaudio

QUEUE_BLOCKS = 100  # 100 blocks of 100 ms: 10 s of audio waiting for the executor at most


class CaptureError(RuntimeError):
    """No usable input device; the message names the device and the rates tried."""


@dataclass(frozen=True)
class InputChoice:
    index: int
    name: str
    rate_hz: int
    channels: int


def choose_input(pa, device: str, channels: int, preferred_rate_hz: int) -> InputChoice:
    """Pick an input device and a rate it accepts (preferred first, then its native rate)."""
    inputs = []
    for i in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(i)
        if info.get("maxInputChannels", 0) > 0:
            inputs.append(info)
    if not inputs:
        raise CaptureError("no audio input device exists (no sound card, or PortAudio cannot "
                           "see it: check `arecord -l` and that this user may open it)")
    if device.strip() == "":
        try:
            chosen = pa.get_default_input_device_info()
        except OSError:
            chosen = inputs[0]
    elif device.strip().lstrip("-").isdigit():
        matches = [d for d in inputs if d["index"] == int(device)]
        if not matches:
            raise CaptureError(f"input device index {device} does not exist; inputs: "
                               + "; ".join(f"{d['index']}: {d['name']}" for d in inputs))
        chosen = matches[0]
    else:
        matches = [d for d in inputs if device.lower() in d["name"].lower()]
        if not matches:
            raise CaptureError(f"no input device name contains {device!r}; inputs: "
                               + "; ".join(f"{d['index']}: {d['name']}" for d in inputs))
        chosen = matches[0]
    channels = min(channels, int(chosen["maxInputChannels"]))
    import pyaudio

    tried = []
    for rate in dict.fromkeys([preferred_rate_hz, int(chosen["defaultSampleRate"]), 48000,
                               44100]):
        tried.append(rate)
        try:
            if pa.is_format_supported(rate, input_device=chosen["index"],
                                      input_channels=channels, input_format=pyaudio.paInt16):
                return InputChoice(int(chosen["index"]), chosen["name"], rate, channels)
        except ValueError:
            continue
    raise CaptureError(f"input device {chosen['name']!r} accepts none of the rates "
                       f"{tried} Hz with {channels} channel(s) of 16-bit audio")


class CaptureNode(Node):
    """Publishes microphone audio; opening the device happens on construction."""

    def __init__(self, node_name: str = "audio_capture", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        describe = lambda text: ParameterDescriptor(description=text)  # noqa: E731
        self.declare_parameter("device", "", describe("Input device: index or name substring "
                                                      "('' = the default input)."))
        self.declare_parameter("sample_rate", SAMPLE_RATE_HZ,
                               describe("Preferred rate; the device's own is the fallback."))
        self.declare_parameter("channels", 1, describe("Channels to capture."))
        self.declare_parameter("chunk_ms", 100, describe("Audio per message in ms."))
        self.declare_parameter("frame_id", "microphone", describe("Header frame_id."))
        import pyaudio

        quiet_portaudio(self.get_logger().debug)  # ALSA/JACK chatter would bury our error
        self._pa = pyaudio.PyAudio()
        try:
            self.choice = choose_input(self._pa, str(self.get_parameter("device").value),
                                       int(self.get_parameter("channels").value),
                                       int(self.get_parameter("sample_rate").value))
        except CaptureError:
            self._pa.terminate()
            raise
        frames = max(1, self.choice.rate_hz * int(self.get_parameter("chunk_ms").value) // 1000)
        self._queue: queue.Queue[tuple[bytes, float]] = queue.Queue(maxsize=QUEUE_BLOCKS)
        self.overflows = 0  # blocks dropped because the executor did not keep up
        self.device_overruns = 0  # PortAudio reported input overflow
        self._frame_id = self.get_parameter("frame_id").value
        self._info_pub = self.create_publisher(AudioInfo, "audio_info", qos.LATCHED)
        self._audio_pub = self.create_publisher(AudioDataStamped, "audio", qos.MICROPHONE)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", qos.PERIODIC)
        self._info_pub.publish(messages.audio_info(self.choice.rate_hz, self.choice.channels))
        self._stream = self._pa.open(format=pyaudio.paInt16, channels=self.choice.channels,
                                     rate=self.choice.rate_hz, input=True,
                                     input_device_index=self.choice.index,
                                     frames_per_buffer=frames, stream_callback=self._on_block)
        self._timer = self.create_timer(frames / self.choice.rate_hz / 2, self._publish_pending)
        self._diag_timer = self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(f"capturing from {self.choice.name!r} (index {self.choice.index})"
                               f" at {self.choice.rate_hz} Hz, {self.choice.channels} channel(s)")

    def _on_block(self, data, frame_count, time_info, status):
        """PortAudio thread: copy and go; never block."""
        import pyaudio

        if status & pyaudio.paInputOverflow:
            self.device_overruns += 1
        try:
            self._queue.put_nowait((bytes(data), self.get_clock().now().nanoseconds))
        except queue.Full:
            self.overflows += 1
        return None, pyaudio.paContinue

    def _publish_pending(self) -> None:
        while True:
            try:
                data, stamp_ns = self._queue.get_nowait()
            except queue.Empty:
                return
            stamp = rclpy.time.Time(nanoseconds=stamp_ns).to_msg()
            self._audio_pub.publish(messages.audio_message(data, stamp, self._frame_id))

    def _publish_diagnostics(self) -> None:
        level = "WARN" if self.overflows or self.device_overruns else "OK"
        self._diag_pub.publish(messages.diagnostics(
            self.get_clock().now().to_msg(), f"{self.get_fully_qualified_name()}: capture",
            self.choice.name, level, "capturing",
            {"device": self.choice.name, "sample_rate_hz": str(self.choice.rate_hz),
             "channels": str(self.choice.channels), "queue_overflow_blocks": str(self.overflows),
             "device_overruns": str(self.device_overruns)}))

    def close(self) -> None:
        """Stop the stream and release PortAudio (idempotent)."""
        stream, self._stream = getattr(self, "_stream", None), None
        if stream is not None:
            stream.stop_stream()
            stream.close()
        if getattr(self, "_pa", None) is not None:
            self._pa.terminate()
            self._pa = None


def main(args: list[str] | None = None) -> int:
    """Entry point: ``ros2 run audio_interaction_ros capture_node``."""
    return runtime.run(CaptureNode, "capture_node", args,
                       build_errors=(CaptureError, OSError, ImportError, *runtime.BUILD_ERRORS))


if __name__ == "__main__":
    sys.exit(main())
