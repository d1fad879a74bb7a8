"""What the launch tests share.

Discovery kept local, a greedy parameter file and the checks after shutdown.
"""
from __future__ import annotations

import os
from pathlib import Path

import launch_testing.asserts
import yaml

CONFIG = Path(__file__).resolve().parents[2] / "config" / "interaction.yaml"


def isolate_discovery() -> None:
    """Discovery stays on this machine, in a domain of its own (as test/ros/conftest.py does).

    The launched processes inherit this environment.
    """
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # Jazzy and later
    if os.environ.get("ROS_DISTRO") == "humble":
        os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")
    os.environ["ROS_DOMAIN_ID"] = str(os.getpid() % 90 + 10)


def greedy_params_file(directory: Path) -> Path:
    """Return the package's parameter file at temperature 0 (greedy: a deterministic test)."""
    config = yaml.safe_load(CONFIG.read_text())
    for node in config.values():  # whatever the node key is (audio_interaction, /**/...)
        node["ros__parameters"]["temperature"] = 0.0
    path = directory / "interaction_greedy.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class CleanShutdown:
    """Mix into a ``post_shutdown_test`` TestCase.

    After launch stopped every process with SIGINT, all exited 0 and none printed a traceback. (A
    mixin, not a TestCase: launch_testing would run a TestCase it finds in a test module while the
    launch is still up.)
    """

    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)

    def test_no_traceback(self, proc_output):
        for process_io in proc_output:
            self.assertNotIn("Traceback", process_io.text.decode(errors="replace"),
                             f"{process_io.process_name} printed a traceback")
