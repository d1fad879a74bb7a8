"""Microphone (or an audio file) + the interaction node, configured and activated automatically.

    ros2 launch audio_interaction_ros interaction.launch.py                      # default mic
    ros2 launch audio_interaction_ros interaction.launch.py model:=/path/ckpt device:=cuda
    ros2 launch audio_interaction_ros interaction.launch.py use_mic:=false audio_file:=clip.wav

Where the launch stack is not installed, ``audio-interaction-bringup`` runs the same wiring in one
process with the same arguments and parameter file.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, GroupAction, RegisterEventHandler
from launch.conditions import IfCondition, UnlessCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node, PushRosNamespace
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition

PACKAGE = "audio_interaction_ros"

ARGUMENTS = [
    ("model", "zhifeixie/AudioInteraction", "checkpoint directory or Hugging Face repo id"),
    ("device", "auto", "auto, cpu, cuda, cuda:N"),
    ("dtype", "auto", "auto, bfloat16, float16, float32"),
    ("params_file", None, "parameter file for the interaction node (default: the package's "
     "config/interaction.yaml)"),
    ("namespace", "", "namespace for all nodes"),
    ("audio_topic", "audio", "audio topic (AudioDataStamped); its AudioInfo is <topic>_info"),
    ("use_mic", "true", "capture from a microphone; false plays audio_file instead"),
    ("audio_file", "", "audio file to play when use_mic is false"),
    ("capture_device", "", "microphone name substring or index ('' = default input)"),
]


def generate_launch_description() -> LaunchDescription:
    config = LaunchConfiguration
    default_params = PathJoinSubstitution([FindPackageShare(PACKAGE), "config",
                                           "interaction.yaml"])
    audio_topic = config("audio_topic")
    remaps = [("audio", audio_topic), ("audio_info", [audio_topic, "_info"])]

    interaction = LifecycleNode(
        package=PACKAGE, executable="interaction_node", name="audio_interaction", namespace="",
        output="screen", remappings=remaps,
        parameters=[config("params_file"),
                    {"model": config("model"), "device": config("device"),
                     "dtype": config("dtype"), "autostart": False}],
    )
    capture = Node(package=PACKAGE, executable="capture_node", name="audio_capture",
                   output="screen", remappings=remaps,
                   parameters=[{"device": config("capture_device")}],
                   condition=IfCondition(config("use_mic")))
    player = Node(package=PACKAGE, executable="player_node", name="audio_player",
                  output="screen", remappings=remaps,
                  parameters=[{"file": config("audio_file")}],
                  condition=UnlessCondition(config("use_mic")))
    configure = EmitEvent(event=ChangeState(
        lifecycle_node_matcher=matches_action(interaction),
        transition_id=Transition.TRANSITION_CONFIGURE))
    activate_when_configured = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=interaction, goal_state="inactive", handle_once=True,
        entities=[EmitEvent(event=ChangeState(
            lifecycle_node_matcher=matches_action(interaction),
            transition_id=Transition.TRANSITION_ACTIVATE))]))

    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=default_params if default is None else default,
                                description=text)
          for name, default, text in ARGUMENTS),
        GroupAction([PushRosNamespace(config("namespace")), activate_when_configured,
                     interaction, capture, player, configure]),
    ])
