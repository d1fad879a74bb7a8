"""The nodes as separate processes over DDS, as a robot runs them: player -> interaction node
-> this test's subscriber; both stop cleanly on SIGINT (exit 0)."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import rclpy
import soundfile
from hri_msgs.msg import LiveSpeech
from rclpy.executors import SingleThreadedExecutor
from std_msgs.msg import String

from audio_interaction_ros.ros.qos import TEXT

from ..conftest import child_env
from .conftest import spin_until
from .test_interaction_node import beep_clip


def start(module: str, *ros_args: str, log: Path) -> subprocess.Popen:
    env = child_env(PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", module, "--ros-args", *ros_args],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return -9


def test_player_and_interaction_node_processes(ros_context, toy_model_dir, tmp_path):
    clip = tmp_path / "beep_48k_stereo.wav"
    soundfile.write(clip, beep_clip(48000, 2), 48000, subtype="PCM_16")
    node_log, player_log = tmp_path / "node.log", tmp_path / "player.log"
    listener = rclpy.create_node("listener", context=ros_context)
    speech, finals = [], []
    listener.create_subscription(String, "/audio_interaction/speech",
                                 lambda m: speech.append(m.data), TEXT)
    listener.create_subscription(LiveSpeech, "/audio_interaction/reply",
                                 lambda m: m.final and finals.append(m), TEXT)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(listener)
    node = start("audio_interaction_ros.ros.interaction_node", "-p",
                 f"model:={toy_model_dir}", "-p", "device:=cpu", "-p", "temperature:=0.0",
                 log=node_log)
    player = None
    try:
        assert spin_until(executor, lambda: "loaded on cpu" in node_log.read_text(), 60), \
            node_log.read_text()
        player = start("audio_interaction_ros.ros.player_node", "-p", f"files:=['{clip}']",
                       "-p", "rate:=2.0", "-p", "start_delay_s:=1.0", log=player_log)
        assert spin_until(executor, lambda: speech and finals, 60), (
            node_log.read_text(), player_log.read_text())
        assert speech[0] == "I hear a beep."
        assert finals[0].final == "I hear a beep."
    finally:
        codes = [stop(p) for p in (player, node) if p is not None]
        listener.destroy_node()
    assert codes == [0] * len(codes), (node_log.read_text(), player_log.read_text())
    assert "Traceback" not in node_log.read_text()
