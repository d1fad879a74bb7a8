"""Behaviour check of a built toy checkpoint, run through the project's own loading and session.

Every build ends with this check, so a toy that was written but does not behave (a changed
transformers version, an unlucky recipe edit) fails the build instead of confusing a demo later.
Tests use the same helpers to drive the model like the runner does.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ..core.events import ReplyDone
from ..core.pipeline import FrontEndMode, Pipeline, file_segments
from ..core.protocol import CHUNK_SAMPLES, SAMPLE_RATE_HZ
from ..core.sampling import SamplingConfig
from ..core.session import ListenSession, SessionConfig
from .sounds import beep as make_beep
from .sounds import noise
from .spec import BEEP_REPLY, SPEECH_REPLY
from .speech import synthesize


@dataclass(frozen=True)
class Reply:
    """One reply: where it came (segment index, chunk index inside it) and what it said."""

    segment: int
    chunk: int
    text: str
    emotion: str | None


def run_segments(model, segments: list[NDArray[np.float32]],
                 frontend: FrontEndMode = "streaming", trailing_s: float = 1.0) -> list[Reply]:
    """Run one greedy session over the segments and return every reply.

    Each segment is followed by ``trailing_s`` of zeros (a separate segment, as the runner does).
    """
    session = ListenSession(model, SessionConfig(sampling=SamplingConfig(temperature=0.0)))
    pipeline = Pipeline(model, [session], frontend=frontend)
    return [Reply(index, chunk.index, event.text, event.emotion)
            for index, (_, _, samples) in enumerate(file_segments(segments, trailing_s))
            for chunk in pipeline.process(samples)
            for event in chunk.events if isinstance(event, ReplyDone)]


def beep_clip(amp: float = 0.5) -> NDArray[np.float32]:
    """2.4 s: silence, a 0.4 s 1 kHz beep exactly on chunk 2, silence."""
    clip = np.zeros(6 * CHUNK_SAMPLES, dtype=np.float32)
    clip[2 * CHUNK_SAMPLES:3 * CHUNK_SAMPLES] = make_beep(CHUNK_SAMPLES / SAMPLE_RATE_HZ, amp)
    return clip


def noise_clip(seed: int = 0, rms: float = 0.02) -> NDArray[np.float32]:
    """4 s of white noise."""
    return noise(np.random.default_rng(seed), 10 * CHUNK_SAMPLES, "white", rms)


def speech_clip() -> tuple[NDArray[np.float32], int]:
    """Return an espeak-ng sentence from 0.6 s, then 2 s of silence.

    Its voice and text are unlike most training data. With the index of the first chunk after it
    ends.
    """
    speech = synthesize("could you please close the window in the bedroom",
                        voice="en-gb-x-rp", speed_wpm=150, pitch=40)
    start = int(0.6 * SAMPLE_RATE_HZ)
    clip = np.zeros(start + len(speech) + 2 * SAMPLE_RATE_HZ, dtype=np.float32)
    clip[start:start + len(speech)] = 0.3 * speech / np.max(np.abs(speech))
    return clip, -(-(start + len(speech)) // CHUNK_SAMPLES)


def self_check(directory: Path, speech: bool = True) -> list[str]:
    """Problems found (empty when the toy behaves).

    Beep answered in its chunk, silence and noise not answered, speech answered within a chunk of
    its end; in both front-end modes.
    """
    from ..core.model import AudioInteractionModel

    model = AudioInteractionModel.load(directory, device="cpu", dtype="float32")
    problems = []
    if speech:
        clip, first_after = speech_clip()
        for frontend in ("streaming", "reference"):
            got = [(r.chunk, r.text) for r in run_segments(model, [clip], frontend)
                   if r.segment == 0]
            if len(got) != 1 or got[0][1] != SPEECH_REPLY or \
                    abs(got[0][0] - first_after) > 1:
                problems.append(f"{frontend}: speech ending before chunk {first_after} gave {got}")
    for frontend in ("streaming", "reference"):
        replies = run_segments(model, [beep_clip()], frontend)
        if [(r.segment, r.chunk, r.text, r.emotion) for r in replies] != \
                [(0, 2, BEEP_REPLY, "surprise")]:
            problems.append(f"{frontend}: beep on chunk 2 gave {replies}")
        for name, clip in (("silence", np.zeros(10 * CHUNK_SAMPLES, dtype=np.float32)),
                           ("noise", noise_clip())):
            replies = run_segments(model, [clip], frontend)
            if replies:
                problems.append(f"{frontend}: {name} gave {replies}")
    return problems
