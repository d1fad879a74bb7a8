"""The worker that owns the model: chunking, bounded backlog, front end, sessions, events.

No rclpy here. Other threads only call ``push()`` (any length of float32 mono 16 kHz audio) and
the control methods; the engine thread cuts whole 0.4 s chunks, computes the features once, runs
every session on them and hands each event to ``emit``. While a session speaks, pushed audio waits
in the backlog and is consumed in order afterwards (a reply sits between two chunks, as in
training). The backlog is bounded in seconds: on overflow the OLDEST audio is dropped, counted by
reason and reported as an ``AudioDropped`` event, never silently.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from .events import AudioDropped, EngineError, Event, ReplyDone
from .audio import pad_to_chunks
from .features import DEFAULT_FLOOR_WINDOW_S, StreamingFrontEnd, reference_features
from .model import AudioInteractionModel
from .protocol import CHUNK_SAMPLES, CHUNK_SECONDS, SAMPLE_RATE_HZ
from .session import ListenSession
from .step import ListenRequest, forward_step

TIMING_WINDOW = 512  # chunks kept for latency percentiles (about 3.4 minutes)
RTF_WINDOW = 25  # chunks (10 s) over which the real-time factor is reported


@dataclass(frozen=True)
class EngineConfig:
    """Limits of the engine; frozen: build a new engine to change them."""

    max_backlog_s: float = 10.0
    floor_window_s: float = DEFAULT_FLOOR_WINDOW_S

    def __post_init__(self) -> None:
        if self.max_backlog_s < CHUNK_SECONDS:
            raise ValueError(f"max_backlog_s must be at least one chunk ({CHUNK_SECONDS} s), "
                             f"got {self.max_backlog_s}")


class SampleFifo:
    """Bounded FIFO of float32 samples kept as the arrays pushed (no per-push concatenation)."""

    def __init__(self, max_samples: int) -> None:
        self.max_samples = max_samples
        self._pieces: deque[NDArray[np.float32]] = deque()
        self._head = 0  # samples already taken from the first piece
        self.size = 0

    def push(self, samples: NDArray[np.float32]) -> int:
        """Append; return how many of the oldest samples were dropped to stay bounded."""
        if len(samples) == 0:
            return 0
        dropped = 0
        if len(samples) > self.max_samples:  # one piece larger than the whole backlog
            dropped = len(samples) - self.max_samples
            samples = samples[dropped:]
        self._pieces.append(samples)
        self.size += len(samples)
        excess = self.size - self.max_samples
        if excess > 0:
            self._discard(excess)
            dropped += excess
        return dropped

    def _discard(self, count: int) -> None:
        while count > 0:
            first = self._pieces[0]
            left = len(first) - self._head
            if left <= count:
                self._pieces.popleft()
                self._head = 0
                self.size -= left
                count -= left
            else:
                self._head += count
                self.size -= count
                count = 0

    def take(self, count: int) -> NDArray[np.float32] | None:
        """Remove and return exactly ``count`` samples, or None if fewer are buffered."""
        if self.size < count:
            return None
        out = np.empty(count, dtype=np.float32)
        filled = 0
        while filled < count:
            first = self._pieces[0]
            n = min(len(first) - self._head, count - filled)
            out[filled:filled + n] = first[self._head:self._head + n]
            filled += n
            self._head += n
            if self._head == len(first):
                self._pieces.popleft()
                self._head = 0
        self.size -= count
        return out

    def clear(self) -> int:
        """Drop everything; return how many samples that was."""
        count = self.size
        self._pieces.clear()
        self._head = 0
        self.size = 0
        return count


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
class EngineStats:
    """A snapshot for diagnostics; read from any thread."""

    chunks: int
    backlog_s: float
    dropped_s: dict[str, float]
    decision_p50_ms: float
    decision_p95_ms: float
    real_time_factor: float  # compute time per chunk / 0.4 s over the last RTF_WINDOW chunks
    replies: int
    errors: int
    last_error: str


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


class Engine:
    """Owns the model and its sessions; run it on its own thread with ``start()``, or call
    ``process_pending()`` from one thread (tests, offline runs)."""

    def __init__(self, model: AudioInteractionModel, sessions: list[ListenSession],
                 config: EngineConfig | None = None,
                 emit: Callable[[Event], None] | None = None) -> None:
        names = [s.name for s in sessions]
        if len(set(names)) != len(names):
            raise ValueError(f"session names must be unique, got {names}")
        self.model = model
        self.config = config or EngineConfig()
        self._sessions = {s.name: s for s in sessions}
        self._emit = emit or (lambda event: None)
        self._frontend = StreamingFrontEnd(self.config.floor_window_s)
        self._fifo = SampleFifo(int(self.config.max_backlog_s * SAMPLE_RATE_HZ))
        self._lock = threading.Condition()
        self._pending_drops: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()
        self._commands: deque[Callable[[], None]] = deque()
        self._timings: deque[StepTiming] = deque(maxlen=TIMING_WINDOW)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.busy = False  # a chunk is being processed (replies included)
        self._chunks = 0
        self._clock_samples = 0  # consumed + dropped: the audio clock of the stream
        self._replies = 0
        self._errors = 0
        self._last_error = ""

    # ------------------------------------------------------------ any thread
    def push(self, samples: NDArray[np.float32]) -> None:
        """Queue float32 mono 16 kHz audio of any length; never blocks on the model."""
        with self._lock:
            dropped = self._fifo.push(samples)
            if dropped:
                self._pending_drops["backlog_overflow"] += dropped
            self._lock.notify()

    def drop_backlog(self, reason: str) -> None:
        """Discard all queued audio (counted under ``reason``), e.g. when listening is disabled."""
        with self._lock:
            dropped = self._fifo.clear()
            if dropped:
                self._pending_drops[reason] += dropped

    def count_dropped(self, samples: int, reason: str) -> None:
        """Count audio that a transport rejected before it reached the engine."""
        if samples > 0:
            with self._lock:
                self._pending_drops[reason] += samples
                self._lock.notify()

    def call_soon(self, command: Callable[[], None]) -> None:
        """Run ``command`` on the engine thread between chunks (session changes, resets)."""
        with self._lock:
            self._commands.append(command)
            self._lock.notify()

    def reset_session(self, name: str) -> None:
        """Reset one session's context between chunks; unknown names raise KeyError now."""
        session = self._sessions[name]
        self.call_soon(session.reset)

    def inject_audio(self, name: str, samples: NDArray[np.float32], pinned: bool = True) -> None:
        """Feed recorded audio (a spoken instruction) to one session before the next live chunk.

        The whole recording is known, so it is encoded in reference mode (one mel, its own
        floor); ``pinned`` keeps it through context rebuilds so the task is never forgotten.
        """
        session = self._sessions[name]
        audio = pad_to_chunks(np.asarray(samples, dtype=np.float32), CHUNK_SAMPLES)

        def feed() -> None:
            rows = self.model.encode(reference_features(audio))
            for chunk_rows in rows:
                session.listen(chunk_rows, pinned=pinned, emit=self._emit)

        self.call_soon(feed)

    def add_text_turn(self, name: str, text: str) -> None:
        """Insert a typed instruction turn into one session before the next chunk."""
        session = self._sessions[name]
        self.call_soon(lambda: session.add_text_turn(text))

    def session(self, name: str) -> ListenSession:
        """A session by name, to be changed only through ``call_soon``."""
        return self._sessions[name]

    @property
    def session_names(self) -> list[str]:
        return list(self._sessions)

    @property
    def backlog_s(self) -> float:
        return self._fifo.size / SAMPLE_RATE_HZ

    def stats(self) -> EngineStats:
        with self._lock:
            timings = list(self._timings)
            dropped = self._dropped + self._pending_drops
        decisions = [t.decision_s * 1e3 for t in timings]
        recent = timings[-RTF_WINDOW:]  # recent enough to show overload and recovery quickly
        busy = sum(t.decision_s + t.reply_s for t in recent)
        return EngineStats(
            chunks=self._chunks, backlog_s=self.backlog_s,
            dropped_s={k: v / SAMPLE_RATE_HZ for k, v in dropped.items()},
            decision_p50_ms=_percentile(decisions, 50), decision_p95_ms=_percentile(decisions, 95),
            real_time_factor=busy / (len(recent) * CHUNK_SECONDS) if recent else 0.0,
            replies=self._replies, errors=self._errors, last_error=self._last_error)

    def recent_timings(self) -> list[StepTiming]:
        with self._lock:
            return list(self._timings)

    def start(self) -> None:
        """Run the worker on its own daemon thread."""
        if self._thread is not None:
            raise RuntimeError("engine already started")
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="audio_interaction_engine",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop after the chunk in progress; True if the thread ended within ``timeout_s``."""
        with self._lock:
            self._stopping = True
            self._lock.notify()
        thread, self._thread = self._thread, None
        if thread is None:
            return True
        thread.join(timeout_s)
        return not thread.is_alive()

    # ------------------------------------------------------------ engine thread
    def process_pending(self, max_chunks: int | None = None) -> int:
        """Process the whole chunks buffered now (at most ``max_chunks``); return how many."""
        done = 0
        while max_chunks is None or done < max_chunks:
            chunk = self._next_chunk(block=False)
            if chunk is None:
                break
            self._process(chunk)
            done += 1
        self._flush_drops()
        return done

    def _run(self) -> None:
        while True:
            chunk = self._next_chunk(block=True)
            if chunk is None:
                return
            self._process(chunk)

    def _next_chunk(self, block: bool) -> NDArray[np.float32] | None:
        with self._lock:
            while True:
                while self._commands:
                    command = self._commands.popleft()
                    self._lock.release()
                    try:
                        self._run_command(command)
                    finally:
                        self._lock.acquire()
                if self._pending_drops:
                    self._lock.release()
                    try:
                        self._flush_drops()
                    finally:
                        self._lock.acquire()
                if self._stopping and block:
                    return None
                chunk = self._fifo.take(CHUNK_SAMPLES)
                if chunk is not None or not block:
                    return chunk
                self._lock.wait(0.5)

    def _run_command(self, command: Callable[[], None]) -> None:
        try:
            command()
        except (RuntimeError, ValueError, KeyError) as exc:
            self._errors += 1
            self._last_error = f"command failed: {exc}"
            self._emit(EngineError(self._last_error))

    def _flush_drops(self) -> None:
        with self._lock:
            pending, self._pending_drops = self._pending_drops, Counter()
            self._dropped.update(pending)
            self._clock_samples += sum(pending.values())  # dropped audio still took time
        for reason, samples in pending.items():
            self._emit(AudioDropped(samples, reason))

    def _process(self, chunk: NDArray[np.float32]) -> None:
        self.busy = True
        try:
            self._process_chunk(chunk)
        finally:
            self.busy = False

    def _process_chunk(self, chunk: NDArray[np.float32]) -> None:
        self._clock_samples += CHUNK_SAMPLES
        stream_time_s = self._clock_samples / SAMPLE_RATE_HZ
        reply_s = 0.0
        t0 = time.perf_counter()
        try:
            mel = self._frontend.push(chunk)
            t1 = time.perf_counter()
            rows = self.model.encode(mel)[0]
            if self.model.device.type == "cuda":
                torch.cuda.synchronize(self.model.device)
            t2 = time.perf_counter()
            sessions = list(self._sessions.values())

            def report(event: Event) -> None:
                if isinstance(event, ReplyDone):
                    self._replies += 1
                self._emit(event)

            # every session of the chunk in one forward, then the speakers' tokens together
            listen_s = forward_step(self.model, [ListenRequest(s, rows, stream_time_s)
                                                 for s in sessions], [], report)
            while replying := [s for s in sessions if s.speaking]:
                reply_s += forward_step(self.model, [], replying, report)
        except torch.OutOfMemoryError as exc:
            self._fail(f"out of GPU memory on a chunk: {exc}", CHUNK_SAMPLES)
            torch.cuda.empty_cache()
            return
        except (RuntimeError, ValueError) as exc:
            self._fail(f"chunk failed: {exc}", CHUNK_SAMPLES)
            return
        timing = StepTiming(t1 - t0, t2 - t1, listen_s, reply_s)
        with self._lock:
            self._timings.append(timing)
            self._chunks += 1

    def _fail(self, message: str, lost_samples: int) -> None:
        # A forward that failed half way leaves a KV cache that no longer matches the history:
        # start every session afresh rather than continue on a corrupt context.
        for session in self._sessions.values():
            session.reset()
        message += "; sessions were reset"
        self._errors += 1
        self._last_error = message
        with self._lock:
            self._dropped["step_failed"] += lost_samples
        self._emit(AudioDropped(lost_samples, "step_failed"))
        self._emit(EngineError(message))
