"""Speech for the toy's training data: espeak-ng utterances with random voices, speeds and texts.

espeak-ng is the only speech source available offline on every robot distribution. Each build
synthesises a few dozen utterances once (about 10 ms each) with the package's espeak-ng voice
(``voice.tts.EspeakTts``), and the stream generator reuses them at random levels and positions.
Varying voice, variant, speed and pitch is what lets a model trained on one synthesiser react to
real voices.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..core.audio import resample
from ..voice.tts import EspeakTts, espeak_available  # noqa: F401 - the builder asks here
from .sounds import trim

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


def random_text(rng: np.random.Generator) -> str:
    """Return a short sentence of 2-9 everyday words (only that it is speech matters)."""
    count = int(rng.integers(2, 10))
    return " ".join(rng.choice(WORDS, size=count))


def synthesize(text: str, voice: str, speed_wpm: int, pitch: int) -> NDArray[np.float32]:
    """espeak-ng speech as float32 mono at 16 kHz, near-silent ends trimmed.

    ValueError (naming the voice) if espeak-ng fails.
    """
    tts = EspeakTts(voice, words_per_minute=speed_wpm, pitch=pitch, probe=False)
    samples, rate_hz = tts.synthesize(text)  # at espeak-ng's own rate
    # resampled here, not by the voice, which clips its overshoot: the toy learnt unclipped speech
    return trim(resample(samples, rate_hz))


def make_utterances(count: int, seed: int) -> list[NDArray[np.float32]]:
    """``count`` utterances (peak-normalised to 1.0) with random voice/variant/speed/pitch/text.

    A voice missing from an older espeak-ng falls back to plain ``en-us`` (unknown variants
    already fall back silently).
    """
    rng = np.random.default_rng(seed)
    utterances = []
    for _ in range(count):
        variant = str(rng.choice(VARIANTS))
        voice = str(rng.choice(VOICES)) + (f"+{variant}" if variant else "")
        text = random_text(rng)
        speed, pitch = int(rng.integers(110, 240)), int(rng.integers(15, 85))
        try:
            audio = synthesize(text, voice, speed, pitch)
        except ValueError:
            audio = synthesize(text, "en-us", speed, pitch)
        if len(audio) < 1600:  # under 0.1 s: nothing usable came out
            continue
        utterances.append((audio / np.max(np.abs(audio))).astype(np.float32))
    return utterances
