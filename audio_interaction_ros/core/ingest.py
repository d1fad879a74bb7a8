"""From a stream of raw PCM payloads (what an audio topic carries) to float32 mono 16 kHz.

No rclpy here: the ROS node hands in the bytes, the declared format and the header stamp, and gets
back samples plus the reasons anything was fixed or rejected. Every such reason is counted
(``counts``) so that nothing is lost silently; the caller logs each new reason once and reports the
counters in /diagnostics.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from .audio import PcmFormat, StreamResampler, decode_pcm

MAX_MESSAGE_S = 60.0  # larger payloads are accepted in pieces by the engine, but not absurd ones


@dataclass
class Converted:
    """Result of one payload: samples (None if rejected) and what happened to it."""

    samples: NDArray[np.float32] | None
    notes: list[tuple[str, str]] = field(default_factory=list)  # (reason, human detail)


class AudioIngest:
    """Stateful converter for one audio stream (format, resampler state, stamp continuity)."""

    def __init__(self, channel_index: int = -1, gap_tolerance_s: float = 0.1) -> None:
        self.channel_index = channel_index
        self.gap_tolerance_s = gap_tolerance_s
        self.format: PcmFormat | None = None
        self._resampler: StreamResampler | None = None
        self._format_error = ""
        self._next_stamp_s: float | None = None
        self.counts: Counter[str] = Counter()  # reason -> messages (or samples, see below)
        self.seconds: Counter[str] = Counter()  # reason -> seconds of audio affected

    def set_format(self, fmt: PcmFormat) -> str | None:
        """Adopt a newly announced format; return the rejection reason text, or None."""
        try:
            fmt.validate()
        except ValueError as exc:
            self.format, self._resampler = None, None
            self._format_error = str(exc)
            self.counts["unsupported_format"] += 1
            return self._format_error
        if self.format is None or fmt.sample_rate_hz != self.format.sample_rate_hz:
            self._resampler = StreamResampler(fmt.sample_rate_hz)
        self.format = fmt
        self._format_error = ""
        return None

    def convert(self, payload: NDArray[np.uint8], stamp_s: float | None = None) -> Converted:
        """Decode, fix what can be fixed, resample; never raises on bad input."""
        result = Converted(None)
        if self.format is None:
            reason = "unsupported_format" if self._format_error else "no_audio_info"
            detail = (f"audio rejected: {self._format_error}" if self._format_error else
                      "audio rejected: no audio_info received yet (publish "
                      "audio_common_msgs/AudioInfo, transient local)")
            self._note(result, reason, detail)
            return result
        fmt = self.format
        if len(payload) == 0:
            self._note(result, "empty_message", "empty audio message dropped")
            return result
        seconds = len(payload) / fmt.frame_bytes / fmt.sample_rate_hz
        if seconds > MAX_MESSAGE_S:
            self._note(result, "oversized_message",
                       f"audio message of {seconds:.0f} s dropped (more than {MAX_MESSAGE_S} s)")
            self.seconds["oversized_message"] += seconds
            return result
        try:
            decoded = decode_pcm(payload, fmt, self.channel_index)
        except ValueError as exc:
            self._note(result, "bad_channel_index", f"audio rejected: {exc}")
            self.seconds["bad_channel_index"] += seconds
            return result
        if decoded.trailing_bytes_dropped:
            self._note(result, "partial_frame",
                       f"{decoded.trailing_bytes_dropped} trailing byte(s) of an incomplete "
                       f"{fmt.frame_bytes}-byte frame dropped")
        if decoded.nonfinite_replaced:
            self._note(result, "nonfinite_samples",
                       f"{decoded.nonfinite_replaced} NaN/Inf sample(s) replaced by 0")
        if len(decoded.samples) == 0:
            return result
        self._check_stamp(result, stamp_s, len(decoded.samples) / fmt.sample_rate_hz)
        assert self._resampler is not None
        result.samples = self._resampler(decoded.samples)
        return result

    def _check_stamp(self, result: Converted, stamp_s: float | None, duration_s: float) -> None:
        if stamp_s is None or stamp_s <= 0:
            return
        expected = self._next_stamp_s
        self._next_stamp_s = stamp_s + duration_s
        if expected is None:
            return
        if stamp_s < expected - self.gap_tolerance_s:
            self._note(result, "stamp_jump_back",
                       f"header stamp went back by {expected - stamp_s:.3f} s; audio kept")
        elif stamp_s > expected + self.gap_tolerance_s:
            self._note(result, "stamp_gap", f"gap of {stamp_s - expected:.3f} s in header "
                       "stamps (publisher lost audio or paused); audio kept")
            self.seconds["stamp_gap"] += stamp_s - expected

    def _note(self, result: Converted, reason: str, detail: str) -> None:
        self.counts[reason] += 1
        result.notes.append((reason, detail))
