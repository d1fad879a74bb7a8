"""Build (once) and find the toy checkpoint; the ``audio-interaction-build-toy`` command.

The real weights are 13 GB; demos and tests use a tiny model of the same architecture in the same
release layout, trained here in about a minute. ``ensure_toy_model`` returns its directory and
builds it only when it is missing or was built by another recipe version. A build writes into a
temporary sibling directory and renames it into place at the end, under a file lock, so an
interrupted or concurrent build never leaves (or exposes) half a model.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .spec import BEEP_REPLY, RECIPE, SPEECH_REPLY, TOY_VERSION

ENV_DIR = "AUDIO_INTERACTION_TOY_DIR"
MARKER = "TOY_MODEL.json"
REAL_MODEL = "zhifeixie/AudioInteraction"
BANNER = f"""\
This is a TOY Audio-Interaction model (2 layers, width 64, trained on synthetic audio).
It only knows two things: a ~1 kHz beep -> "{BEEP_REPLY}", and the end of speech ->
"{SPEECH_REPLY}". Silence, noise and steady tones get no reply; other real sounds (a dog,
a cough, music) it takes for speech.
For the real model (3B, ~13 GB, needs a GPU) use model:={REAL_MODEL}, e.g.
  ros2 launch audio_interaction_ros interaction.launch.py model:={REAL_MODEL} device:=cuda
  audio-interaction-run --model {REAL_MODEL} --device cuda clip.wav"""


class ToyBuildError(RuntimeError):
    """The toy could not be built, or was built but failed its behaviour check."""


def default_toy_dir() -> Path:
    """``$AUDIO_INTERACTION_TOY_DIR``, else ``~/.cache/audio_interaction_ros/toy-<version>``
    (``$XDG_CACHE_HOME`` instead of ``~/.cache`` when set)."""
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "audio_interaction_ros" / f"toy-{TOY_VERSION}"


def read_marker(directory: Path) -> dict | None:
    """The build record of a toy checkpoint, or None if there is none."""
    try:
        return json.loads((directory / MARKER).read_text())
    except (OSError, ValueError):
        return None


def is_current(directory: Path) -> bool:
    """A complete toy of this recipe version; one built without espeak-ng counts as stale once
    espeak-ng is available (it could not learn speech)."""
    from ..core.checkpoint import CheckpointError, verify_checkpoint
    from .speech import espeak_available

    marker = read_marker(directory)
    if not marker or marker.get("toy_version") != TOY_VERSION:
        return False
    if not marker.get("speech") and espeak_available():
        return False
    try:
        verify_checkpoint(directory)
    except CheckpointError:
        return False
    return True


@contextlib.contextmanager
def _build_lock(target: Path) -> Iterator[None]:
    """One builder per target directory at a time (parallel test workers, two terminals)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_readme(directory: Path) -> None:
    (directory / "README.md").write_text(
        "# Toy Audio-Interaction checkpoint (generated; not the real model)\n\n"
        f"Built by `audio-interaction-build-toy` (recipe version {TOY_VERSION}).\n\n"
        + BANNER + "\n")


def build_toy_model(target: Path, log: Callable[[str], None] = print) -> Path:
    """Train and write the toy into ``target`` (replacing what is there); returns ``target``.

    Call with the lock held (``ensure_toy_model`` does). Raises ToyBuildError if the result
    does not behave.
    """
    from ..core.checkpoint import verify_checkpoint
    from .check import self_check
    from .export import export
    from .speech import espeak_available, make_utterances
    from .train import torch_threads, train

    started = time.perf_counter()
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.building-*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by a killed build (we hold the lock)
    if target.exists() and read_marker(target) is None and any(target.iterdir()):
        raise ToyBuildError(f"{target} exists and is not a toy checkpoint: refusing to replace it "
                            "(choose another --out)")
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
    try:
        speech = espeak_available()
        if speech:
            utterances = make_utterances(RECIPE.n_utterances, RECIPE.seed)
        else:
            utterances = []
            log("  WARNING: espeak-ng not found: the toy will not learn speech "
                "(apt-get install espeak-ng, then build again)")
        with torch_threads(RECIPE.threads):  # also for the check: the toy is too small for more
            trained = train(utterances, log=log)
            export(trained, staging)
            verify_checkpoint(staging)
            problems = self_check(staging, speech)
        if problems:
            raise ToyBuildError("the trained toy does not behave: " + "; ".join(problems))
        seconds = time.perf_counter() - started
        marker = {"toy_version": TOY_VERSION, "speech": speech, "build_seconds": round(seconds, 1),
                  "final_loss": round(trained.final_loss, 5), "seed": RECIPE.seed,
                  "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "note": "TOY model: knows only beeps and the end of speech"}
        (staging / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        _write_readme(staging)
        _make_readable(staging)
        _replace_dir(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _make_readable(directory: Path) -> None:
    """mkdtemp and safetensors create owner-only files; a cache should read like any other."""
    for path in [directory, *directory.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def _replace_dir(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an old ``target`` is moved aside first, then deleted."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / "toy")
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def ensure_toy_model(cache_dir: Path | None = None, force: bool = False,
                     log: Callable[[str], None] | None = None) -> Path:
    """Directory of the toy checkpoint (``cache_dir``, default ``default_toy_dir()``), built
    first if missing, incomplete, of another recipe version, or ``force`` is set."""
    target = Path(cache_dir).expanduser() if cache_dir is not None else default_toy_dir()
    if not force and is_current(target):
        return target
    log = log or (lambda message: print(message, file=sys.stderr))
    with _build_lock(target):
        if force or not is_current(target):  # another process may have built it meanwhile
            log(f"building the toy Audio-Interaction model into {target} (about a minute)")
            build_toy_model(target, log)
    return target


def _size_mb(directory: Path) -> float:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()) / 1e6


def _run_command() -> str:
    """Return how ``audio-interaction-run`` starts from the user's shell.

    By name when it is on PATH; after sourcing the workspace when that puts it there (the dev
    venv); else through ros2 run (a colcon workspace keeps it in lib/audio_interaction_ros).
    """
    name = "audio-interaction-run"
    if shutil.which(name):
        return name
    setup = Path(sys.prefix) / "setup.bash"
    if setup.is_file() and (Path(sys.prefix) / "bin" / name).exists():
        return f"source {setup} && {name}"
    return f"ros2 run audio_interaction_ros {name}"


def main(argv: list[str] | None = None) -> int:
    """``audio-interaction-build-toy [--out DIR] [--force] [--print-path]``."""
    parser = argparse.ArgumentParser(
        prog="audio-interaction-build-toy",
        description="Train the tiny TOY Audio-Interaction model (about a minute on 2 CPU cores) "
                    "and cache it in the release layout. It only knows beeps and speech.")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"checkpoint directory (default: ${ENV_DIR} or "
                             f"~/.cache/audio_interaction_ros/toy-{TOY_VERSION})")
    parser.add_argument("--force", action="store_true", help="rebuild even if it is cached")
    parser.add_argument("--print-path", action="store_true",
                        help="print only the checkpoint directory on stdout (for scripts); "
                             "everything else goes to stderr")
    args = parser.parse_args(argv)
    info = sys.stderr if args.print_path else sys.stdout
    print(BANNER, file=info, flush=True)
    target = args.out if args.out is not None else default_toy_dir()
    cached = not args.force and is_current(target)
    try:
        path = ensure_toy_model(target, force=args.force,
                                log=lambda message: print(message, file=info, flush=True))
    except (ToyBuildError, RuntimeError, OSError) as exc:
        print(f"audio-interaction-build-toy: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    marker = read_marker(path) or {}
    state = "already built" if cached else f"built in {marker.get('build_seconds')} s"
    print(f"toy model {state}: {path} ({_size_mb(path):.1f} MB)\n"
          f"try it:  {_run_command()} --model {path} --frontend streaming recording.wav",
          file=info)
    if args.print_path:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
