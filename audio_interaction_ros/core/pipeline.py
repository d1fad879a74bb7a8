"""One stream's way from samples to events: front end -> encoder -> every session. No rclpy.

The engine (live audio), the command-line runner (files) and the toy's self-check all drive the
model through this object, so that sequence is written once. Two front-end modes
(features.py): ``streaming`` (causal, chunk by chunk, its state kept from call to call: what the
node runs) and ``reference`` (one mel over all the samples of a call, floored at their own
maximum: the authors' inference over a file).

The two halves stay apart on purpose: ``encode`` turns samples into encoder rows
(n, 10, width), and ``step`` runs every session one step over one chunk's rows, all of them
in one batched forward (step.py). The engine, which serves several streams, takes the halves
apart further: each stream's ``features``, one ``encode_mels`` call for every stream's chunk,
one forward for every stream's sessions.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from numpy.typing import NDArray

from .audio import pad_to_chunks
from .events import Event, ReplyDone
from .features import DEFAULT_FLOOR_WINDOW_S, LogMel, StreamingFrontEnd, reference_features
from .model import AudioInteractionModel
from .protocol import CHUNK_SAMPLES, CHUNK_SECONDS, SAMPLE_RATE_HZ
from .session import ListenSession
from .step import ListenRequest, run_chunk

FrontEndMode = Literal["streaming", "reference"]
FRONT_END_MODES: tuple[str, ...] = ("streaming", "reference")


@dataclass(frozen=True)
class StepTiming:
    """Where one chunk's time went (seconds); ``listen_s`` excludes reply generation."""

    frontend_s: float
    encoder_s: float
    listen_s: float
    reply_s: float

    @property
    def decision_s(self) -> float:
        """From a complete chunk to every session's decision (what the robot waits for)."""
        return self.frontend_s + self.encoder_s + self.listen_s


@dataclass(frozen=True)
class Encoded:
    """Encoder rows of whole chunks and what computing them took."""

    rows: torch.Tensor  # (n_chunks, 10, width)
    frontend_s: float
    encoder_s: float


@dataclass(frozen=True)
class StepReport:
    """What one step over every session produced."""

    events: list[Event]  # in the order they were emitted
    listen_s: float  # the sessions' decisions (LM forward and sampling), replies excluded
    reply_s: float  # generating replies
    replies: int


@dataclass(frozen=True)
class ChunkResult:
    """One chunk of a ``process`` call: its index in the samples given, events and timing."""

    index: int
    events: list[Event]
    timing: StepTiming
    replies: int


class Pipeline:
    """Front end, encoder and the sessions of one audio stream on a shared model."""

    def __init__(self, model: AudioInteractionModel, sessions: list[ListenSession],
                 frontend: FrontEndMode = "streaming",
                 floor_window_s: float = DEFAULT_FLOOR_WINDOW_S) -> None:
        names = [s.name for s in sessions]
        if len(set(names)) != len(names):
            raise ValueError(f"session names must be unique, got {names}")
        if frontend not in FRONT_END_MODES:
            raise ValueError(f"frontend must be one of {', '.join(FRONT_END_MODES)}, "
                             f"got {frontend!r}")
        self.model = model
        self.frontend = frontend
        self.sessions: dict[str, ListenSession] = {s.name: s for s in sessions}
        self._log_mel = LogMel()
        self._streaming = StreamingFrontEnd(floor_window_s, log_mel=self._log_mel)

    # ------------------------------------------------------------------ encoder half
    def features(self, samples: NDArray[np.float32]) -> torch.Tensor:
        """Log-mel (128, 40 n) of whole chunks of float32 mono 16 kHz audio, in this
        pipeline's mode. Streaming: each chunk after the ones of earlier calls (causal state
        kept). Reference: one mel over ``samples`` (their own floor); call it once per
        recording, as the authors do."""
        if len(samples) == 0 or len(samples) % CHUNK_SAMPLES:
            raise ValueError(f"samples must be whole chunks of {CHUNK_SAMPLES}, "
                             f"got {len(samples)}")
        if self.frontend == "streaming":
            return torch.cat([self._streaming.push(chunk)
                              for chunk in samples.reshape(-1, CHUNK_SAMPLES)], dim=1)
        return reference_features(samples, self._log_mel)

    def encode(self, samples: NDArray[np.float32]) -> Encoded:
        """Encoder rows of whole chunks (``features``, then the audio tower)."""
        started = time.perf_counter()
        mel = self.features(samples)
        featured = time.perf_counter()
        rows = encode_mels(self.model, [mel])
        return Encoded(rows, featured - started, time.perf_counter() - featured)

    def encode_recording(self, samples: NDArray[np.float32]) -> torch.Tensor:
        """Rows of a whole recording known in advance (a spoken instruction): reference mel,
        padded to whole chunks; the stream's own front-end state is not touched."""
        audio = pad_to_chunks(np.asarray(samples, dtype=np.float32), CHUNK_SAMPLES)
        return self.model.encode(reference_features(audio, self._log_mel))

    def reset_frontend(self) -> None:
        """Forget the streaming front end's past (the next chunk starts a stream)."""
        self._streaming.reset()

    # ------------------------------------------------------------------ session half
    def step(self, rows: torch.Tensor, *, stream_time_s: float | None = None,
             emit: Callable[[Event], None] | None = None) -> StepReport:
        """Every session one step over one chunk's rows (10, width), batched: all decisions in
        one forward, then the replies together (step.py). ``emit`` receives each event as it
        happens (streamed reply text)."""
        events: list[Event] = []

        def report(_: ListenSession, event: Event) -> None:
            events.append(event)
            if emit is not None:
                emit(event)

        listens = [ListenRequest(s, rows, stream_time_s) for s in self.sessions.values()]
        listen_s, reply_s = run_chunk(self.model, listens, report)
        replies = sum(isinstance(e, ReplyDone) for e in events)
        return StepReport(events, listen_s, reply_s, replies)

    # ------------------------------------------------------------------ both
    def process(self, samples: NDArray[np.float32], *, start_s: float | None = None,
                emit: Callable[[Event], None] | None = None) -> Iterator[ChunkResult]:
        """Samples in (whole chunks), events out: one ``ChunkResult`` per chunk, yielded as
        soon as every session has taken it.

        ``start_s``: the stream time at the first sample (events are stamped with the end of
        their chunk); None lets each session count its own chunks. In reference mode the
        front end and encoder run once over all ``samples`` and their time is shared evenly.
        """
        if self.frontend == "reference":
            encoded = self.encode(samples)
            yield from self._steps(encoded, 0, start_s, emit)
            return
        for k, chunk in enumerate(samples.reshape(-1, CHUNK_SAMPLES)):
            yield from self._steps(self.encode(chunk), k, start_s, emit)

    def _steps(self, encoded: Encoded, first: int, start_s: float | None,
               emit: Callable[[Event], None] | None) -> Iterator[ChunkResult]:
        n = len(encoded.rows)
        for k, rows in enumerate(encoded.rows, start=first):
            when = None if start_s is None else start_s + (k + 1) * CHUNK_SECONDS
            report = self.step(rows, stream_time_s=when, emit=emit)
            timing = StepTiming(encoded.frontend_s / n, encoded.encoder_s / n, report.listen_s,
                                report.reply_s)
            yield ChunkResult(k, report.events, timing, report.replies)


def encode_mels(model: AudioInteractionModel, mels: list[torch.Tensor]) -> torch.Tensor:
    """Encoder rows (n, 10, width) of several mels (128, 40 k) in ONE audio-tower call: each
    0.4 s chunk is its own window, so chunks of different streams batch exactly."""
    rows = model.encode(mels[0] if len(mels) == 1 else torch.cat(mels, dim=1))
    if model.device.type == "cuda":  # kernels run asynchronously: time them whole
        torch.cuda.synchronize(model.device)
    return rows


def file_segments(clips: Iterable[NDArray[np.float32]], trailing_s: float
                  ) -> Iterator[tuple[int, str, NDArray[np.float32]]]:
    """The authors' inference over files: each clip padded to whole chunks (segment
    ``audio``), then ``trailing_s`` of zeros as a segment of its own (``trailing_silence``,
    encoded separately in reference mode); yields (clip index, segment, samples)."""
    for index, clip in enumerate(clips):
        yield index, "audio", pad_to_chunks(np.asarray(clip, dtype=np.float32), CHUNK_SAMPLES)
        if trailing_s > 0:
            zeros = np.zeros(int(round(trailing_s * SAMPLE_RATE_HZ)), dtype=np.float32)
            yield index, "trailing_silence", pad_to_chunks(zeros, CHUNK_SAMPLES)
