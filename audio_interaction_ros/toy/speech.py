"""Speech for the toy's training data: espeak-ng utterances with random voices, speeds and texts.

espeak-ng is the only speech source available offline on every robot distribution. Each build
synthesises a few dozen utterances once (about 10 ms each), caches the WAVs in the build's work
directory, and the stream generator reuses them at random levels and positions. Varying voice,
variant, speed and pitch is what lets a model trained on one synthesiser react to real voices.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile
from numpy.typing import NDArray

from ..core.audio import resample, to_mono
from .sounds import trim

ESPEAK = "espeak-ng"
# Built-in (non-mbrola) English voices and voice variants shipped with espeak-ng.
VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-029",
          "en-us-nyc", "en-gb-x-gbcwmd")
VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt",
            "klatt2", "klatt3", "croak", "Annie", "Alex", "david", "linda", "steph", "grandma",
            "grandpa", "john", "max", "paul", "robert", "travis", "victor", "zac")
WORDS = ("please turn off the lights in kitchen open door window close what time is it today "
         "tomorrow where are my keys can you help me find phone call mom bring water coffee tea "
         "robot stop go left right forward back slowly quickly hello good morning evening night "
         "weather going to rain sunny outside music play next song volume up down louder quieter "
         "how many people there living room garden table chair clean floor dinner ready "
         "thank very much yes no maybe later now wait minute listen carefully remember "
         "meeting three o'clock book read story children school bus train station").split()


def espeak_available() -> bool:
    """Whether speech can be synthesised here (the builder degrades to beeps only without it)."""
    return shutil.which(ESPEAK) is not None


def random_text(rng: np.random.Generator) -> str:
    """A short sentence of 2-9 everyday words (content does not matter, only that it is speech)."""
    count = int(rng.integers(2, 10))
    return " ".join(rng.choice(WORDS, size=count))


def synthesize(text: str, path: Path, voice: str, speed_wpm: int, pitch: int,
               timeout_s: float = 20.0) -> NDArray[np.float32]:
    """Run espeak-ng into ``path`` (22.05 kHz WAV); return float32 mono at 16 kHz, ends trimmed."""
    command = [ESPEAK, "-v", voice, "-s", str(speed_wpm), "-p", str(pitch), "-w", str(path),
               "--", text]
    proc = subprocess.run(command, capture_output=True, timeout=timeout_s, check=False)
    if proc.returncode != 0 or not path.is_file():
        raise RuntimeError(f"espeak-ng failed ({' '.join(command)}): "
                           f"{proc.stderr.decode(errors='replace').strip()}")
    data, rate_hz = soundfile.read(str(path), dtype="float32", always_2d=True)
    return trim(resample(to_mono(data), int(rate_hz)))


def make_utterances(count: int, work_dir: Path, seed: int) -> list[NDArray[np.float32]]:
    """``count`` utterances (peak-normalised to 1.0) with random voice/variant/speed/pitch/text.

    The WAVs go to ``work_dir`` (the build's scratch space). A voice missing from an older
    espeak-ng falls back to plain ``en-us`` (unknown variants already fall back silently).
    """
    rng = np.random.default_rng(seed)
    work_dir.mkdir(parents=True, exist_ok=True)
    utterances = []
    for index in range(count):
        variant = str(rng.choice(VARIANTS))
        voice = str(rng.choice(VOICES)) + (f"+{variant}" if variant else "")
        text, path = random_text(rng), work_dir / f"utt{index:03d}.wav"
        speed, pitch = int(rng.integers(110, 240)), int(rng.integers(15, 85))
        try:
            audio = synthesize(text, path, voice, speed, pitch)
        except RuntimeError:
            audio = synthesize(text, path, "en-us", speed, pitch)
        if len(audio) < 1600:  # under 0.1 s: nothing usable came out
            continue
        utterances.append((audio / np.max(np.abs(audio))).astype(np.float32))
    return utterances
