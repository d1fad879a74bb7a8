"""An endless, deterministic mix of real and synthetic audio for the soak, one piece at a time.

Why: a day-long run needs a day of varied input (speech that triggers replies, beeps, noise, long
silences that fill the context) without holding 24 h of samples (5.5 GB) in memory. The mix cycles
through segments drawn with a seeded generator: real clips (the fixture's golden inputs and the
recordings in shared/audio, decoded once, a few MB), 1 kHz beeps on a faint noise bed, white noise
and silence (digital zeros or a very faint floor). Only the current segment is materialised.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from common import AUDIO_DIR, FIXTURE_INPUTS
from audio_interaction_ros.core.audio import read_audio_file
from audio_interaction_ros.core.protocol import SAMPLE_RATE_HZ

# kind -> probability of the next segment being of that kind
MIX = {"clip": 0.35, "silence": 0.30, "noise": 0.20, "beep": 0.15}


def default_clip_paths() -> list[Path]:
    """Every audio file of the fixture inputs and shared/audio, in a fixed order."""
    paths = sorted(FIXTURE_INPUTS.glob("*.wav"))
    paths += sorted(p for p in AUDIO_DIR.glob("*") if p.suffix in (".wav", ".mp3"))
    return paths


def load_clips(paths: list[Path]) -> dict[str, NDArray[np.float32]]:
    """Decode each file to float32 mono 16 kHz once (the core's reader: any rate, stereo, mp3)."""
    clips = {}
    for path in paths:
        clips[path.name] = read_audio_file(path)
    if not clips:
        raise ValueError("no audio clips found: set AUDIO_INTERACTION_SHARED to the shared folder")
    return clips


def _seconds(seconds: float) -> int:
    return max(1, int(seconds * SAMPLE_RATE_HZ))


class MixedAudio:
    """``read(n)`` returns the next ``n`` samples of the mix; ``seconds_by_kind`` tallies it."""

    def __init__(self, clips: dict[str, NDArray[np.float32]], seed: int = 0) -> None:
        self._clips = list(clips.items())
        self._rng = np.random.default_rng(seed)
        self._segments = self._generate()
        self._current = np.zeros(0, dtype=np.float32)
        self._offset = 0
        self.seconds_by_kind: Counter[str] = Counter()

    def _noise(self, samples: int, rms: float) -> NDArray[np.float32]:
        return (self._rng.standard_normal(samples) * rms).astype(np.float32)

    def _generate(self) -> Iterator[tuple[str, NDArray[np.float32]]]:
        kinds, weights = list(MIX), np.array(list(MIX.values()))
        while True:
            kind = kinds[self._rng.choice(len(kinds), p=weights / weights.sum())]
            if kind == "clip":
                _, clip = self._clips[self._rng.integers(len(self._clips))]
                gain = self._rng.uniform(0.5, 1.2)
                yield kind, np.clip(clip * gain, -1.0, 1.0).astype(np.float32)
            elif kind == "silence":
                samples = _seconds(self._rng.uniform(0.4, 10.0))
                if self._rng.random() < 0.5:
                    yield kind, np.zeros(samples, dtype=np.float32)
                else:
                    yield kind, self._noise(samples, 1e-4)
            elif kind == "noise":
                yield kind, self._noise(_seconds(self._rng.uniform(0.5, 6.0)),
                                        self._rng.uniform(0.003, 0.05))
            else:  # a 1 kHz beep with 5 ms ramps, on a faint noise bed
                samples = _seconds(self._rng.uniform(0.2, 1.2))
                t = np.arange(samples) / SAMPLE_RATE_HZ
                tone = self._rng.uniform(0.2, 0.8) * np.sin(2 * np.pi * 1000.0 * t)
                ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.005)
                lead = self._noise(_seconds(0.3), 0.002)
                yield kind, np.concatenate([lead, (tone * ramp).astype(np.float32)
                                            + self._noise(samples, 0.002), lead])

    def read(self, count: int) -> NDArray[np.float32]:
        """Return the next ``count`` samples (a new array: the engine keeps what it is given)."""
        out = np.empty(count, dtype=np.float32)
        filled = 0
        while filled < count:
            if self._offset == len(self._current):
                kind, self._current = next(self._segments)
                self._offset = 0
                self.seconds_by_kind[kind] += len(self._current) / SAMPLE_RATE_HZ
            n = min(count - filled, len(self._current) - self._offset)
            out[filled:filled + n] = self._current[self._offset:self._offset + n]
            filled += n
            self._offset += n
        return out
