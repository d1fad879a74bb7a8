"""The file player: publishes audio files as a microphone would (AudioDataStamped + AudioInfo).

For demos, bag-free tests and replaying recordings. Files are sent at their own rate and channel
count as S16LE (the interaction node converts), paced in real time or ``rate`` times faster.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import soundfile
from audio_common_msgs.msg import AudioDataStamped, AudioInfo
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.time import Duration

from ..core.audio import resample
from . import messages, qos, runtime


def load_as_s16(path: str) -> tuple[np.ndarray, int]:
    """(frames, channels) int16 and the file's rate; ValueError if unreadable."""
    if not Path(path).is_file():
        raise ValueError(f"audio file {path!r} does not exist")
    try:
        data, rate = soundfile.read(path, dtype="int16", always_2d=True)
    except Exception as exc:  # libsndfile raises several types for bad files
        raise ValueError(f"audio file {path!r} could not be decoded: {exc}") from exc
    return data, int(rate)


class PlayerNode(Node):
    """Publishes a list of files, one after another, as one continuous stream."""

    def __init__(self, node_name: str = "audio_player", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        describe = lambda text: ParameterDescriptor(description=text)  # noqa: E731
        self.declare_parameter("files", [""], describe("Audio files to play, in order."))
        self.declare_parameter("file", "", describe("One audio file (launch arguments are "
                                                    "strings); played before files."))
        self.declare_parameter("rate", 1.0, describe("Playback speed: 1.0 = real time."))
        self.declare_parameter("chunk_ms", 100, describe("Audio per message in milliseconds."))
        self.declare_parameter("loop", False, describe("Start again after the last file."))
        self.declare_parameter("silence_between_s", 1.0,
                               describe("Silence published after each file."))
        self.declare_parameter("start_delay_s", 0.5,
                               describe("Wait before the first message, after a subscriber "
                                        "matched."))
        self.declare_parameter("wait_for_subscriber_s", 10.0,
                               describe("Hold the first message until the audio topic has a "
                                        "subscriber, at most this long (discovery takes time; "
                                        "0 = do not wait)."))
        self.declare_parameter("frame_id", "audio_player", describe("Header frame_id."))
        self.declare_parameter("exit_when_done", False,
                               describe("Shut down after the last file."))
        self._files = [f for f in [self.get_parameter("file").value,
                                   *self.get_parameter("files").value] if f]
        if not self._files:
            raise ValueError("parameter files is empty: give at least one audio file")
        self._tracks = [load_as_s16(f) for f in self._files]
        rates = {rate for _, rate in self._tracks}
        channels = {data.shape[1] for data, _ in self._tracks}
        if len(rates) > 1 or len(channels) > 1:
            # one stream has one format: convert the others to the first file's
            first, first_rate = self._tracks[0]
            self._tracks = [self._conform(d, r, first.shape[1], first_rate)
                            for d, r in self._tracks]
        self.sample_rate_hz = self._tracks[0][1]
        self.channels = self._tracks[0][0].shape[1]
        self._info_pub = self.create_publisher(AudioInfo, "audio_info", qos.LATCHED)
        self._audio_pub = self.create_publisher(AudioDataStamped, "audio", qos.AUDIO_RELIABLE)
        self._info_pub.publish(messages.audio_info(self.sample_rate_hz, self.channels))
        rate = float(self.get_parameter("rate").value)
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self._frames_per_msg = max(1, self.sample_rate_hz * self.get_parameter("chunk_ms").value
                                   // 1000)
        self._stream = self._frames()
        self._stamp = None
        self.done = False
        self._timer = None
        self._created = time.monotonic()
        self._matched_at: float | None = None
        self._start_timer = self.create_timer(0.05, self._maybe_start)
        self._period_s = self._frames_per_msg / self.sample_rate_hz / rate
        self.get_logger().info(f"playing {len(self._files)} file(s) at {self.sample_rate_hz} Hz, "
                               f"{self.channels} channel(s), x{rate}")

    @staticmethod
    def _conform(data: np.ndarray, rate: int, channels: int,
                 target_rate: int) -> tuple[np.ndarray, int]:
        """One stream has one format: bring a file to the first file's rate and channels."""
        mono = resample(data.astype(np.float32).mean(axis=1) / 32768, rate, target_rate)
        out = np.repeat(mono[:, None], channels, axis=1)
        return (np.clip(out, -1, 1) * 32767).astype(np.int16), target_rate

    def _frames(self):
        silence_s = self.get_parameter("silence_between_s").value
        while True:
            for data, _ in self._tracks:
                yield from self._pieces(data)
                gap = np.zeros((int(silence_s * self.sample_rate_hz), self.channels), np.int16)
                yield from self._pieces(gap)
            if not self.get_parameter("loop").value:
                return

    def _pieces(self, data: np.ndarray):
        for start in range(0, len(data), self._frames_per_msg):
            yield data[start:start + self._frames_per_msg]

    def _maybe_start(self) -> None:
        """Start once a subscriber has matched (plus start_delay_s), or after the wait limit."""
        now = time.monotonic()
        wait_s = self.get_parameter("wait_for_subscriber_s").value
        if self._matched_at is None:
            if self._audio_pub.get_subscription_count() > 0:
                self._matched_at = now
            elif now - self._created < wait_s:
                return
            else:
                self.get_logger().warning(f"no subscriber on {self._audio_pub.topic_name} after "
                                          f"{wait_s} s; playing anyway")
                self._matched_at = now
        if now - self._matched_at < self.get_parameter("start_delay_s").value:
            return
        self._start_timer.cancel()
        self._stamp = self.get_clock().now()
        self._timer = self.create_timer(self._period_s, self._publish_next)

    def _publish_next(self) -> None:
        piece = next(self._stream, None)
        if piece is None:
            self._timer.cancel()
            self.done = True
            self.get_logger().info("all files played")
            if self.get_parameter("exit_when_done").value:
                raise SystemExit(0)
            return
        self._audio_pub.publish(messages.audio_message(piece, self._stamp.to_msg(),
                                                       self.get_parameter("frame_id").value))
        self._stamp += Duration(nanoseconds=int(len(piece) * 1e9 / self.sample_rate_hz))


def main(args: list[str] | None = None) -> int:
    """Entry point: ``ros2 run audio_interaction_ros player_node --ros-args -p files:=[a.wav]``."""
    return runtime.run(PlayerNode, "player_node", args)


if __name__ == "__main__":
    sys.exit(main())
