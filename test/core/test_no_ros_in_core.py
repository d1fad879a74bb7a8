"""Import boundaries: core/ stays usable without ROS, and voice/ without the model."""
from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import audio_interaction_ros.core as core
import audio_interaction_ros.voice as voice

REPO = Path(__file__).resolve().parents[2]


def loaded_by(modules: list[str], watched: tuple[str, ...]) -> list[str]:
    """Modules whose name starts with one of ``watched`` after importing ``modules`` in a
    fresh interpreter.
    """
    code = ("import importlib, json, sys\n"
            f"for name in {modules!r}: importlib.import_module(name)\n"
            f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({watched!r}))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True)
    return json.loads(out.stdout)


def test_core_imports_without_rclpy():
    modules = [f"audio_interaction_ros.core.{m.name}" for m in pkgutil.iter_modules(core.__path__)]
    assert len(modules) >= 8
    ros = ("rclpy", "rosidl_runtime_py", "std_msgs", "audio_common_msgs")
    assert loaded_by([*modules, "audio_interaction_ros.runner"], ros) == []


def test_voice_needs_only_core_audio():
    """voice/ runs where the model does not.

    No torch, transformers or rclpy, and of core/ only audio.py (with the protocol constants it
    reads).
    """
    modules = [f"audio_interaction_ros.voice.{m.name}"
               for m in pkgutil.iter_modules(voice.__path__)]
    assert len(modules) >= 4
    heavy = ("torch", "transformers", "rclpy", "audio_interaction_ros.core.")
    assert loaded_by(modules, heavy) == ["audio_interaction_ros.core.audio",
                                         "audio_interaction_ros.core.protocol"]
