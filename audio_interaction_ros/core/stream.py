"""One audio input of the engine: its sessions, backlog, commands and figures. No rclpy here.

A robot's microphone is a stream; a fleet server has one per robot, all on one model. Everything
that belongs to one microphone lives here, so that one stream's flood, bad input or failure
stays its own: the bounded backlog (overflow drops ITS oldest audio, counted by reason), the
streaming front end and sessions (a ``Pipeline``), the commands queued for its sessions, its
drop/error counters and latency figures. Other threads call the public methods (the same as the
single-stream ``Engine``'s); the engine thread calls the ``_``-prefixed ones between and during
its ticks.
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

from .audio import pad_to_chunks
from .events import AudioDropped, EngineError, Event, ReplyDone
from .features import DEFAULT_FLOOR_WINDOW_S
from .model import AudioInteractionModel
from .pipeline import Pipeline, StepTiming
from .protocol import CHUNK_SAMPLES, CHUNK_SECONDS, SAMPLE_RATE_HZ
from .session import InstructionRejected, ListenSession

TIMING_WINDOW = 512  # chunks kept for latency percentiles (about 3.4 minutes)
RTF_WINDOW = 25  # chunks (10 s) over which the real-time factor is reported


@dataclass(frozen=True)
class EngineConfig:
    """Limits of one stream (of the single-stream engine, or of one robot of a fleet).

    frozen: build a new stream to change them.
    """

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
class _Instruction:
    """A session's next instruction: spoken audio, a text turn, or neither (clear it)."""

    source: str
    audio: NDArray[np.float32] | None = None
    text: str | None = None


@dataclass(frozen=True)
class EngineStats:
    """A snapshot of one stream for diagnostics; read from any thread."""

    chunks: int
    backlog_s: float
    dropped_s: dict[str, float]
    decision_p50_ms: float
    decision_p95_ms: float
    real_time_factor: float  # compute time per chunk / 0.4 s over the last RTF_WINDOW chunks
    replies: int
    errors: int
    last_error: str


@dataclass
class _OpenChunk:
    """The chunk a stream took and has not finished (its sessions may still be replying)."""

    stream_time_s: float
    frontend_s: float
    encoder_s: float = 0.0
    listen_s: float = 0.0
    reply_s: float = 0.0
    fresh: bool = True  # taken in the tick now running: a failure loses its audio


def percentile(values: list[float], q: float) -> float:
    """``np.percentile``, 0.0 for no values yet (the figures of a stream that has not run)."""
    return float(np.percentile(values, q)) if values else 0.0


def describe(exc: Exception) -> str:
    """Describe a failure as a log line: out of GPU memory is named as such."""
    if isinstance(exc, torch.OutOfMemoryError):
        return f"out of GPU memory: {exc}"
    if isinstance(exc, (RuntimeError, ValueError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"  # an unexpected type: a bug, keep its name


class Stream:
    """One audio input of an ``Engine``: front end + sessions, backlog, commands, figures."""

    def __init__(self, name: str, model: AudioInteractionModel, sessions: list[ListenSession],
                 config: EngineConfig, emit: Callable[[Event], None] | None,
                 lock: threading.Condition) -> None:
        self.name = name
        self.config = config
        self.pipeline = Pipeline(model, sessions, "streaming", config.floor_window_s)
        self._sessions = self.pipeline.sessions
        self._emit = emit or (lambda event: None)
        self._lock = lock  # the engine's: pushing audio or a command wakes its thread
        self._fifo = SampleFifo(int(config.max_backlog_s * SAMPLE_RATE_HZ))
        self._pending_drops: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()
        self._commands: deque[Callable[[], None]] = deque()
        self._instructions: dict[str, _Instruction] = {}  # newest per session, not yet applied
        self._timings: deque[StepTiming] = deque(maxlen=TIMING_WINDOW)
        self._open: _OpenChunk | None = None
        self._paused = False
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
            self._lock.notify_all()

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
                self._lock.notify_all()

    def call_soon(self, command: Callable[[], None]) -> None:
        """Run ``command`` on the engine thread between this stream's chunks.

        That is, while no reply of its sessions is going on: session changes, resets.
        """
        with self._lock:
            self._commands.append(command)
            self._lock.notify_all()

    def reset_session(self, name: str) -> None:
        """Reset one session's context between chunks; unknown names raise KeyError now."""
        session = self._sessions[name]
        self.call_soon(session.reset)

    def instruct_audio(self, name: str, samples: NDArray[np.float32], source: str = "") -> None:
        """Make recorded audio (a spoken instruction) session ``name``'s instruction.

        It replaces the previous one before the next live chunk. The whole recording is known, so
        it is encoded in reference mode (one mel, its own floor). ``source`` names it: an
        instruction whose source equals the session's current one is not fed again (re-activating a
        node must not repeat it). Too long for the session's instruction budget:
        InstructionRejected (a ValueError) now, nothing queued.
        """
        session = self._sessions[name]
        audio = pad_to_chunks(np.asarray(samples, dtype=np.float32), CHUNK_SAMPLES)
        session.check_spoken_instruction(len(audio) // CHUNK_SAMPLES)
        self._queue_instruction(name, _Instruction(source, audio=audio))

    def instruct_text(self, name: str, text: str) -> None:
        """Make a typed turn session ``name``'s instruction before the next chunk.

        It replaces the previous one. Empty text raises ValueError now; a turn too long for the
        budget is reported as an EngineError when its turn comes.
        """
        if name not in self._sessions:
            raise KeyError(name)
        if not text.strip():
            raise InstructionRejected("a text turn needs some text")
        self._queue_instruction(name, _Instruction(text, text=text))

    def clear_instruction(self, name: str) -> None:
        """Remove session ``name``'s instruction before the next chunk."""
        if name not in self._sessions:
            raise KeyError(name)
        self._queue_instruction(name, _Instruction(""))

    def session(self, name: str) -> ListenSession:
        """Return a session by name, to be changed only through ``call_soon``."""
        return self._sessions[name]

    @property
    def session_names(self) -> list[str]:
        return list(self._sessions)

    @property
    def backlog_s(self) -> float:
        return self._fifo.size / SAMPLE_RATE_HZ

    def pause(self) -> None:
        """Take no more chunks or commands of this stream (its backlog and queued commands wait).

        A chunk in progress, replies included, still ends (``busy`` says when). What a stopped
        single-stream engine did, for one robot of a fleet whose node is deactivated.
        """
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        """Serve this stream again from the next tick."""
        with self._lock:
            self._paused = False
            self._lock.notify_all()

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def model(self) -> AudioInteractionModel:
        return self.pipeline.model

    @property
    def busy(self) -> bool:
        """A chunk of this stream is being processed (its replies included)."""
        return self._open is not None

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
            decision_p50_ms=percentile(decisions, 50), decision_p95_ms=percentile(decisions, 95),
            real_time_factor=busy / (len(recent) * CHUNK_SECONDS) if recent else 0.0,
            replies=self._replies, errors=self._errors, last_error=self._last_error)

    def recent_timings(self) -> list[StepTiming]:
        with self._lock:
            return list(self._timings)

    def _queue_instruction(self, name: str, instruction: _Instruction) -> None:
        # Only the newest instruction of a session matters: one command per session at a time,
        # so re-instructing faster than the engine runs queues nothing more.
        with self._lock:
            if name not in self._instructions:
                self.call_soon(lambda: self._apply_instruction(name))
            self._instructions[name] = instruction

    # ------------------------------------------------------------ engine thread
    @property
    def _replying(self) -> list[ListenSession]:
        return [s for s in self._sessions.values() if s.speaking]

    def _has_commands(self) -> bool:
        return not self._paused and (bool(self._commands) or bool(self._pending_drops))

    def _between_chunks(self) -> None:
        """Run commands and drop reports, only while no chunk of this stream is open.

        The caller does not hold the lock.
        """
        if self._open is not None or self._paused:
            return
        while True:
            with self._lock:
                if not self._commands:
                    break
                command = self._commands.popleft()
            self._run_command(command)
        try:
            self._flush_drops()
        except Exception as exc:  # the transport of the drop report failed
            self._fail(f"reporting failed: {describe(exc)}", 0)

    def _take_chunk(self) -> NDArray[np.float32] | None:
        """Return the next whole chunk, if one is buffered and no chunk is open (lock held)."""
        if self._open is not None or self._paused:
            return None
        return self._fifo.take(CHUNK_SAMPLES)

    def _open_chunk(self, chunk: NDArray[np.float32]) -> torch.Tensor:
        """Start a chunk taken from the backlog: its streaming log-mel (128, 40)."""
        started = time.perf_counter()
        stream_time_s = (self._clock_samples + CHUNK_SAMPLES) / SAMPLE_RATE_HZ
        self._clock_samples += CHUNK_SAMPLES
        self._open = _OpenChunk(stream_time_s, 0.0)
        mel = self.pipeline.features(chunk)
        self._open.frontend_s = time.perf_counter() - started
        return mel

    def _report(self, event: Event) -> None:
        if isinstance(event, ReplyDone):
            self._replies += 1
        self._emit(event)

    def _stepped(self, seconds: float) -> None:
        """After a tick's forward.

        Its time goes to the decision (a chunk taken in this tick) or to the replies; the chunk
        closes when no session of the stream is replying.
        """
        chunk = self._open
        if chunk is None:
            return
        if chunk.fresh:
            chunk.listen_s += seconds
            chunk.fresh = False
        else:
            chunk.reply_s += seconds
        if not self._replying:
            self._open = None
            with self._lock:
                self._timings.append(StepTiming(chunk.frontend_s, chunk.encoder_s,
                                                chunk.listen_s, chunk.reply_s))
                self._chunks += 1

    def _apply_instruction(self, name: str) -> None:
        with self._lock:
            instruction = self._instructions.pop(name)
        session = self._sessions[name]
        if instruction.audio is not None:
            if instruction.source and instruction.source == session.instruction_source:
                return
            rows = self.pipeline.encode_recording(instruction.audio)
            session.instruct_audio(rows, source=instruction.source, emit=self._emit)
        elif instruction.text is not None:
            if instruction.source != session.instruction_source:
                session.instruct_text(instruction.text)
        else:
            session.clear_instruction()

    def _run_command(self, command: Callable[[], None]) -> None:
        try:
            command()
        except InstructionRejected as exc:  # refused before any change: nothing to recover
            self._errors += 1
            self._last_error = f"instruction rejected: {exc}"
            self._emit_safely(EngineError(self._last_error))
        except Exception as exc:  # a half-run command leaves sessions corrupt
            self._fail(f"command failed: {describe(exc)}", 0)

    def _flush_drops(self) -> None:
        with self._lock:
            pending, self._pending_drops = self._pending_drops, Counter()
            self._dropped.update(pending)
            self._clock_samples += sum(pending.values())  # dropped audio still took time
        for reason, samples in pending.items():
            self._emit(AudioDropped(samples, reason))

    def _fail(self, message: str, lost_samples: int) -> None:
        """Recover from a failure of this stream (its chunk, command or share of a forward).

        The open chunk is abandoned and every session of the stream starts afresh (a forward that
        failed half way leaves caches that no longer match their histories); instructions are kept,
        their cache is rebuilt on the next chunk. Other streams are not touched.
        """
        self._open = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # after an OOM, give the allocator its blocks back
        for session in self._sessions.values():
            try:
                session.reset(keep_instruction=True)
            except Exception as exc:  # even a failed reset must not end the thread
                message += f"; session {session.name} could not be reset ({exc!r})"
        message += "; sessions were reset (instructions kept)"
        self._errors += 1
        self._last_error = message
        if lost_samples:
            with self._lock:
                self._dropped["step_failed"] += lost_samples
            self._emit_safely(AudioDropped(lost_samples, "step_failed"))
        self._emit_safely(EngineError(message))

    def _emit_safely(self, event: Event) -> None:
        """Report from the recovery path: a failing transport must not end the thread."""
        try:
            self._emit(event)
        except Exception:  # the error is already counted in stats()
            pass
