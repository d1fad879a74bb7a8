"""The audio sources: the file player (in-process) and the PyAudio capture node, tested without
hardware through an ALSA `file` PCM that makes a raw file the microphone (ARCHITECTURE §7)."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rclpy
import soundfile
from audio_common_msgs.msg import AudioDataStamped, AudioInfo
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from audio_interaction_ros.ros.player_node import PlayerNode
from audio_interaction_ros.ros.qos import AUDIO_BEST_EFFORT, LATCHED

from ..conftest import child_env
from .conftest import spin_until


class Recorder:
    def __init__(self, context):
        self.node = rclpy.create_node("recorder", context=context)
        self.infos: list[AudioInfo] = []
        self.audio: list[AudioDataStamped] = []
        self.node.create_subscription(AudioInfo, "audio_info", self.infos.append, LATCHED)
        self.node.create_subscription(AudioDataStamped, "audio", self.audio.append,
                                      AUDIO_BEST_EFFORT)

    def pcm(self) -> np.ndarray:
        return np.concatenate([np.frombuffer(m.audio.data, dtype="<i2") for m in self.audio])


def test_player_publishes_the_file_in_order_with_stamps(ros_context, stereo_48k_wav):
    path = stereo_48k_wav  # 48 kHz stereo
    expected, rate = soundfile.read(str(path), dtype="int16", always_2d=True)
    player = PlayerNode(context=ros_context, parameter_overrides=[
        Parameter("files", value=[str(path)]), Parameter("rate", value=20.0),
        Parameter("silence_between_s", value=0.0), Parameter("start_delay_s", value=0.3)])
    recorder = Recorder(ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(player)
    executor.add_node(recorder.node)
    try:
        assert spin_until(executor, lambda: player.done, 60)
        spin_until(executor, lambda: len(recorder.pcm()) >= expected.size, 5)
    finally:
        player.destroy_node()
        recorder.node.destroy_node()
    info = recorder.infos[-1]
    assert (info.sample_rate, info.channels, info.sample_format, info.coding_format) == \
        (rate, 2, "S16LE", "pcm")
    np.testing.assert_array_equal(recorder.pcm(), expected.reshape(-1))
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in recorder.audio]
    durations = np.diff(stamps)
    assert np.allclose(durations, 0.1, atol=1e-6)  # stamps follow the audio, not the wall clock


def test_player_rejects_missing_file():
    proc = subprocess.run([sys.executable, "-m", "audio_interaction_ros.ros.player_node",
                           "--ros-args", "-p", "files:=['/nonexistent.wav']"],
                          capture_output=True, text=True, timeout=60,
                          env=child_env())
    assert proc.returncode == 2
    assert "player_node: error: audio file '/nonexistent.wav' does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture()
def alsa_home(tmp_path):
    pytest.importorskip("pyaudio", reason="PyAudio is not installed")
    t = np.arange(16000 * 4) / 16000
    samples = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    raw = tmp_path / "mic.raw"
    samples.tofile(raw)
    (tmp_path / ".asoundrc").write_text(
        'pcm.nullpcm { type null }\n'
        f'pcm.filemic {{ type file slave.pcm "nullpcm" file "/dev/null" infile "{raw}" '
        'format "raw" }\n'
        'pcm.!default { type asym playback.pcm "nullpcm" capture.pcm "filemic" }\n')
    return tmp_path, samples


def run_capture(home: Path, *params: str) -> subprocess.Popen:
    env = child_env(HOME=str(home), PYTHONUNBUFFERED="1")
    args = [a for p in params for a in ("-p", p)]
    return subprocess.Popen([sys.executable, "-m", "audio_interaction_ros.ros.capture_node",
                             "--ros-args", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_capture_node_publishes_the_microphone(ros_context, alsa_home):
    home, samples = alsa_home
    recorder = Recorder(ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(recorder.node)
    proc = run_capture(home, "device:=filemic", "sample_rate:=16000")
    try:
        assert spin_until(executor, lambda: recorder.infos and len(recorder.audio) >= 5, 30)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        recorder.node.destroy_node()
    assert proc.returncode == 0 and "Traceback" not in out, out  # stopped while capturing
    info = recorder.infos[-1]
    assert (info.sample_rate, info.channels, info.sample_format) == (16000, 1, "S16LE")
    first = np.frombuffer(recorder.audio[0].audio.data, dtype="<i2")
    assert len(first) == 1600  # 100 ms blocks
    np.testing.assert_array_equal(first, samples[:1600])  # the file is the microphone
    assert "capturing from 'filemic'" in out


def test_capture_node_names_the_inputs_when_the_device_is_absent(alsa_home):
    home, _ = alsa_home
    proc = run_capture(home, "device:=usb-array-that-is-not-there")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    line = [x for x in out.splitlines() if x.startswith("capture_node: error:")]
    assert line and "no input device name contains 'usb-array-that-is-not-there'" in line[0]
    assert "filemic" in line[0] and "Traceback" not in out


@pytest.mark.skipif(Path("/dev/snd").exists(), reason="this machine has a sound card")
def test_capture_node_without_a_sound_card_says_so_in_one_line(tmp_path):
    """ALSA and JACK print some sixty lines when PortAudio finds no card; they go to the debug
    log, and what the user sees is the node's own line."""
    pytest.importorskip("pyaudio", reason="PyAudio is not installed")
    proc = subprocess.run([sys.executable, "-m", "audio_interaction_ros.ros.capture_node"],
                          capture_output=True, text=True, timeout=60,
                          env=child_env(HOME=str(tmp_path)))  # no ~/.asoundrc: no device
    assert proc.returncode == 2
    lines = (proc.stdout + proc.stderr).splitlines()
    assert lines == ["capture_node: error: no audio input device exists (no sound card, or "
                     "PortAudio cannot see it: check `arecord -l` and that this user may open "
                     "it)"], lines
