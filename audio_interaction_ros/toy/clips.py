"""Recordings the project makes itself, for the demo and the tests of a clone without ../shared.

The shared folder holds real recordings and the reference goldens; a clone from GitHub has
neither. Everything else only needs *some* audio that the toy model reacts to in a known way, so
it is synthesised here from the toy's own sound primitives and espeak-ng: a beep laid out like the
fixture's golden beep input, an espeak-ng sentence, a 48 kHz stereo clip (WAV and MP3) that makes
every consumer convert rate and channels, and two minutes of beeps over noise for long streams.

Each clip is written once into the given directory (under a file lock, through a temporary file
renamed into place, so concurrent test processes never see half a clip); a ``.version`` file there
names the recipe, and clips of another recipe version are written anew.
``python -m audio_interaction_ros.toy.clips DIR [NAME...]`` writes them and prints their paths.
"""
from __future__ import annotations

import argparse
import fcntl
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile
from numpy.typing import NDArray

from ..core.audio import resample
from ..core.protocol import SAMPLE_RATE_HZ
from .sounds import beep, noise, other_tone
from .speech import espeak_available, synthesize

CLIPS_VERSION = "1"
SPEECH_TEXT = "Robot, could you please bring me a glass of water from the kitchen"
# the demo without ../shared: both replies; the first clip sets the player's format (48 kHz
# stereo, so the interaction node converts), the player converts the others to it
DEMO_CLIPS = ("beeps_48k_stereo", "speech")


def _pad(seconds: float, *pieces: tuple[float, NDArray[np.float32]]) -> NDArray[np.float32]:
    """Return ``seconds`` of digital silence at 16 kHz with each (start_s, sound) added in."""
    clip = np.zeros(int(round(seconds * SAMPLE_RATE_HZ)), dtype=np.float32)
    for start_s, sound in pieces:
        start = int(round(start_s * SAMPLE_RATE_HZ))
        clip[start:start + len(sound)] += sound[:len(clip) - start]
    return clip


def beep_16k() -> tuple[NDArray[np.float32], int]:
    """Make 2.3 s at 16 kHz mono: a 0.4 s 1 kHz beep at half scale from 0.8 s (chunk 2).

    Laid out as the fixture's golden ``beep.wav``; the toy answers it in chunk 2 with
    "I hear a beep.".
    """
    return _pad(2.3, (0.8, beep(0.4, 0.5))), SAMPLE_RATE_HZ


def speech_16k(work_dir: Path) -> tuple[NDArray[np.float32], int]:
    """Make an espeak-ng sentence (about 4 s) between 0.5 s and 1.5 s of silence at 16 kHz.

    The toy answers "Someone is speaking." once it has ended.
    """
    voice = synthesize(SPEECH_TEXT, voice="en-us", speed_wpm=160, pitch=50)
    voice = 0.5 * voice / np.max(np.abs(voice))
    return _pad(0.5 + len(voice) / SAMPLE_RATE_HZ + 1.5, (0.5, voice)), SAMPLE_RATE_HZ


def beeps_48k_stereo() -> tuple[NDArray[np.float32], int]:
    """Make 8 s at 48 kHz stereo: two beeps over a faint noise bed.

    The second channel is a little quieter. Each beep fills a 0.4 s chunk (3 and 13) when the
    clip starts on the chunk grid and gets "I hear a beep."; they are 4 s apart, so the second
    comes after the robot has said its reply to the first (it does not listen while it speaks).
    """
    rng = np.random.default_rng(48)
    mono = _pad(8.0, (1.2, beep(0.4, 0.4)), (5.2, beep(0.4, 0.25)))
    mono += noise(rng, len(mono), "pink", 0.003)
    wide = resample(mono, SAMPLE_RATE_HZ, 48000)
    return np.stack([wide, 0.8 * wide], axis=1), 48000


def long_16k() -> tuple[NDArray[np.float32], int]:
    """Make 120 s at 16 kHz mono: beeps every 6 s and other tones between them, over noise.

    The beeps have random levels (20 replies), the other tones get none: enough turns to fill and
    rebuild a session's context.
    """
    rng = np.random.default_rng(120)
    seconds = 120.0
    events = []
    for start_s in np.arange(2.0, seconds - 1.0, 6.0):
        events.append((float(start_s), beep(0.4, float(rng.uniform(0.1, 0.6)))))
        events.append((float(start_s) + 2.8, other_tone(rng, 1.2, float(rng.uniform(0.1, 0.4)))))
    clip = _pad(seconds, *events)
    return clip + noise(rng, len(clip), "white", 0.002), SAMPLE_RATE_HZ


# name -> (file name, maker(work_dir) -> (samples, rate), needs espeak-ng)
RECIPES: dict[str, tuple[str, Callable[[Path], tuple[NDArray[np.float32], int]], bool]] = {
    "beep": ("beep.wav", lambda work: beep_16k(), False),
    "speech": ("speech.wav", speech_16k, True),
    "beeps_48k_stereo": ("beeps_48k_stereo.wav", lambda work: beeps_48k_stereo(), False),
    "beeps_48k_stereo_mp3": ("beeps_48k_stereo.mp3", lambda work: beeps_48k_stereo(), False),
    "long": ("long.wav", lambda work: long_16k(), False),
}


class ClipUnavailable(RuntimeError):
    """The clip cannot be made here (espeak-ng is missing)."""


def _forget_other_versions(directory: Path) -> None:
    """Delete clips written by another recipe version (they would be reused); lock held."""
    marker = directory / ".version"
    try:
        if marker.read_text().strip() == CLIPS_VERSION:
            return
    except OSError:
        pass
    for file_name, _, _ in RECIPES.values():
        (directory / file_name).unlink(missing_ok=True)
    marker.write_text(CLIPS_VERSION + "\n")


def ensure_clip(root: Path, name: str) -> Path:
    """Return the path of clip ``name`` in directory ``root``, written first if it is not there.

    One writer at a time (a file lock): two test processes never see each other's half-written
    or just-deleted clips.
    """
    file_name, make, needs_espeak = RECIPES[name]
    directory = Path(root)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file_name
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _forget_other_versions(directory)
        if path.is_file():
            return path
        if needs_espeak and not espeak_available():
            raise ClipUnavailable(f"the {name} clip needs espeak-ng (apt-get install espeak-ng)")
        with tempfile.TemporaryDirectory(dir=directory, prefix=".work-") as work:
            samples, rate = make(Path(work))
            staged = Path(work) / file_name
            if file_name.endswith(".mp3"):
                soundfile.write(str(staged), samples, rate, format="MP3")
            else:
                soundfile.write(str(staged), samples, rate, subtype="PCM_16")
            os.replace(staged, path)
    return path


def ensure_clips(root: Path, names: tuple[str, ...] = DEMO_CLIPS) -> list[Path]:
    """Return the paths of the clips that can be made here, in order.

    Without espeak-ng the speech clip is left out, with one line on stderr saying so.
    """
    paths = []
    for name in names:
        try:
            paths.append(ensure_clip(root, name))
        except ClipUnavailable as exc:
            print(f"note: {exc}; skipping it", file=sys.stderr)
    return paths


def main(argv: list[str] | None = None) -> int:
    """Write the demo clips (or the named ones) into ROOT; print their paths, one a line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="directory to write into (e.g. build/clips)")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"clips to write, of {', '.join(RECIPES)} "
                             f"(default: {' '.join(DEMO_CLIPS)})")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(RECIPES))
    if unknown:
        parser.error(f"unknown clip {', '.join(unknown)}")
    for path in ensure_clips(args.root, tuple(args.names) or DEMO_CLIPS):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
