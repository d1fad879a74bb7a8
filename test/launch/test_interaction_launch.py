"""launch/interaction.launch.py end to end under launch_testing, as `ros2 launch` runs it.

The player node plays a generated beep (48 kHz stereo) and the interaction node, configured and
activated by the launch file's lifecycle events, must say "I hear a beep." on
/audio_interaction/speech; after shutdown (SIGINT from launch) every process must have exited 0.

Needs the launch stack and this package installed (colcon build; the executables are found through
AMENT_PREFIX_PATH); the model is the project's toy (built on first use, cached in build/toy-model).
Run it with ``python -m pytest test/launch`` or ``colcon test``; launch_testing's pytest plugin
needs pytest < 9.
"""
from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

import pytest

REASON = ("{} is not installable in this environment (not on PyPI); runs where ROS 2 is installed "
          "from the distribution")
pytest.importorskip("launch_testing", reason=REASON.format("launch_testing"))
pytest.importorskip("launch_ros", reason=REASON.format("launch_ros"))
pytest.importorskip("launch_testing_ros", reason=REASON.format("launch_testing_ros"))

import launch  # noqa: E402
import launch_testing.actions  # noqa: E402
import numpy as np  # noqa: E402
import soundfile  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from launch_testing_ros import WaitForTopics  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from ..conftest import toy_checkpoint  # noqa: E402
from .launch_checks import (CleanShutdown, greedy_params_file,  # noqa: E402
                            isolate_discovery)

REPO = Path(__file__).resolve().parents[2]
LAUNCH_FILE = REPO / "launch" / "interaction.launch.py"
SPEECH_TOPIC = "/audio_interaction/speech"
REPLY_TIMEOUT_S = 120.0  # model load + discovery + 3 s of audio; a deadline, not a sleep

isolate_discovery()

_WORKDIR: tempfile.TemporaryDirectory | None = None  # removed when the test process exits


def beep_clip(rate: int = 48000, channels: int = 2) -> np.ndarray:
    """(frames, channels) int16: 0.8 s silence, 0.4 s of 1 kHz at half scale, 1.6 s silence."""
    t = np.arange(int(0.4 * rate)) / rate
    mono = np.concatenate([np.zeros(int(0.8 * rate)), 0.5 * np.sin(2 * np.pi * 1000 * t),
                           np.zeros(int(1.6 * rate))])
    return np.repeat((mono * 32767).astype(np.int16)[:, None], channels, axis=1)


@pytest.mark.launch_test
def generate_test_description():
    global _WORKDIR
    _WORKDIR = tempfile.TemporaryDirectory(prefix="interaction_launch_test_")
    workdir = Path(_WORKDIR.name)
    clip = workdir / "beep_48k_stereo.wav"
    soundfile.write(clip, beep_clip(), 48000, subtype="PCM_16")
    interaction = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
        launch_arguments={
            "use_mic": "false",
            "audio_file": str(clip),
            "model": str(toy_checkpoint()),
            "device": "cpu",
            "params_file": str(greedy_params_file(workdir)),
        }.items(),
    )
    return launch.LaunchDescription([interaction, launch_testing.actions.ReadyToTest()])


class TestBeepReply(unittest.TestCase):
    """While the launch runs: the launch file's lifecycle events activate the node, it replies."""

    def test_replies_i_hear_a_beep(self):
        # WaitForTopics subscribes at once and returns when the first message arrives (or at the
        # deadline); the player holds its audio until the interaction node has subscribed, so the
        # reply cannot come before this subscription exists.
        waiter = WaitForTopics([(SPEECH_TOPIC, String)], timeout=REPLY_TIMEOUT_S)
        try:
            received = waiter.wait()
            messages = waiter.received_messages(SPEECH_TOPIC) if received else []
        finally:
            waiter.shutdown()
        self.assertTrue(received, f"nothing on {SPEECH_TOPIC} within {REPLY_TIMEOUT_S:.0f} s: "
                        "was the node configured and activated? (see the process output)")
        self.assertEqual(messages[0].data, "I hear a beep.")


@launch_testing.post_shutdown_test()
class TestShutdown(CleanShutdown, unittest.TestCase):
    """After launch stopped every process with SIGINT: all exited cleanly."""
