"""Run a command with an interface prefix laid over the venv (ARCHITECTURE.md §7, the trap of two
interface packages of one name).

    .venv/bin/python tools/overlay_env.py PREFIX -- COMMAND [ARG...]

mgonzs13/audio_common and ros-drivers/audio_common both name their message package
``audio_common_msgs``; the venv holds the ros-drivers stand-in and build/mgonzs13_prefix the other
(tools/build_interfaces.sh). A plain PYTHONPATH is not enough: ros-wheels-bootstrapper re-execs
every venv python with LD_LIBRARY_PATH built through a set, in random order, so the venv's
``libaudio_common_msgs__rosidl_generator_py.so`` may be loaded for the prefix's Python module
(``undefined symbol ..._convert_from_py``). This sets LD_LIBRARY_PATH, PYTHONPATH and
AMENT_PREFIX_PATH with the prefix first, in a fixed order, marks the bootstrap as done and execs
COMMAND. Exit status: COMMAND's; 2 with a reason if PREFIX holds no installed packages.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path


def _joined(first: list[str], rest: str) -> str:
    """``first`` then the entries of the path list ``rest`` not already in it, order kept."""
    parts = list(dict.fromkeys([*first, *(p for p in rest.split(os.pathsep) if p)]))
    return os.pathsep.join(parts)


def overlay_env(prefix: Path, venv: Path | None = None,
                base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment in which ``prefix``'s interface packages win over the venv's."""
    venv = Path(venv or sys.prefix)
    base = dict(os.environ if base is None else base)
    py = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = venv / "lib" / py / "site-packages"
    libs = [str(prefix / "lib"), str(venv / "lib"),
            *sorted(str(p) for p in site.glob("ros_*.libs") if p.is_dir())]
    return dict(
        base,
        _ROS_WHEELS_BOOTSTRAP_COMPLETE="1",
        LD_LIBRARY_PATH=_joined(libs, base.get("LD_LIBRARY_PATH", "")),
        PYTHONPATH=_joined([str(prefix / "lib" / py / "site-packages")],
                           base.get("PYTHONPATH", "")),
        AMENT_PREFIX_PATH=_joined([str(prefix), str(venv)], base.get("AMENT_PREFIX_PATH", "")),
    )


def main(argv: list[str] | None = None) -> int:
    """``overlay_env.py PREFIX -- COMMAND...``: exec COMMAND in the overlaid environment."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 3 or argv[1] != "--":
        print("usage: overlay_env.py PREFIX -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    prefix = Path(argv[0]).resolve()
    if not (prefix / "share" / "ament_index").is_dir():
        print(f"overlay_env.py: {prefix} holds no installed ROS packages (build it with "
              "tools/build_interfaces.sh)", file=sys.stderr)
        return 2
    command = argv[2:]
    os.execvpe(command[0], command, overlay_env(prefix))
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
