"""Sentences in, paced speech audio out: the robot's mouth, without ROS. No rclpy here.

A synthesis thread turns queued sentences into audio with a ``voice.tts.Voice``; a publishing
thread hands out small pieces at most a little ahead of real time and tracks when everything
queued will have played out, which is what ``is_speaking`` (self-hearing) needs.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .tts import Voice

LATENCY_WINDOW = 200  # utterances kept for the text-to-first-audio percentiles
SYNTHESIS_AHEAD = 2  # sentences synthesized ahead of the one being published


def to_s16(samples: NDArray[np.float32]) -> NDArray[np.int16]:
    """float32 in [-1, 1] to S16LE samples (clipped)."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")


@dataclass(frozen=True)
class _Text:
    text: str  # "" marks the end of an utterance whose last sentence was queued before
    received_s: float  # time.monotonic() when the text arrived
    first: bool  # the utterance's first sentence: its first audio is timed
    last: bool  # the utterance's last sentence


@dataclass(frozen=True)
class _Audio:
    pcm: NDArray[np.int16]
    text: _Text
    synthesis_s: float


@dataclass(frozen=True)
class SpeakerStats:
    """Counters of a Speaker since it was built."""

    utterances: int
    sentences: int
    audio_s: float
    synthesis_s: float
    queue_depth: int
    dropped: int
    errors: int
    last_error: str
    first_audio_latency_s: tuple[float, ...]  # text arrival -> first audio, recent utterances


class Speaker:
    """Sentences in, paced audio out, on two threads; knows nothing of ROS.

    The synthesis thread takes sentences from a bounded queue (drop-oldest, counted) and keeps
    at most ``SYNTHESIS_AHEAD`` synthesized sentences waiting. The publishing thread hands out
    ``chunk_s`` pieces no earlier than ``ahead_s`` before they are due to play, so a consumer's
    buffer stays small, and tracks when the audio will have played out: ``speaking(True)`` before
    the first piece, ``speaking(False)`` once everything queued has played.
    """

    def __init__(self, voice: Voice, chunk_s: float, ahead_s: float, max_queue: int,
                 emit: Callable[[NDArray[np.int16], float], None],
                 speaking: Callable[[bool], None],
                 on_error: Callable[[str], None]) -> None:
        """:param emit: called with each S16 piece and the monotonic time it is due to play.

        :param speaking: called on the publishing thread when speaking starts and ends.
        """
        self._voice = voice
        self._rate_hz = voice.sample_rate_hz
        self._chunk_samples = max(1, round(chunk_s * self._rate_hz))
        self._ahead_s = ahead_s
        self._max_queue = max_queue
        self._emit, self._speaking_cb, self._on_error = emit, speaking, on_error
        self._cond = threading.Condition()
        self._texts: deque[_Text] = deque()
        self._audio: deque[_Audio] = deque()
        self._open: set[str] = set()  # utterances whose first sentence was queued
        self._synthesizing = False
        self._speaking = False
        self._playout_end_s = 0.0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._latency_s: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._counts = dict(utterances=0, sentences=0, dropped=0, errors=0)
        self._audio_s = self._synthesis_s = 0.0
        self._last_error = ""

    def say(self, key: str, texts: list[str], received_s: float, end: bool) -> None:
        """Queue sentences of utterance ``key``; ``end``: it is complete. Never blocks."""
        with self._cond:
            items = []
            for i, text in enumerate(texts):
                items.append(_Text(text, received_s, key not in self._open,
                                   end and i == len(texts) - 1))
                self._open.add(key)
            if end and not texts and key in self._open:
                items.append(_Text("", received_s, False, True))
            if end:
                self._open.discard(key)
            for item in items:
                if len(self._texts) >= self._max_queue:
                    self._texts.popleft()
                    self._counts["dropped"] += 1
                self._texts.append(item)
            self._cond.notify_all()

    def start(self) -> None:
        """Start both threads (again after ``stop``)."""
        self._stop.clear()
        self._threads = [threading.Thread(target=self._synthesis_loop, name="speech-synthesis",
                                          daemon=True),
                         threading.Thread(target=self._publish_loop, name="speech-publisher",
                                          daemon=True)]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop both threads and discard what is queued; False if one did not end in time."""
        with self._cond:
            self._stop.set()
            self._texts.clear()
            self._open.clear()
            self._cond.notify_all()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stopped = not any(t.is_alive() for t in self._threads)
        with self._cond:
            self._audio.clear()
            self._speaking = False
            self._playout_end_s = 0.0
        return stopped

    def stats(self) -> SpeakerStats:
        with self._cond:
            return SpeakerStats(audio_s=self._audio_s, synthesis_s=self._synthesis_s,
                                queue_depth=len(self._texts) + len(self._audio),
                                last_error=self._last_error,
                                first_audio_latency_s=tuple(self._latency_s), **self._counts)

    def _synthesis_loop(self) -> None:
        while True:
            with self._cond:
                while not self._stop.is_set() and (not self._texts or
                                                   len(self._audio) >= SYNTHESIS_AHEAD):
                    self._cond.wait()
                if self._stop.is_set():
                    return
                item = self._texts.popleft()
                self._synthesizing = True
            pcm, started = np.zeros(0, np.int16), time.monotonic()
            if item.text:
                try:
                    pcm = to_s16(self._voice.synthesize(item.text)[0])
                except Exception as exc:  # one bad sentence must not silence the robot
                    self._report_error(f"synthesis failed: {exc}")
            with self._cond:
                self._audio.append(_Audio(pcm, item, time.monotonic() - started))
                self._synthesizing = False
                self._cond.notify_all()

    def _report_error(self, message: str) -> None:
        with self._cond:
            self._counts["errors"] += 1
            self._last_error = message
        self._on_error(message)

    def _publish_loop(self) -> None:
        while True:
            with self._cond:
                audio = None
                while not self._stop.is_set():
                    if self._audio:
                        audio = self._audio.popleft()
                        self._cond.notify_all()
                        break
                    idle = not self._texts and not self._synthesizing
                    if not (self._speaking and idle):
                        self._cond.wait()
                        continue
                    remaining_s = self._playout_end_s - time.monotonic()
                    if remaining_s <= 0:
                        break
                    self._cond.wait(remaining_s)
                if self._stop.is_set():
                    return
            if audio is None:
                self._set_speaking(False)
            else:
                self._play(audio)

    def _set_speaking(self, speaking: bool) -> None:
        self._speaking = speaking
        try:
            self._speaking_cb(speaking)
        except Exception as exc:  # a transport failure must not end the thread
            self._report_error(f"publishing is_speaking failed: {exc}")

    def _play(self, audio: _Audio) -> None:
        pcm, item, n = audio.pcm, audio.text, self._chunk_samples
        start_s = max(time.monotonic(), self._playout_end_s)
        for offset in range(0, len(pcm), n):
            due_s = start_s + offset / self._rate_hz
            wait_s = due_s - self._ahead_s - time.monotonic()
            if wait_s > 0 and self._stop.wait(wait_s):
                return
            if self._stop.is_set():
                return
            if offset == 0:
                if not self._speaking:
                    self._set_speaking(True)
                if item.first:
                    with self._cond:
                        self._latency_s.append(time.monotonic() - item.received_s)
            piece = pcm[offset:offset + n]
            try:
                self._emit(piece, due_s)
            except Exception as exc:  # a transport failure must not end the thread
                self._report_error(f"publishing speech audio failed: {exc}")
            self._playout_end_s = due_s + len(piece) / self._rate_hz
        with self._cond:
            if len(pcm):
                self._counts["sentences"] += 1
                self._audio_s += len(pcm) / self._rate_hz
                self._synthesis_s += audio.synthesis_s
            if item.last:
                self._counts["utterances"] += 1
