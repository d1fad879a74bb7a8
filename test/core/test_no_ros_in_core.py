"""core/ must stay usable without ROS: importing all of it never loads rclpy."""
from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import audio_interaction_ros.core as core

REPO = Path(__file__).resolve().parents[2]


def test_core_imports_without_rclpy():
    modules = [f"audio_interaction_ros.core.{m.name}" for m in pkgutil.iter_modules(core.__path__)]
    assert len(modules) >= 8
    code = ("import importlib, sys\n"
            f"for name in {modules!r}: importlib.import_module(name)\n"
            "import audio_interaction_ros.runner\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('rclpy', 'rosidl_runtime_py', 'std_msgs', 'audio_common_msgs'))\n"
            "print(bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"
