"""The worker that owns the model: one batched step per tick for every stream it serves.

No rclpy here. The engine serves one or more streams (stream.py: a microphone each, with its own
sessions, bounded backlog, commands and figures). Other threads only push audio and call the
control methods; the engine thread runs ticks. One tick:

1. between chunks of a stream (none of its sessions replying): its queued commands, its drop
   reports;
2. every stream that is not replying and has a whole 0.4 s chunk buffered gives ONE chunk (so a
   flooding stream gets no more turns than the others: its excess waits in, and overflows from,
   its own backlog); their log-mels are computed per stream and encoded in one audio-tower call;
3. ONE forward (step.py) for every session of those streams (the decision) and the next reply
   token of every session of any stream that is replying; a stream whose audio stopped simply
   has no chunk due;
4. a stream's chunk is finished when none of its sessions is replying any more; audio that
   arrived meanwhile waits and is consumed in order afterwards (a reply sits between two chunks,
   as in training), while the other streams keep listening.

A failure that belongs to one stream (its front end, its session's row, its transport) resets
that stream's sessions only; a failure of the shared encoder call or forward concerns the streams
that took part in it. No exception ends the thread.

The single-robot use keeps its old shape: ``Engine(model, sessions, config, emit)`` creates one
stream, and the engine's stream methods (push, stats, reset_session, ...) act on it. A fleet
builds ``Engine(model)`` and calls ``add_stream`` per robot.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .events import Event
from .model import AudioInteractionModel
from .pipeline import StepTiming, encode_mels
from .protocol import CHUNK_SAMPLES
from .session import ListenSession
from .step import ListenRequest, forward_step
from .stream import (TIMING_WINDOW, EngineConfig, EngineStats, SampleFifo, Stream, describe,
                     percentile)

__all__ = ["BatchStats", "DEFAULT_STREAM", "Engine", "EngineConfig", "EngineStats",
           "SampleFifo", "StepTiming", "Stream"]

DEFAULT_STREAM = "default"  # the stream of Engine(model, sessions, ...)


@dataclass(frozen=True)
class BatchStats:
    """How the ticks of the last TIMING_WINDOW forwards were filled (all streams)."""

    forwards: int  # since start
    streams: int
    rows_p50: float  # rows per forward: listening sessions + replying sessions
    rows_max: int
    forward_p50_ms: float
    forward_p95_ms: float


class Engine:
    """Owns the model and the streams it serves.

    Run it on its own thread with ``start()``, or call ``process_pending()`` from one thread
    (tests, offline runs).
    """

    def __init__(self, model: AudioInteractionModel, sessions: list[ListenSession] | None = None,
                 config: EngineConfig | None = None,
                 emit: Callable[[Event], None] | None = None) -> None:
        self.model = model
        self._lock = threading.Condition()
        self._streams: dict[str, Stream] = {}
        self._forwards: deque[tuple[int, float]] = deque(maxlen=TIMING_WINDOW)
        self._forward_count = 0
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._default: Stream | None = None
        if sessions is not None:
            self._default = self.add_stream(DEFAULT_STREAM, sessions, config, emit)

    # ------------------------------------------------------------ streams (any thread)
    def add_stream(self, name: str, sessions: list[ListenSession],
                   config: EngineConfig | None = None,
                   emit: Callable[[Event], None] | None = None) -> Stream:
        """Serve one more audio input; it takes part from the next tick.

        It has its own ``sessions`` (each session belongs to one stream), its own limits and its
        own event callback. Names are unique; ValueError otherwise.
        """
        with self._lock:
            if name in self._streams:
                raise ValueError(f"a stream named {name!r} exists already")
            owned = {id(s) for stream in self._streams.values()
                     for s in stream.pipeline.sessions.values()}
            if any(id(s) in owned for s in sessions):
                raise ValueError("a session can belong to one stream only")
            stream = Stream(name, self.model, sessions, config or EngineConfig(), emit,
                            self._lock)
            self._streams = {**self._streams, name: stream}  # the engine thread reads a copy
            self._lock.notify_all()
        return stream

    def remove_stream(self, name: str) -> None:
        """Stop serving stream ``name`` (KeyError if unknown).

        From the next tick on, its audio is no longer taken; a reply in progress is abandoned.
        """
        with self._lock:
            streams = dict(self._streams)
            del streams[name]
            self._streams = streams

    def stream(self, name: str) -> Stream:
        return self._streams[name]

    @property
    def stream_names(self) -> list[str]:
        return list(self._streams)

    def batch_stats(self) -> BatchStats:
        with self._lock:
            forwards = list(self._forwards)
            count, streams = self._forward_count, len(self._streams)
        rows = [r for r, _ in forwards]
        ms = [s * 1e3 for _, s in forwards]
        return BatchStats(count, streams, float(np.median(rows)) if rows else 0.0,
                          max(rows, default=0),
                          percentile(ms, 50), percentile(ms, 95))

    @property
    def busy(self) -> bool:
        """A chunk of some stream is being processed (replies included)."""
        return any(stream.busy for stream in self._streams.values())

    # ------------------------------------------------------------ the default stream
    def _only(self) -> Stream:
        if self._default is None:
            raise RuntimeError("this engine was built without sessions: use its streams")
        return self._default

    def push(self, samples: NDArray[np.float32]) -> None:
        """Queue float32 mono 16 kHz audio of any length; never blocks on the model."""
        self._only().push(samples)

    def drop_backlog(self, reason: str) -> None:
        self._only().drop_backlog(reason)

    def count_dropped(self, samples: int, reason: str) -> None:
        self._only().count_dropped(samples, reason)

    def call_soon(self, command: Callable[[], None]) -> None:
        self._only().call_soon(command)

    def reset_session(self, name: str) -> None:
        self._only().reset_session(name)

    def instruct_audio(self, name: str, samples: NDArray[np.float32], source: str = "") -> None:
        self._only().instruct_audio(name, samples, source)

    def instruct_text(self, name: str, text: str) -> None:
        self._only().instruct_text(name, text)

    def clear_instruction(self, name: str) -> None:
        self._only().clear_instruction(name)

    def session(self, name: str) -> ListenSession:
        return self._only().session(name)

    @property
    def session_names(self) -> list[str]:
        return self._only().session_names

    @property
    def backlog_s(self) -> float:
        return self._only().backlog_s

    def stats(self) -> EngineStats:
        return self._only().stats()

    def recent_timings(self) -> list[StepTiming]:
        return self._only().recent_timings()

    # ------------------------------------------------------------ thread
    def start(self) -> None:
        """Run the worker on its own daemon thread."""
        if self._thread is not None:
            raise RuntimeError("engine already started")
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="audio_interaction_engine",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop once the replies in progress have ended (no new chunk is taken).

        True if the thread ended within ``timeout_s``.
        """
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        thread, self._thread = self._thread, None
        if thread is None:
            return True
        thread.join(timeout_s)
        return not thread.is_alive()

    def process_pending(self, max_chunks: int | None = None) -> int:
        """Run ticks until no stream has a whole chunk buffered and no reply is going on.

        At most ``max_chunks`` chunks are taken (replies they start are finished); return how many
        chunks were taken.
        """
        done = 0
        while True:
            took = self._tick(block=False, take=max_chunks is None or done < max_chunks)
            if took is None:
                break
            done += took
        for stream in list(self._streams.values()):
            stream._between_chunks()  # commands and drop reports queued last
        return done

    def _run(self) -> None:
        while True:
            try:
                if self._tick(block=True, take=True) is None:
                    return
            except Exception as exc:  # last resort: no bug may leave a robot deaf
                for stream in list(self._streams.values()):
                    stream._fail(f"engine step failed unexpectedly: {exc!r}", 0)

    # ------------------------------------------------------------ one tick
    def _tick(self, block: bool, take: bool) -> int | None:
        """One batched step.

        The number of chunks taken, or None when there was nothing to do (not blocking) or the
        engine stops (blocking).
        """
        while True:
            streams = list(self._streams.values())
            for stream in streams:
                stream._between_chunks()
            with self._lock:
                stopping = self._stopping and block  # finish the replies, take no more audio
                taken = [(s, c) for s in streams
                         if take and not stopping and (c := s._take_chunk()) is not None]
                replying = [s for s in streams if s._open is not None]
                if taken or replying:
                    break
                if stopping:
                    return None
                if any(s._has_commands() for s in streams):
                    continue
                if not block:
                    return None
                self._lock.wait(0.5)
        listens = self._open_chunks(taken)
        self._forward(listens, replying)
        return len(taken)

    def _open_chunks(self, taken: list[tuple[Stream, NDArray[np.float32]]]
                     ) -> list[tuple[Stream, ListenRequest]]:
        """Front end per stream, ONE encoder call for all: the listen requests of the tick."""
        mels, opened = [], []
        for stream, chunk in taken:
            try:
                mels.append(stream._open_chunk(chunk))
                opened.append(stream)
            except Exception as exc:  # this stream's bad input or front end
                stream._fail(f"chunk failed: {describe(exc)}", len(chunk))
        if not opened:
            return []
        started = time.perf_counter()
        try:
            rows = encode_mels(self.model, mels)
        except Exception as exc:  # the shared encoder call: every stream in it lost its chunk
            for stream in opened:
                stream._fail(f"chunk failed: {describe(exc)}", CHUNK_SAMPLES)
            return []
        encoder_s = time.perf_counter() - started
        listens = []
        for stream, chunk_rows in zip(opened, rows):
            stream._open.encoder_s = encoder_s
            listens += [(stream, ListenRequest(session, chunk_rows, stream._open.stream_time_s))
                        for session in stream.pipeline.sessions.values()]
        return listens

    def _forward(self, listens: list[tuple[Stream, ListenRequest]], replying: list[Stream]
                 ) -> None:
        """ONE forward for the tick's decisions and every reply in progress.

        Then each stream's bookkeeping, and the failures of the streams whose part failed.
        """
        owner = {id(request.session): stream for stream, request in listens}
        speakers = [s for stream in replying for s in stream._replying]
        owner.update({id(s): stream for stream in replying for s in stream._replying})
        taking_part = list({id(s): s for s in owner.values()}.values())
        if not owner:
            for stream in replying:  # nothing left to say (a session reset meanwhile)
                stream._stepped(0.0)
            return
        try:
            result = forward_step(self.model, [r for _, r in listens], speakers,
                                  lambda session, event: owner[id(session)]._report(event))
        except Exception as exc:  # the shared forward: every stream in it failed
            for stream in taking_part:
                lost = stream._open.fresh if stream._open is not None else False
                stream._fail(f"chunk failed: {describe(exc)}", CHUNK_SAMPLES if lost else 0)
            return
        with self._lock:
            self._forwards.append((result.rows, result.seconds))
            self._forward_count += 1
        failed: dict[int, Exception] = {}
        for session, exc in result.failed:
            failed.setdefault(id(owner[id(session)]), exc)
        for stream in taking_part:
            if id(stream) in failed:
                lost = stream._open is not None and stream._open.fresh
                stream._fail(f"chunk failed: {describe(failed[id(stream)])}",
                             CHUNK_SAMPLES if lost else 0)
            else:
                stream._stepped(result.seconds)
        for stream in replying:
            if stream not in taking_part:
                stream._stepped(0.0)
