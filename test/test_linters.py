"""Linters as tests, as package.xml declares (ament_flake8 / ament_pep257 style).

flake8 and pydocstyle from PyPI run over the package, the tests, the benchmarks, the tools,
the launch files and setup.py, with the configuration in setup.cfg; any finding fails the test
and is printed.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# what is checked, relative to the repository root
TARGETS = ["audio_interaction_ros", "test", "bench", "tools", "launch", "setup.py"]


def _run(tool: str) -> subprocess.CompletedProcess[str]:
    """Run one linter module over TARGETS from the repository root (where setup.cfg is)."""
    return subprocess.run([sys.executable, "-m", tool, *TARGETS], cwd=REPO, text=True,
                          capture_output=True, timeout=600)


@pytest.mark.linter
@pytest.mark.parametrize("tool", ["flake8", "pydocstyle"])
def test_no_findings(tool: str) -> None:
    result = _run(tool)
    if result.returncode != 0:
        findings = (result.stdout + result.stderr).strip()
        pytest.fail(f"{tool} found problems:\n{findings}", pytrace=False)
