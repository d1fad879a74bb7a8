"""``audio-interaction-bringup``: interaction.launch.py's wiring without the launch stack.

Runs the capture (or player) node and the interaction node in one process on a
MultiThreadedExecutor, with the same arguments, parameter file and remappings, configures and
activates the lifecycle node as the launch file does, and can print what the nodes publish
(``--print``): the demo and robots without ros2launch use it. Messages still travel over the
middleware (rclpy does not shortcut same-process topics).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from . import runtime
from .interaction_node import InteractionNode
from .monitor import Monitor


# --tasks: the parameter file layered on top of --params-file (as the launch file's tasks:=)
TASKS_FILES = {"one": None, "three": "three_tasks.yaml"}


def config_file(name: str = "interaction.yaml") -> str:
    """Return the installed config/<name>, or the source tree's.

    The source tree's is used when run from a checkout (or when the installed package predates the
    file).
    """
    try:
        from ament_index_python.packages import get_package_share_directory

        installed = Path(get_package_share_directory("audio_interaction_ros")) / "config" / name
        if installed.is_file():
            return str(installed)
    except (ImportError, LookupError, ValueError, OSError):  # not installed, or no ament index
        pass
    return str(Path(__file__).resolve().parents[2] / "config" / name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="audio-interaction-bringup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint dir or Hugging Face repo id")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--dtype", default=None, help="auto, bfloat16, float16, float32")
    parser.add_argument("--params-file", default=None, help="interaction node parameters")
    parser.add_argument("--tasks", default="one", choices=sorted(TASKS_FILES),
                        help="one: an assistant; three: also a transcriber and a sound reporter "
                             "on the same model (config/three_tasks.yaml over --params-file)")
    parser.add_argument("--namespace", default="", help="namespace for all nodes")
    parser.add_argument("--audio-topic", default="audio",
                        help="audio topic (either audio_common_msgs, stamped or not)")
    parser.add_argument("--audio-info-topic", default="",
                        help="ros-drivers AudioInfo topic ('' = <audio topic>_info)")
    parser.add_argument("--audio-type", default=None, choices=["auto", "stamped", "data"],
                        help="audio message type (default: the parameter file's, auto)")
    parser.add_argument("--hri-voice-id", default=None,
                        help="publish transcripts as this ros4hri voice (e.g. anonymous_speaker)")
    parser.add_argument("--use-mic", default="true", choices=["true", "false"])
    parser.add_argument("--audio-file", action="append", default=[],
                        help="file(s) to play when --use-mic false (repeatable)")
    parser.add_argument("--capture-device", default="", help="mic name substring or index")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed of files")
    parser.add_argument("--silence-between", type=float, default=1.0, metavar="SECONDS",
                        help="silence the player inserts after each file")
    parser.add_argument("--speak", default="true", choices=["true", "false"],
                        help="speak the replies (speech node); the microphone is then ignored "
                             "while the robot speaks")
    parser.add_argument("--speech-wav", default="", help="also write what the robot says here")
    parser.add_argument("--print", action="store_true", help="print decisions and replies")
    parser.add_argument("--exit-when-done", action="store_true",
                        help="stop once the files are played and the model is quiet")
    return parser


def ros_arguments(args: argparse.Namespace) -> list[str]:
    """Return the --ros-args that launch would pass.

    Params file(s; a later one overrides an earlier one's keys), namespace, remappings.
    """
    ros = ["--ros-args", "--params-file", args.params_file or config_file()]
    if TASKS_FILES[args.tasks]:
        ros += ["--params-file", config_file(TASKS_FILES[args.tasks])]
    ros += ["-r", f"audio:={args.audio_topic}",
            "-r", f"audio_info:={args.audio_info_topic or args.audio_topic + '_info'}"]
    if args.namespace:
        ros += ["-r", f"__ns:=/{args.namespace.strip('/')}"]
    return ros


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.use_mic == "false" and not args.audio_file:
        print("audio-interaction-bringup: error: --use-mic false needs --audio-file",
              file=sys.stderr)
        return 2
    stop = runtime.init([sys.argv[0], *ros_arguments(args)])
    overrides = [Parameter("autostart", value=False)]
    for name in ("model", "device", "dtype", "audio_type", "hri_voice_id"):
        if getattr(args, name) is not None:
            overrides.append(Parameter(name, value=getattr(args, name)))
    nodes = []
    executor = MultiThreadedExecutor(num_threads=3)
    try:
        source = _source_node(args)
        speak = args.speak == "true"
        interaction = InteractionNode(
            parameter_overrides=overrides,
            cli_args=["--ros-args", "-r", "robot_speaking:=speech/is_speaking"] if speak else None)
        nodes = [source, interaction]
        if speak:
            from .speech_node import SpeechNode

            nodes.append(SpeechNode(
                cli_args=["--ros-args", "-r", "reply:=audio_interaction/reply"],
                parameter_overrides=[Parameter("autostart", value=False),
                                     Parameter("input", value="reply"),
                                     Parameter("wav_path", value=args.speech_wav)]))
        if args.print:
            nodes.append(Monitor(interaction.get_fully_qualified_name(),
                                 interaction.get_parameter("sessions").value))
        for node in nodes:
            executor.add_node(node)
        for node in nodes:  # the lifecycle nodes, as the launch file's events do
            if hasattr(node, "trigger_configure") and (
                    node.trigger_configure() != TransitionCallbackReturn.SUCCESS
                    or node.trigger_activate() != TransitionCallbackReturn.SUCCESS):
                print(f"audio-interaction-bringup: error: {node.get_name()} did not activate "
                      "(see the log above)", file=sys.stderr)
                return 1
        runtime.spin(executor, stop, _finished(source, nodes) if args.exit_when_done
                     else lambda: False)
        if args.speech_wav and speak:
            print(f"what the robot said: {args.speech_wav}")
    except (*runtime.BUILD_ERRORS, RuntimeError, OSError) as exc:
        print(f"audio-interaction-bringup: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        runtime.close(nodes, executor)
    return 0


def _source_node(args: argparse.Namespace):
    if args.use_mic == "true":
        from .capture_node import CaptureNode

        return CaptureNode(parameter_overrides=[Parameter("device", value=args.capture_device)])
    from .player_node import PlayerNode

    return PlayerNode(parameter_overrides=[
        Parameter("files", value=args.audio_file), Parameter("rate", value=args.rate),
        Parameter("silence_between_s", value=args.silence_between)])


def _finished(source, nodes):
    """For ``--exit-when-done``.

    True once the files are played, the engine has consumed what it could and nothing has been left
    to say for a second.
    """
    quiet_since = None

    def finished() -> bool:
        nonlocal quiet_since
        if not getattr(source, "done", False):
            return False
        engines = [n.engine for n in nodes if getattr(n, "engine", None) is not None]
        idle = all(e.backlog_s < 0.4 and not e.busy for e in engines) and \
            not any(getattr(n, "speaking", False) for n in nodes)
        quiet_since = (quiet_since or time.monotonic()) if idle else None
        return bool(quiet_since) and time.monotonic() - quiet_since > 1.0

    return finished


if __name__ == "__main__":
    sys.exit(main())
