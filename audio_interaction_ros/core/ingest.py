"""From a stream of audio payloads (what an audio topic carries) to float32 mono 16 kHz.

No rclpy here: the ROS node hands in the bytes, the format (announced on an info topic, or carried
by each message), the header stamp or the arrival time, and gets back samples plus the reasons
anything was fixed or rejected. Every such reason is counted (``counts``) so that nothing is lost
silently; the caller logs each new reason once and reports the counters in /diagnostics.
Payloads are raw PCM, or MP3 where a decoder is installed (core/mp3.py).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from .audio import PcmFormat, StreamResampler, decode_pcm, to_mono
from .mp3 import MP3_CODINGS, Mp3Stream, mp3_unavailable_reason

MAX_MESSAGE_S = 60.0  # larger payloads are accepted in pieces by the engine, but not absurd ones


@dataclass
class Converted:
    """Result of one payload: samples (None if rejected) and what happened to it."""

    samples: NDArray[np.float32] | None
    notes: list[tuple[str, str]] = field(default_factory=list)  # (reason, human detail)
    stamp_s: float | None = None  # the payload's start on the stream's clock (header or arrival)
    format_changed: PcmFormat | None = None  # a format carried by the message was adopted


class AudioIngest:
    """Stateful converter for one audio stream (format, resampler state, stamp continuity)."""

    def __init__(self, channel_index: int = -1, gap_tolerance_s: float = 0.1) -> None:
        self.channel_index = channel_index
        self.gap_tolerance_s = gap_tolerance_s
        self.format: PcmFormat | None = None
        self._resampler: StreamResampler | None = None
        self._mp3: Mp3Stream | None = None
        self._format_error = ""
        self._rejected: PcmFormat | None = None  # a carried format already refused (count once)
        self._next_stamp_s: float | None = None
        self.counts: Counter[str] = Counter()  # reason -> messages (or samples, see below)
        self.seconds: Counter[str] = Counter()  # reason -> seconds of audio affected

    def set_format(self, fmt: PcmFormat) -> str | None:
        """Adopt a newly announced format; return the rejection reason text, or None.

        A new rate starts a new resampler; MP3 (sample layout in the stream itself) keeps one
        decoder while the stream stays MP3."""
        mp3 = fmt.coding_format.strip().lower() in MP3_CODINGS
        try:
            reason = mp3_unavailable_reason() if mp3 else None
            if reason:
                raise ValueError(reason)
            if not mp3:
                fmt.validate()
        except ValueError as exc:
            self.format, self._resampler, self._mp3 = None, None, None
            self._format_error = str(exc)
            self.counts["unsupported_format"] += 1
            return self._format_error
        if mp3 and self._mp3 is None:
            self._mp3, self._resampler = Mp3Stream(), None
        elif not mp3:
            self._mp3 = None
            if self.format is None or self._resampler is None or \
                    fmt.sample_rate_hz != self._resampler.rate_hz:
                self._resampler = StreamResampler(fmt.sample_rate_hz)
        self.format = fmt
        self._format_error = ""
        return None

    def convert(self, payload: NDArray[np.uint8], stamp_s: float | None = None,
                fmt: PcmFormat | None = None, arrival_s: float | None = None) -> Converted:
        """Decode, fix what can be fixed, resample; never raises on bad input.

        :param stamp_s: the header stamp (None or 0: the message has none).
        :param fmt: the format the message itself carries (mgonzs13's AudioInfo in each
            message); a change is adopted like a new audio_info and reported in the result.
        :param arrival_s: when the message arrived; stamps unstamped audio (see _stream_stamp).
        """
        result = Converted(None)
        if fmt is not None and fmt != self.format and fmt != self._rejected:
            if self.set_format(fmt) is None:
                result.format_changed = fmt
            self._rejected = None if self.format else fmt
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
        if self._mp3 is not None:
            return self._convert_mp3(result, payload, self._stream_stamp(stamp_s, arrival_s))
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
        result.stamp_s = self._stream_stamp(stamp_s, arrival_s)
        self._check_stamp(result, result.stamp_s, len(decoded.samples) / fmt.sample_rate_hz)
        assert self._resampler is not None
        result.samples = self._resampler(decoded.samples)
        return result

    def refuse(self, reason: str, detail: str) -> Converted:
        """Count a message refused before decoding (its own format info contradicts it)."""
        result = Converted(None)
        self._note(result, reason, detail)
        return result

    def _convert_mp3(self, result: Converted, payload: NDArray[np.uint8],
                     stamp_s: float | None) -> Converted:
        """Feed MP3 bytes; the frames they complete come out (none yet is not a loss: the
        decoder holds the bytes of a frame until its end arrives)."""
        assert self._mp3 is not None
        decoded = self._mp3.decode(payload.tobytes())
        for error in decoded.errors:
            self._note(result, "undecodable_mp3", f"damaged mp3 data skipped ({error})")
        pieces = []
        for frames, rate_hz in decoded.segments:
            if self._resampler is None or self._resampler.rate_hz != rate_hz:
                self._resampler = StreamResampler(rate_hz)
            try:
                mono = to_mono(frames, self.channel_index)
            except ValueError as exc:
                self._note(result, "bad_channel_index", f"audio rejected: {exc}")
                self.seconds["bad_channel_index"] += len(frames) / rate_hz
                continue
            if not pieces:
                result.stamp_s = stamp_s
                self._check_stamp(result, stamp_s, len(frames) / rate_hz)
            elif self._next_stamp_s is not None:
                self._next_stamp_s += len(frames) / rate_hz
            pieces.append(self._resampler(mono))
        result.samples = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        return result

    def _stream_stamp(self, stamp_s: float | None, arrival_s: float | None) -> float | None:
        """The payload's start: its header stamp, or for unstamped audio the sample count.

        Unstamped audio (ros-drivers' AudioData) is stamped on arrival; after that, its clock is
        the number of samples received, so delivery jitter and bursts are not gaps. Only when
        audio arrives later than the samples account for by more than ``gap_tolerance_s`` (the
        publisher paused or lost audio) is the clock moved to the arrival time, which
        _check_stamp counts as a gap.
        """
        if stamp_s is not None and stamp_s > 0:
            return stamp_s
        if arrival_s is None:
            return None
        expected = self._next_stamp_s
        if expected is None or arrival_s > expected + self.gap_tolerance_s:
            return arrival_s
        return expected

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
            self._note(result, "stamp_gap", f"gap of {stamp_s - expected:.3f} s in the stream's "
                       "stamps (publisher lost audio or paused); audio kept")
            self.seconds["stamp_gap"] += stamp_s - expected

    def _note(self, result: Converted, reason: str, detail: str) -> None:
        self.counts[reason] += 1
        result.notes.append((reason, detail))
