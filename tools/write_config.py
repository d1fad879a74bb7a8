"""Regenerate config/interaction.yaml from the parameter table (audio_interaction_ros/ros/params.py).

    python tools/write_config.py      # after changing a parameter; test_params.py checks the file
"""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from audio_interaction_ros.ros.params import NODE_PARAMS, SESSION_PARAMS  # noqa: E402

HEADER = """\
# Parameters of the interaction node, with their defaults. Generated from
# audio_interaction_ros/ros/params.py by tools/write_config.py (test/ros/test_params.py checks
# that they agree). (dynamic) = may change while the node is active; the others apply on the
# next configure. Copy this file, edit it and pass it as params_file:=... to the launch file.
/**/audio_interaction:  # any namespace (a plain key matches /audio_interaction only)
  ros__parameters:"""


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


def render() -> str:
    lines = [HEADER, *_entries(NODE_PARAMS, "    "),
             "    # One block like this per name in `sessions`:", "    assistant:",
             *_entries(SESSION_PARAMS, "      ")]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    target = Path(__file__).resolve().parents[1] / "config" / "interaction.yaml"
    target.write_text(render())
    print(f"wrote {target}")
