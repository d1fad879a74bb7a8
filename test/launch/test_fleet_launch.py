"""launch/fleet.launch.py under launch_testing, as `ros2 launch` runs it: one fleet_node process
for robot1 and robot2 on the toy model. A beep published on /robot1/audio must be answered on
/robot1/audio_interaction/speech and on nothing of robot2's; after shutdown (SIGINT from launch)
the process must have exited 0 without a traceback.

Needs the launch stack and this package installed (colcon build; the executables are found through
AMENT_PREFIX_PATH); the model is the project's toy (built on first use, cached in
build/toy-model). launch_testing's pytest plugin needs pytest < 9.
"""
from __future__ import annotations

import time
import unittest
from pathlib import Path

import pytest

REASON = ("{} is not installable in this environment (not on PyPI); runs where ROS 2 is installed "
          "from the distribution")
pytest.importorskip("launch_testing", reason=REASON.format("launch_testing"))
pytest.importorskip("launch_ros", reason=REASON.format("launch_ros"))

import launch  # noqa: E402
import launch_testing.actions  # noqa: E402
import rclpy  # noqa: E402
from audio_common_msgs.msg import AudioDataStamped, AudioInfo  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from audio_interaction_ros.ros import messages  # noqa: E402

from ..conftest import toy_checkpoint  # noqa: E402
from ..ros.test_interaction_node import LATCHED, RELIABLE, beep_clip  # noqa: E402
from .launch_checks import (CleanShutdown, greedy_params_file,  # noqa: E402
                            isolate_discovery)

REPO = Path(__file__).resolve().parents[2]
LAUNCH_FILE = REPO / "launch" / "fleet.launch.py"
REPLY_TIMEOUT_S = 120.0  # model load + discovery + 3 s of audio; a deadline, not a sleep

isolate_discovery()


def _workdir() -> Path:
    path = REPO / "build" / "fleet_launch_test"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.launch_test
def generate_test_description():
    fleet = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
        launch_arguments={"robots": "[robot1, robot2]", "model": str(toy_checkpoint()),
                          "device": "cpu",
                          "params_file": str(greedy_params_file(_workdir()))}.items())
    return launch.LaunchDescription([fleet, launch_testing.actions.ReadyToTest()])


class TestFleet(unittest.TestCase):
    """While the launch runs: robot1's beep is answered on robot1's topic only."""

    def test_each_robot_hears_its_own_audio(self):
        context = rclpy.Context()
        rclpy.init(context=context)
        node = rclpy.create_node("fleet_launch_tester", context=context)
        speech = {robot: [] for robot in ("robot1", "robot2")}
        for robot, heard in speech.items():
            node.create_subscription(String, f"/{robot}/audio_interaction/speech",
                                     lambda m, h=heard: h.append(m.data), RELIABLE)
        info = node.create_publisher(AudioInfo, "/robot1/audio_info", LATCHED)
        audio = node.create_publisher(AudioDataStamped, "/robot1/audio", RELIABLE)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        try:
            while audio.get_subscription_count() == 0 and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.1)  # until robot1's node is active
            self.assertGreater(audio.get_subscription_count(), 0, "robot1 never subscribed")
            info.publish(messages.audio_info(48000, 2))
            clip = beep_clip()
            for start in range(0, len(clip), 4800):
                stamp = node.get_clock().now().to_msg()
                audio.publish(messages.audio_message(clip[start:start + 4800].tobytes(), stamp,
                                                     "mic"))
                executor.spin_once(timeout_sec=0.1)
            while not speech["robot1"] and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.1)
            settle = time.monotonic() + 2.0  # anything robot2 would say comes as fast
            while time.monotonic() < settle:
                executor.spin_once(timeout_sec=0.1)
        finally:
            node.destroy_node()
            rclpy.try_shutdown(context=context)
        self.assertEqual(speech["robot1"], ["I hear a beep."])
        self.assertEqual(speech["robot2"], [])


@launch_testing.post_shutdown_test()
class TestShutdown(CleanShutdown, unittest.TestCase):
    """After launch stopped the fleet with SIGINT: it exited cleanly."""
