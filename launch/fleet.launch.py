"""A GPU server listening for a fleet.

One fleet_node process, the model loaded once, an interaction node per robot in the robot's
namespace.

    ros2 launch audio_interaction_ros fleet.launch.py robots:="[robot1, robot2]" device:=cuda
    ros2 launch audio_interaction_ros fleet.launch.py robots:="[robot1, robot2]" tasks:=three

Each robot publishes its microphone on /<robot>/audio (+ /<robot>/audio_info; ``audio_topic`` and
``audio_info_topic`` rename them, relative to the robot) and hears back on
/<robot>/audio_interaction/speech, reply, ... exactly as from an interaction_node started in
/<robot>. The robots' nodes configure and activate themselves (autostart); each keeps its own
lifecycle (``ros2 lifecycle set /robot2/audio_interaction deactivate``) and its own parameters
(``ros2 param set /robot2/audio_interaction ...``; a ``/robot2/audio_interaction:`` block in
``params_file`` sets robot2's alone). model, device, dtype, audio_type, hri_voice_id and tasks work
as in interaction.launch.py, for every robot. The process gets no name or namespace from launch:
both would apply to every node in it.
"""
import importlib.util
from pathlib import Path

from launch import LaunchDescription
from launch.actions import OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def _single_robot_launch():
    """interaction.launch.py beside this file.

    Its arguments and parameter handling are reused (a launch file is not importable as a module by
    name).
    """
    spec = importlib.util.spec_from_file_location(
        "audio_interaction_single_launch", Path(__file__).with_name("interaction.launch.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SINGLE = _single_robot_launch()
SHARED_ARGUMENTS = ("model", "device", "dtype", "params_file", "tasks", "audio_topic",
                    "audio_info_topic", "audio_type", "hri_voice_id")
ARGUMENTS = [
    ("robots", "[robot1, robot2]", "namespaces of the robots served by the one model, as a YAML "
     "list"),
    *(argument for argument in SINGLE.ARGUMENTS if argument[0] in SHARED_ARGUMENTS),
]


def _fleet(context):
    return [Node(
        package=SINGLE.PACKAGE, executable="fleet_node", output="screen",
        remappings=SINGLE.audio_remaps(context),
        # without a node name these reach every node of the process: robots the fleet's own
        # node, the rest each robot's interaction node
        parameters=[*SINGLE.model_parameters(context),
                    {"robots": LaunchConfiguration("robots")}],
    )]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([*SINGLE.declare_arguments(ARGUMENTS),
                              OpaqueFunction(function=_fleet)])
