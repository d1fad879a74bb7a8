"""The installed executables, started the way ROS and a user start them.

Every test suite run from the repository imports the checkout (``python -m`` from its root); a
robot runs what colcon installed, from wherever it is, with only what a sourced workspace puts in
the environment. An install that loses its metadata passes every other test and dies at once on
the robot, so here each executable in ``<prefix>/lib/audio_interaction_ros`` is started as a
subprocess from a temporary directory, in an environment that holds nothing but a shell's basics
and what sourcing the workspace's ``setup.bash`` adds (no PYTHONPATH into the checkout), and must
do its job: answer a beep, publish a file, speak a line, capture a microphone.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile
from rclpy.executors import SingleThreadedExecutor
from std_msgs.msg import String

from ..conftest import REPO, missing
from ..ros.conftest import spin_until
from ..ros.test_audio_sources import Recorder
from ..ros.test_cross_process import stop
from ..ros.test_interaction_node import AudioTester, beep_clip
from ..ros.test_speech_node import SpeechTester

PACKAGE = "audio_interaction_ros"
# Every executable the package installs; a new one fails test_every_executable_is_tested until it
# has a test here.
NODES = ("interaction_node", "player_node", "speech_node", "capture_node", "fleet_node")
COMMANDS = ("audio-interaction-run", "audio-interaction-bringup", "audio-interaction-build-toy")
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass
class Install:
    """Where the package is installed and the environment a sourced workspace gives."""

    prefix: Path
    setup: Path
    env: dict[str, str]

    @property
    def lib(self) -> Path:
        return self.prefix / "lib" / PACKAGE

    def command(self, name: str) -> list[str]:
        """How a user starts ``name``.

        By name when the workspace puts it on PATH (the dev venv), else by its path in
        lib/<package> (what ``ros2 run`` starts).
        """
        on_path = shutil.which(name, path=self.env["PATH"])
        return [name] if on_path else [str(self.lib / name)]

    def run(self, name: str, *args: str, cwd: Path, timeout: float = 300,
            **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.command(name), *args], cwd=cwd, env={**self.env, **env},
                              capture_output=True, text=True, timeout=timeout)

    def start(self, name: str, *args: str, cwd: Path, log: Path, **env: str) -> subprocess.Popen:
        return subprocess.Popen([*self.command(name), *args], cwd=cwd, env={**self.env, **env},
                                stdout=log.open("w"), stderr=subprocess.STDOUT)


def find_prefix() -> Path:
    """The install prefix of this package.

    The first on AMENT_PREFIX_PATH that has it (make exports the venv; a sourced colcon workspace
    sets it).
    """
    for entry in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if entry and (Path(entry) / "share" / PACKAGE / "package.xml").is_file():
            return Path(entry)
    missing(f"{PACKAGE} is not installed on AMENT_PREFIX_PATH: run `make venv` (or colcon build "
            "and source install/setup.bash)")
    raise AssertionError("unreachable")


def find_setup(prefix: Path) -> Path:
    """The workspace's setup.bash.

    In the prefix (merged install, the dev venv) or one level up (colcon's default isolated
    install: install/<package>/).
    """
    for candidate in (prefix / "setup.bash", prefix.parent / "setup.bash"):
        if candidate.is_file():
            return candidate
    missing(f"no setup.bash in {prefix} or its parent: not a colcon install")
    raise AssertionError("unreachable")


def sourced_environment(setup: Path, home: Path) -> dict[str, str]:
    """A shell's basics plus what ``source setup.bash`` adds, plus this test's DDS isolation."""
    base = {"HOME": str(home), "PATH": BASE_PATH, "LANG": "C.UTF-8"}
    shell = subprocess.run(["bash", "-c", f'source "{setup}" >/dev/null && env -0'], env=base,
                           cwd=home, capture_output=True, check=True, timeout=60)
    env = dict(item.split("=", 1) for item in shell.stdout.decode().split("\0") if "=" in item)
    for name in ("_", "PWD", "SHLVL", "OLDPWD"):
        env.pop(name, None)
    env.update(ROS_DOMAIN_ID=os.environ["ROS_DOMAIN_ID"], ROS_HOME=str(home / "ros"),
               ROS_LOG_DIR=str(home / "ros" / "log"), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    if env.get("ROS_DISTRO") == "humble":
        env["ROS_LOCALHOST_ONLY"] = "1"
    return env


def installed_package_dir(install: Install, cwd: Path) -> Path:
    proc = install.run("python3", "-c", f"import {PACKAGE}; print({PACKAGE}.__path__[0])",
                       cwd=cwd, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip())


def differences(installed: Path, source: Path) -> list[str]:
    """Python files that differ between the installed package and the checkout."""
    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*.py")}

    ours, theirs = files(source), files(installed)
    return sorted(name for name in ours.keys() | theirs.keys()
                  if ours.get(name) != theirs.get(name))


@pytest.fixture(scope="module")
def install(tmp_path_factory) -> Install:
    """The installed package, checked to be a copy of this checkout (else every test here would
    test something else) and to be imported from the install, not from the checkout.
    """
    prefix = find_prefix()
    home = tmp_path_factory.mktemp("home")
    found = Install(prefix, find_setup(prefix), {})
    found.env = sourced_environment(found.setup, home)
    assert not any(str(REPO / PACKAGE) in value for value in found.env.values())
    package_dir = installed_package_dir(found, home)
    assert package_dir.resolve() != (REPO / PACKAGE).resolve(), \
        f"{package_dir} is the checkout (a --symlink-install?): nothing here tests the install"
    stale = differences(package_dir, REPO / PACKAGE)
    if stale:
        missing(f"the installed copy in {package_dir} differs from the checkout ({stale[0]}, "
                f"{len(stale)} files): `make venv` reinstalls it")
    return found


@pytest.fixture()
def cwd(tmp_path) -> Path:
    """A working directory outside the checkout (where a user's shell could be)."""
    work = tmp_path / "work"
    work.mkdir()
    return work


@contextlib.contextmanager
def started(install: Install, observer, name: str, *args: str, cwd: Path, log: Path,
            **env: str) -> Iterator[SingleThreadedExecutor]:
    """Run executable ``name`` while this test's ``observer`` node spins (yielded: its executor).

    Then Ctrl-C, as ros2 launch and a terminal send it: it must exit 0 with no traceback.
    """
    executor = SingleThreadedExecutor(context=observer.context)
    executor.add_node(observer)
    proc = install.start(name, *args, cwd=cwd, log=log, **env)
    try:
        yield executor
    finally:
        code = stop(proc)
        executor.shutdown()
        observer.destroy_node()
    assert code == 0 and "Traceback" not in log.read_text(), log.read_text()


def test_every_executable_is_tested(install):
    assert sorted(p.name for p in install.lib.iterdir()) == sorted(NODES + COMMANDS)


def test_console_scripts_are_on_path_after_sourcing(install):
    """The README's `audio-interaction-run ...` as written, once setup.bash is sourced."""
    if not (install.prefix / "pyvenv.cfg").is_file():
        pytest.skip("a colcon workspace keeps console scripts in lib/audio_interaction_ros: "
                    "`ros2 run audio_interaction_ros audio-interaction-run ...`")
    for name in COMMANDS:
        found = shutil.which(name, path=install.env["PATH"])
        assert found and Path(found).resolve() == (install.lib / name).resolve(), name


def test_venv_executables_start_without_sourcing(install, cwd):
    """The dev venv needs no sourcing for its own executables (its python finds the package).

    Started by path with a bare environment, each gets as far as its own argument checks (an
    install whose metadata is elsewhere dies before: PackageNotFoundError).
    """
    if not (install.prefix / "pyvenv.cfg").is_file():
        pytest.skip("a colcon workspace is used sourced (its python path comes from setup.bash)")
    bare = {"HOME": str(cwd), "PATH": BASE_PATH}
    for name in COMMANDS:
        proc = subprocess.run([str(install.lib / name), "--help"], cwd=cwd, env=bare,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and f"usage: {name}" in proc.stdout, (name, proc.stderr)
    proc = subprocess.run([str(install.lib / "player_node"), "--ros-args", "-p",
                           "files:=['/nonexistent.wav']"], cwd=cwd, env=bare,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "'/nonexistent.wav' does not exist" in proc.stderr, \
        proc.stderr


def test_run_help_and_a_real_run(install, cwd, toy_model_dir, beep_wav):
    usage = install.run("audio-interaction-run", "--help", cwd=cwd)
    assert usage.returncode == 0 and "usage: audio-interaction-run" in usage.stdout
    proc = install.run("audio-interaction-run", "--model", str(toy_model_dir), "--device", "cpu",
                       "--frontend", "streaming", "--threads", "1", str(beep_wav), cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["chunk"], r["text"]) for r in lines if "text" in r] == [(2, "I hear a beep.")]
    assert len([r for r in lines if "tokens" in r]) == 6 + 3  # 2.3 s, then 1 s of silence


def test_build_toy_help_and_the_cached_model(install, cwd, toy_model_dir):
    usage = install.run("audio-interaction-build-toy", "--help", cwd=cwd)
    assert usage.returncode == 0 and "usage: audio-interaction-build-toy" in usage.stdout
    cached = install.run("audio-interaction-build-toy", "--out", str(toy_model_dir),
                         "--print-path", cwd=cwd)
    assert cached.returncode == 0, cached.stderr
    assert cached.stdout.strip() == str(toy_model_dir) and "already built" in cached.stderr


def test_bringup_answers_a_beep(install, cwd, toy_model_dir, beep_wav):
    proc = install.run("audio-interaction-bringup", "--model", str(toy_model_dir), "--device",
                       "cpu", "--use-mic", "false", "--speak", "false", "--audio-file",
                       str(beep_wav), "--print", "--exit-when-done", cwd=cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "I hear a beep." in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_interaction_node_answers_a_beep_on_its_topic(install, cwd, toy_model_dir, ros_context):
    tester = AudioTester(ros_context)
    log = cwd / "interaction_node.log"
    with started(install, tester.node, "interaction_node", "--ros-args", "-p",
                 f"model:={toy_model_dir}", "-p", "device:=cpu", "-p", "temperature:=0.0",
                 cwd=cwd, log=log) as executor:
        # the node subscribes to audio when it is activated (autostart: configure, activate)
        assert spin_until(executor, lambda: tester.audio_pub.get_subscription_count() > 0, 120), \
            log.read_text()
        tester.info(48000, 2)
        assert tester.until_heard(executor), (log.read_text(), tester.values())
        tester.send_paced(executor, beep_clip())
        assert spin_until(executor, lambda: tester.speech, 60), (log.read_text(), tester.values())
    assert tester.speech and set(tester.speech) == {"I hear a beep."}


def test_fleet_node_answers_each_robot_on_its_topic(install, cwd, toy_model_dir, ros_context):
    testers = [AudioTester(ros_context, ns) for ns in ("/robot1", "/robot2")]
    log = cwd / "fleet_node.log"
    with started(install, testers[0].node, "fleet_node", "--ros-args", "-p",
                 "robots:=[robot1, robot2]", "-p", f"model:={toy_model_dir}", "-p",
                 "device:=cpu", "-p", "temperature:=0.0", cwd=cwd, log=log) as executor:
        executor.add_node(testers[1].node)
        for tester in testers:
            assert spin_until(executor, lambda t=tester: t.audio_pub.get_subscription_count(),
                              120), log.read_text()
        robot2 = testers[1]  # robot2 alone hears a beep
        robot2.info(48000, 2)
        assert robot2.until_heard(executor), (log.read_text(), robot2.values())
        robot2.send_paced(executor, beep_clip())
        assert spin_until(executor, lambda: robot2.speech, 60), log.read_text()
    robot2.node.destroy_node()  # robot1's tester went with the executor
    assert set(robot2.speech) == {"I hear a beep."} and testers[0].speech == []


def test_player_node_publishes_a_file(install, cwd, stereo_48k_wav, ros_context):
    expected, rate = soundfile.read(str(stereo_48k_wav), dtype="int16", always_2d=True)
    recorder = Recorder(ros_context)
    log = cwd / "player_node.log"
    with started(install, recorder.node, "player_node", "--ros-args", "-p",
                 f"files:=['{stereo_48k_wav}']", "-p", "rate:=4.0", "-p", "start_delay_s:=0.5",
                 cwd=cwd, log=log) as executor:
        assert spin_until(executor, lambda: recorder.audio and recorder.pcm().size >=
                          expected.size, 60), log.read_text()
    info = recorder.infos[-1]
    assert (info.sample_rate, info.channels, info.sample_format) == (rate, 2, "S16LE")
    np.testing.assert_array_equal(recorder.pcm(), expected.reshape(-1))


def test_speech_node_speaks_a_string(install, cwd, ros_context):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (the speech node's fallback voice)")
    tester = SpeechTester(ros_context)
    log, wav = cwd / "speech_node.log", cwd / "said.wav"
    with started(install, tester.node, "speech_node", "--ros-args", "-p", "input:=speech",
                 "-p", f"wav_path:={wav}", cwd=cwd, log=log) as executor:
        assert spin_until(executor, lambda: tester.speaking == [False], 120), log.read_text()
        tester.speech_pub.publish(String(data="Hello from the installed speech node."))
        assert spin_until(executor, lambda: tester.speaking == [False, True, False], 60), \
            log.read_text()
    samples = tester.samples()
    assert len(samples) > tester.info[-1].sample_rate  # over a second of speech
    assert np.abs(samples).max() > 1000
    written, _ = soundfile.read(wav, dtype="int16")
    np.testing.assert_array_equal(written, samples)


def test_capture_node_publishes_the_microphone(install, alsa_home, ros_context):
    """A raw file is the microphone (an ALSA file PCM in the HOME of the process)."""
    home, samples = alsa_home
    recorder = Recorder(ros_context)
    with started(install, recorder.node, "capture_node", "--ros-args", "-p", "device:=filemic",
                 "-p", "sample_rate:=16000", cwd=home, log=home / "capture_node.log",
                 HOME=str(home)) as executor:
        assert spin_until(executor, lambda: recorder.infos and len(recorder.audio) >= 5, 60), \
            (home / "capture_node.log").read_text()
    np.testing.assert_array_equal(np.frombuffer(recorder.audio[0].audio.data, dtype="<i2"),
                                  samples[:1600])


def test_capture_node_without_the_device_says_so(install, alsa_home):
    home, _ = alsa_home
    proc = install.run("capture_node", "--ros-args", "-p", "device:=usb-array-that-is-not-there",
                       cwd=home, timeout=60, HOME=str(home))
    assert proc.returncode == 2
    output = proc.stdout + proc.stderr
    errors = [line for line in output.splitlines() if line.startswith("capture_node: error")]
    assert errors and "usb-array-that-is-not-there" in errors[0], output
    assert "Traceback" not in proc.stdout + proc.stderr
