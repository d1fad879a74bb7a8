"""Microphone (or an audio file) + the interaction node, configured and activated automatically.

    ros2 launch audio_interaction_ros interaction.launch.py                      # default mic
    ros2 launch audio_interaction_ros interaction.launch.py model:=/path/ckpt device:=cuda
    ros2 launch audio_interaction_ros interaction.launch.py use_mic:=false audio_file:=clip.wav
    ros2 launch audio_interaction_ros interaction.launch.py speak:=false   # text topics only
    ros2 launch audio_interaction_ros interaction.launch.py tasks:=three   # + transcript, sounds
    # ros-drivers audio_capture (ros2 launch audio_capture capture.launch.py format:=wave):
    ros2 launch audio_interaction_ros interaction.launch.py use_mic:=false \
        audio_topic:=/audio/audio_stamped audio_info_topic:=/audio/audio_info
    # mgonzs13 audio_capturer_node as whisper_ros starts it (/audio/in):
    ros2 launch audio_interaction_ros interaction.launch.py use_mic:=false audio_topic:=/audio/in

model, device, dtype, audio_type and hri_voice_id given on the command line override the
parameter file (params_file,
default: the package's config/interaction.yaml); left out, the file's values apply. Where the
launch stack is not installed, ``audio-interaction-bringup`` runs the same wiring in one process
with the same arguments and parameter file.
"""
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, EmitEvent, GroupAction, OpaqueFunction,
                            RegisterEventHandler)
from launch.conditions import IfCondition, UnlessCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node, PushRosNamespace
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition

PACKAGE = "audio_interaction_ros"

ARGUMENTS = [
    ("model", "", "checkpoint directory or Hugging Face repo id ('' = params_file's, by default "
     "zhifeixie/AudioInteraction)"),
    ("device", "", "auto, cpu, cuda, cuda:N ('' = params_file's, by default auto)"),
    ("dtype", "", "auto, bfloat16, float16, float32 ('' = params_file's, by default auto)"),
    ("params_file", None, "parameter file for the interaction node (default: the package's "
     "config/interaction.yaml)"),
    ("tasks", "one", "one: an assistant (~/speech, ~/reply); three: also a transcriber "
     "(~/transcript) and a sound reporter (~/sound_events) on the same model (the package's "
     "config/three_tasks.yaml, layered over params_file)"),
    ("namespace", "", "namespace for all nodes"),
    ("audio_topic", "audio", "audio topic: ros-drivers AudioDataStamped/AudioData or mgonzs13 "
     "AudioStamped (whichever audio_common_msgs is installed)"),
    ("audio_info_topic", "", "ros-drivers AudioInfo topic ('' = <audio_topic>_info; "
     "ros-drivers' capture publishes /audio/audio_info); unused with mgonzs13's messages"),
    ("audio_type", "", "auto, stamped or data ('' = params_file's, by default auto: what the "
     "topic's publishers offer)"),
    ("hri_voice_id", "", "publish transcripts as this ros4hri voice, e.g. anonymous_speaker "
     "('' = params_file's, by default off)"),
    ("use_mic", "true", "capture from a microphone; false plays audio_file instead, or, with "
     "no audio_file, listens to another driver's audio_topic"),
    ("audio_file", "", "audio file to play when use_mic is false"),
    ("capture_device", "", "microphone name substring or index ('' = default input)"),
    ("speak", "true", "speak the replies (speech node: piper, espeak-ng fallback); the "
     "interaction node then ignores the microphone while the robot speaks"),
    ("speech_wav", "", "also write what the robot says to this WAV file ('' = no file)"),
]


# launch arguments that override params_file if given
OVERRIDES = ("model", "device", "dtype", "audio_type", "hri_voice_id")
# tasks:= -> the parameter file layered over params_file (it sets the sessions only)
TASKS_FILES = {"one": None, "three": "three_tasks.yaml"}
CHOICES = {"tasks": list(TASKS_FILES)}  # checked by launch before anything starts


def _text(value) -> ParameterValue:
    """Wrap a string parameter so that it stays a string, whatever it looks like.

    launch_ros reads a substituted parameter value as YAML, so ``capture_device:=1`` would arrive
    as an integer (and ``audio_file:=on`` as a bool) and the node, which declares a string, would
    die with InvalidParameterTypeException.
    """
    return ParameterValue(value, value_type=str)


def model_parameters(context) -> list:
    """Return the interaction node's parameters from the arguments (fleet.launch.py uses them too).

    params_file, the tasks file layered over it, then the OVERRIDES given.
    """
    config = LaunchConfiguration
    given = {name: config(name).perform(context) for name in OVERRIDES}
    overrides = {name: _text(value) for name, value in given.items() if value}
    tasks_file = TASKS_FILES[config("tasks").perform(context)]
    layers = [PathJoinSubstitution([FindPackageShare(PACKAGE), "config", tasks_file])] \
        if tasks_file else []
    return [config("params_file"), *layers, *([overrides] if overrides else [])]


def audio_remaps(context) -> list:
    """Return the audio and audio_info remappings (fleet.launch.py uses them too)."""
    audio_topic = LaunchConfiguration("audio_topic")
    info_topic = LaunchConfiguration("audio_info_topic").perform(context) or \
        [audio_topic, "_info"]
    return [("audio", audio_topic), ("audio_info", info_topic)]


def _nodes(context):
    """Return the nodes and lifecycle events (here: the overrides depend on the arguments)."""
    config = LaunchConfiguration
    remaps = audio_remaps(context)

    # the robot must not answer its own voice: the speech node's is_speaking (audio playing; not
    # the interaction node's is_replying) mutes the microphone input
    self_hearing = [("robot_speaking", "speech/is_speaking")]
    interaction = LifecycleNode(
        package=PACKAGE, executable="interaction_node", name="audio_interaction", namespace="",
        output="screen", remappings=remaps + self_hearing,
        parameters=[*model_parameters(context), {"autostart": False}],
    )
    capture = Node(package=PACKAGE, executable="capture_node", name="audio_capture",
                   output="screen", remappings=remaps,
                   parameters=[{"device": _text(config("capture_device"))}],
                   condition=IfCondition(config("use_mic")))
    player = Node(package=PACKAGE, executable="player_node", name="audio_player",
                  output="screen", remappings=remaps,
                  parameters=[{"file": _text(config("audio_file"))}],
                  condition=UnlessCondition(config("use_mic")))
    # the speech node speaks one reply stream: the merged ~/reply of every reply session (with
    # several, remap to one session's audio_interaction/<session>/reply)
    speech = Node(package=PACKAGE, executable="speech_node", name="speech", output="screen",
                  remappings=[("reply", "audio_interaction/reply")],
                  parameters=[{"input": "reply", "wav_path": _text(config("speech_wav"))}],
                  condition=IfCondition(config("speak")))
    # A file has a beginning: play it only to an active node. Loading the model can take longer
    # than the player's wait for a subscriber (wait_for_subscriber_s), after which it would play
    # into the void. Event handlers run outside this group's scope, hence the namespace again.
    play_when_active = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=interaction, goal_state="active", handle_once=True,
        entities=[GroupAction([PushRosNamespace(config("namespace")), player])]))
    configure = EmitEvent(event=ChangeState(
        lifecycle_node_matcher=matches_action(interaction),
        transition_id=Transition.TRANSITION_CONFIGURE))
    activate_when_configured = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=interaction, goal_state="inactive", handle_once=True,
        entities=[EmitEvent(event=ChangeState(
            lifecycle_node_matcher=matches_action(interaction),
            transition_id=Transition.TRANSITION_ACTIVATE))]))
    external = config("use_mic").perform(context) == "false" and \
        not config("audio_file").perform(context)  # another driver publishes audio_topic
    return [activate_when_configured, *([] if external else [play_when_active]), interaction,
            capture, speech, configure]


def declare_arguments(arguments) -> list:
    """Declare a DeclareLaunchArgument for each (name, default, description).

    Default None = the package's config/interaction.yaml (params_file). fleet.launch.py declares
    its arguments with it too.
    """
    default_params = PathJoinSubstitution([FindPackageShare(PACKAGE), "config",
                                           "interaction.yaml"])
    return [DeclareLaunchArgument(name, default_value=default_params if default is None
                                  else default, description=text, choices=CHOICES.get(name))
            for name, default, text in arguments]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        *declare_arguments(ARGUMENTS),
        GroupAction([PushRosNamespace(LaunchConfiguration("namespace")),
                     OpaqueFunction(function=_nodes)]),
    ])
