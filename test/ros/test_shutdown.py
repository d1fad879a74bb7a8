"""Ctrl-C in the busiest state: every executable ends with exit code 0 and no traceback.

Each one runs as a separate process (as ``ros2 run`` / ``ros2 launch`` start it) and gets SIGINT
while it works: the speech node in the middle of a long text, the interaction node with a backlog
of audio that it answers, the player while it publishes, bringup (player, interaction node,
speech node, monitor in one process) while the robot answers. The speech node also has to say
``is_speaking: false`` on its way out, or a listener muted by it would stay deaf.
"""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
import soundfile
from audio_common_msgs.msg import AudioDataStamped, AudioInfo
from rclpy.executors import SingleThreadedExecutor
from std_msgs.msg import Bool, String

from audio_interaction_ros.ros import messages, qos

from ..conftest import child_env
from .conftest import spin_until
from .test_interaction_node import beep_clip

LONG_TEXT = " ".join(["This is a long sentence that the robot keeps saying for a while."] * 8)
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (the fallback voice)")


class Process:
    """A package executable run as ``python -m <module>``, its output in a log file."""

    def __init__(self, tmp_path: Path, module: str, *args: str) -> None:
        self.log = tmp_path / f"{module.rsplit('.', 1)[-1]}.log"
        self.proc = subprocess.Popen([sys.executable, "-m", module, *args],
                                     stdout=self.log.open("w"), stderr=subprocess.STDOUT,
                                     env=child_env(PYTHONUNBUFFERED="1"))

    def text(self) -> str:
        return self.log.read_text()

    def interrupt(self) -> int:
        """SIGINT, as Ctrl-C or ros2 launch sends it; the exit code (-9 if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -9

    def assert_clean(self, code: int) -> None:
        assert code == 0, self.text()
        assert "Traceback" not in self.text(), self.text()


@pytest.fixture()
def observer(ros_context):
    node = rclpy.create_node("shutdown_observer", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    yield node, executor
    executor.shutdown()
    node.destroy_node()


@needs_espeak
def test_speech_node_interrupted_while_speaking(observer, tmp_path):
    node, executor = observer
    speaking: list[bool] = []
    audio: list[AudioDataStamped] = []
    node.create_subscription(Bool, "/speech/is_speaking", lambda m: speaking.append(m.data),
                             qos.LATCHED)
    node.create_subscription(AudioDataStamped, "/speech/speech_audio", audio.append,
                             qos.AUDIO_RELIABLE)
    text_pub = node.create_publisher(String, "speech", qos.TEXT)
    speech = Process(tmp_path, "audio_interaction_ros.ros.speech_node", "--ros-args",
                     "-p", "input:=speech", "-p", "backend:=espeak")
    try:
        assert spin_until(executor, lambda: speaking == [False], 60), speech.text()
        text_pub.publish(String(data=LONG_TEXT))
        assert spin_until(executor, lambda: speaking[-1] and len(audio) >= 3, 30), speech.text()
    finally:
        code = speech.interrupt()
    speech.assert_clean(code)
    assert spin_until(executor, lambda: speaking[-1] is False, 5), speaking
    assert speaking == [False, True, False]  # it stopped mid-text and said so


def test_interaction_node_interrupted_while_answering(observer, toy_model_dir, tmp_path):
    node, executor = observer
    replies: list[str] = []
    node.create_subscription(String, "/audio_interaction/speech", lambda m: replies.append(m.data),
                             qos.TEXT)
    info_pub = node.create_publisher(AudioInfo, "audio_info", qos.LATCHED)
    audio_pub = node.create_publisher(AudioDataStamped, "audio", qos.AUDIO_RELIABLE)
    interaction = Process(tmp_path, "audio_interaction_ros.ros.interaction_node", "--ros-args",
                          "-p", f"model:={toy_model_dir}", "-p", "device:=cpu",
                          "-p", "max_backlog_s:=60.0",
                          # the bursts below must all arrive: a best-effort reader in another
                          # process can lose what overflows its socket (seen under load)
                          "-p", "audio_reliable:=true")
    clip = np.tile(beep_clip(48000, 2), (4, 1))  # 11.2 s: four beeps, each one answered
    stamp_ns = node.get_clock().now().nanoseconds

    def send_clip() -> None:
        nonlocal stamp_ns
        for start in range(0, len(clip), 4800):  # faster than real time: a backlog builds up
            piece = clip[start:start + 4800]
            audio_pub.publish(messages.audio_message(
                piece, rclpy.time.Time(nanoseconds=stamp_ns).to_msg(), "mic"))
            stamp_ns += len(piece) * 10**9 // 48000

    try:
        info_pub.publish(messages.audio_info(48000, 2))
        assert spin_until(executor, lambda: audio_pub.get_subscription_count() > 0, 60), \
            interaction.text()
        # discovery is not symmetric: the node may match this publisher a little after this
        # side saw its subscription, and what was sent before is not delivered; so send again
        # until it answers (the point here is the interrupt, not the count of replies)
        for _ in range(3):
            send_clip()
            if spin_until(executor, lambda: replies, 30):
                break
        assert replies, interaction.text()
        send_clip()  # the engine is busy with this backlog when the signal comes
        executor.spin_once(timeout_sec=0.1)
    finally:
        code = interaction.interrupt()
    interaction.assert_clean(code)


def test_player_interrupted_while_publishing(observer, tmp_path):
    node, executor = observer
    audio: list[AudioDataStamped] = []
    node.create_subscription(AudioDataStamped, "audio", audio.append, qos.AUDIO_BEST_EFFORT)
    clip = tmp_path / "beep.wav"
    soundfile.write(clip, beep_clip(48000, 2), 48000, subtype="PCM_16")
    player = Process(tmp_path, "audio_interaction_ros.ros.player_node", "--ros-args",
                     "-p", f"files:=['{clip}']", "-p", "loop:=true", "-p", "start_delay_s:=0.0")
    try:
        assert spin_until(executor, lambda: len(audio) >= 5, 60), player.text()
    finally:
        code = player.interrupt()
    player.assert_clean(code)


@needs_espeak
def test_bringup_interrupted_while_the_robot_answers(toy_model_dir, tmp_path):
    """Player, interaction node, speech node and monitor (``--print``) in one process."""
    clip = tmp_path / "beeps.wav"
    soundfile.write(clip, np.tile(beep_clip(48000, 2), (6, 1)), 48000, subtype="PCM_16")
    bringup = Process(tmp_path, "audio_interaction_ros.ros.bringup",
                      "--model", str(toy_model_dir), "--device", "cpu",
                      "--use-mic", "false", "--audio-file", str(clip), "--print")
    try:
        # the monitor prints "[speech] ..." for the first reply; the speech node then speaks it
        # while the player goes on with the next beeps
        assert spin_until_text(bringup, "[speech]", 120), bringup.text()
        assert spin_until_text(bringup, "[is_replying] True", 10), bringup.text()
    finally:
        code = bringup.interrupt()
    bringup.assert_clean(code)


def spin_until_text(process: Process, text: str, timeout_s: float) -> bool:
    """Wait until ``text`` appears in the process's output; the timeout is only a deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.proc.poll() is None:
        if text in process.text():
            return True
        time.sleep(0.1)
    return text in process.text()
