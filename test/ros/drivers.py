"""Test stand-ins shaped like what robots run around this node.

The two audio_common capture drivers (their node names, topics, QoS, buffer sizes, stamps) and a
ros4hri consumer (libhri's subscriptions). Shared by test_audio_stacks.py and, in the mgonzs13
prefix, mgonzs13_checks.py.
"""
from __future__ import annotations

import contextlib
import time
from collections import deque
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import (DurabilityPolicy, QoSProfile, qos_profile_sensor_data,
                       qos_profile_system_default)
from std_msgs.msg import String

from audio_interaction_ros.ros.interaction_node import InteractionNode

from ..conftest import mp3_packets
from .conftest import spin_until

REPO = Path(__file__).resolve().parents[2]
BEEP_REPLY = "I hear a beep."


def toy_model_dir() -> Path:
    """Return the project's toy model (build/toy-model; trained there in a minute if absent)."""
    from audio_interaction_ros.toy import build

    return build.ensure_toy_model(REPO / "build" / "toy-model")


def beep(rate: int = 16000) -> np.ndarray:
    """int16 mono: 0.8 s silence, 0.4 s of 1 kHz at half scale, 1.6 s silence."""
    t = np.arange(int(0.4 * rate)) / rate
    tone = 0.5 * np.sin(2 * np.pi * 1000 * t)
    mono = np.concatenate([np.zeros(int(0.8 * rate)), tone, np.zeros(int(1.6 * rate))])
    return (mono * 32767).astype(np.int16)


def interaction_node(context, model: Path, **overrides) -> InteractionNode:
    """Start the interaction node, configured and activated, remapped as a launch file would."""
    remaps = overrides.pop("remap", {})
    params = dict(model=str(model), device="cpu", temperature=0.0, autostart=False,
                  diagnostics_period_s=0.2, **overrides)
    node = InteractionNode(
        context=context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
        cli_args=["--ros-args", *[a for k, v in remaps.items() for a in ("-r", f"{k}:={v}")]])
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    return node


class Spinner:
    """Spins the executors of several contexts in turn (what spin_until needs)."""

    def __init__(self) -> None:
        self.executors: dict[object, SingleThreadedExecutor] = {}

    def add_node(self, node) -> None:
        context = node.context
        if context not in self.executors:
            self.executors[context] = SingleThreadedExecutor(context=context)
        self.executors[context].add_node(node)

    def spin_once(self, timeout_sec: float) -> None:
        for executor in self.executors.values():
            executor.spin_once(timeout_sec=timeout_sec / len(self.executors))


@contextlib.contextmanager
def running(*nodes):
    """Spin ``nodes`` (of any contexts); shut them all down afterwards."""
    spinner = Spinner()
    for node in nodes:
        spinner.add_node(node)
    try:
        yield spinner
    finally:
        for executor in spinner.executors.values():
            executor.shutdown()
        for node in nodes:
            if hasattr(node, "on_shutdown"):
                node.on_shutdown(None)
            node.destroy_node()


def diagnostics(node) -> dict[str, str]:
    """Return the node's latest /diagnostics values, read the way its timer builds them."""
    seen = {}
    original = node._diagnostics_pub.publish
    node._diagnostics_pub.publish = lambda msg: (seen.update(
        {kv.key: kv.value for kv in msg.status[0].values}), original(msg))
    node._publish_diagnostics()
    node._diagnostics_pub.publish = original
    return seen


def answers_a_beep(executor, node, tts, driver, audio_input: str) -> None:
    """Check that the node answers ``driver``'s beep on the TTS topic.

    It reads ``driver``'s topic as ``audio_input`` says, and rejected nothing on the way.
    """
    # (auto: until discovery shows the driver's publisher, the node keeps the stamped type)
    assert spin_until(executor, lambda: audio_input in diagnostics(node)["audio_input"] + " ", 10)
    if isinstance(driver, RosDriversCapture):  # audio sent before the latched info arrives is
        assert spin_until(executor, lambda: node._ingest.format is not None, 10)  # refused
    driver.play(beep())
    assert spin_until(executor, lambda: tts.speech, 60), diagnostics(node)
    assert tts.speech[0] == BEEP_REPLY
    values = diagnostics(node)
    assert not [k for k in values if k.startswith("input_messages.")], values


class SpeechListener:
    """What the robot's TTS reads: /audio_interaction/speech."""

    def __init__(self, context) -> None:
        self.node = rclpy.create_node("tts_listener", context=context)
        self.speech: list[str] = []
        self.node.create_subscription(String, "/audio_interaction/speech",
                                      lambda m: self.speech.append(m.data), 10)


class Paced:
    """Hand out messages by a timer at ``speed`` times the pace of the audio they hold.

    As a driver hands out its buffers.
    """

    def __init__(self, node, speed: float = 4.0) -> None:
        self.queue: deque = deque()  # (publish callable, seconds of audio)
        self.speed = speed
        self.sent = 0
        self._due_s = 0.0  # audio time released so far
        self._start = time.monotonic()
        node.create_timer(0.0025, self._tick)

    def add(self, publish, seconds: float) -> None:
        if not self.queue:
            self._start = time.monotonic() - self._due_s / self.speed
        self.queue.append((publish, seconds))

    def _tick(self) -> None:
        while self.queue and self._due_s <= (time.monotonic() - self._start) * self.speed:
            publish, seconds = self.queue.popleft()
            publish()
            self._due_s += seconds
            self.sent += 1

    @property
    def done(self) -> bool:
        return not self.queue


class RosDriversCapture:
    """Act as ros-drivers/audio_common 0.4 ``audio_capture_node`` as its launch file starts it.

    Namespace ``audio``: ``audio`` (AudioData) and ``audio_stamped`` (AudioDataStamped), both
    default QoS (reliable, depth 10), ``audio_info`` transient local, republished every 5 s.
    GStreamer's alsasrc hands out 10 ms buffers; stamps are the buffers' capture times.
    ``fmt="mp3"`` is the driver's default (lamemp3enc): MP3 frames cut as the encoder emits them.
    """

    def __init__(self, context, fmt: str = "wave", rate: int = 16000) -> None:
        from audio_common_msgs.msg import AudioData, AudioDataStamped, AudioInfo

        self._types = AudioData, AudioDataStamped
        self.node = rclpy.create_node("audio_capture", namespace="audio", context=context)
        self.fmt, self.rate = fmt, rate
        self.pub = self.node.create_publisher(AudioData, "audio", 10)
        self.pub_stamped = self.node.create_publisher(AudioDataStamped, "audio_stamped", 10)
        self.pub_info = self.node.create_publisher(
            AudioInfo, "audio_info",
            QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.info = AudioInfo(channels=1, sample_rate=rate, sample_format="S16LE", bitrate=192,
                              coding_format=fmt)
        self.pub_info.publish(self.info)
        self.node.create_timer(5.0, lambda: self.pub_info.publish(self.info))
        self.paced = Paced(self.node)  # 4x real time
        self.stamp_ns = self.node.get_clock().now().nanoseconds

    def play(self, pcm: np.ndarray) -> None:
        """Queue int16 mono audio as the driver would publish it."""
        if self.fmt == "wave":
            step = self.rate // 100
            buffers = [(pcm[i:i + step].tobytes(), len(pcm[i:i + step]) / self.rate)
                       for i in range(0, len(pcm), step)]
        else:
            packets = mp3_packets(pcm, self.rate)  # lamemp3enc's buffers, a frame each
            frame_s = packets[1][1] - packets[0][1]
            buffers = [(data, frame_s) for data, _ in packets]
        for payload, seconds in buffers:
            self.paced.add(lambda p=payload, s=seconds: self._publish(p, s), seconds)

    def _publish(self, payload: bytes, seconds: float) -> None:
        audio_data, stamped_type = self._types
        msg = audio_data(data=payload)
        stamped = stamped_type(audio=msg)
        stamped.header.stamp = rclpy.time.Time(nanoseconds=self.stamp_ns).to_msg()
        self.stamp_ns += int(seconds * 1e9)
        self.pub.publish(msg)
        self.pub_stamped.publish(stamped)


class Mgonzs13Capturer:
    """mgonzs13/audio_common's ``audio_capturer_node``.

    AudioStamped on ``audio``, SensorDataQoS (best effort), ``chunk`` samples per message (512),
    PortAudio ``format`` (paInt16 = 8 by default, paFloat32 = 1), the info in every message,
    stamped with the clock after each read.
    """

    ARRAYS = {1: ("float32_data", np.float32, 1 / 32768), 8: ("int16_data", np.int16, 1)}

    def __init__(self, context, format_code: int = 8, rate: int = 16000, chunk: int = 512,
                 whisper_ros: bool = False) -> None:
        """``whisper_ros``.

        As whisper_ros's launch file starts it, /audio/capturer_node publishing /audio/in; else as
        ``ros2 run audio_common audio_capturer_node`` (/audio).
        """
        from audio_common_msgs.msg import AudioStamped

        self._type = AudioStamped
        name, namespace, topic = (("capturer_node", "audio", "in") if whisper_ros else
                                  ("audio_capturer_node", "", "audio"))
        self.node = rclpy.create_node(name, namespace=namespace, context=context)
        self.pub = self.node.create_publisher(AudioStamped, topic, qos_profile_sensor_data)
        self.format_code, self.rate, self.chunk = format_code, rate, chunk
        self.paced = Paced(self.node)  # 4x real time

    def play(self, pcm: np.ndarray) -> None:
        """Queue int16 mono audio as chunks of ``chunk`` samples in the configured format."""
        name, dtype, scale = self.ARRAYS[self.format_code]
        samples = (pcm * scale).astype(dtype)
        for i in range(0, len(samples) - self.chunk + 1, self.chunk):
            piece = samples[i:i + self.chunk]
            self.paced.add(lambda s=piece, n=name: self._publish(n, s), self.chunk / self.rate)

    def _publish(self, name: str, samples: np.ndarray) -> None:
        msg = self._type()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        setattr(msg.audio.audio_data, name, samples.tolist())
        info = msg.audio.info
        info.format, info.channels, info.rate, info.chunk = (self.format_code, 1, self.rate,
                                                             self.chunk)
        self.pub.publish(msg)


class HriConsumer:
    """A ros4hri listener as libhri builds one.

    It learns voices from /humans/voices/tracked and then subscribes to each voice's speech and
    is_speaking, all with the system default QoS.
    """

    def __init__(self, context) -> None:
        from hri_msgs.msg import IdsList

        self.node = rclpy.create_node("hri_listener", context=context)
        self.tracked: list[list[str]] = []
        self.incremental: list[str] = []
        self.final: list[object] = []
        self.is_speaking: list[bool] = []
        self._voices: set[str] = set()
        self.node.create_subscription(IdsList, "/humans/voices/tracked", self._on_tracked,
                                      qos_profile_system_default)

    def _on_tracked(self, msg) -> None:
        from hri_msgs.msg import LiveSpeech
        from std_msgs.msg import Bool

        self.tracked.append(list(msg.ids))
        for voice in set(msg.ids) - self._voices:
            self._voices.add(voice)
            self.node.create_subscription(LiveSpeech, f"/humans/voices/{voice}/speech",
                                          self._on_speech, qos_profile_system_default)
            self.node.create_subscription(Bool, f"/humans/voices/{voice}/is_speaking",
                                          lambda m: self.is_speaking.append(m.data),
                                          qos_profile_system_default)

    def _on_speech(self, msg) -> None:
        if msg.incremental:
            self.incremental.append(msg.incremental)
        if msg.final:
            self.final.append(msg)


def require(condition: bool, reason: str) -> None:
    """Skip where a dev machine lacks a piece; fail in CI, where `make test` installs it."""
    import os

    if not condition:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(reason)
