"""The ingest layer under hostile input.

Never raises, every rejection counted with a reason, output always finite float32 in [-1, 1] at
16 kHz.
"""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audio_interaction_ros.core.audio import PcmFormat
from audio_interaction_ros.core.ingest import AudioIngest

FORMATS = st.one_of(st.sampled_from(["S16LE", "S32LE", "F32LE", "U8", "S8"]),
                    st.text(max_size=8))
CODINGS = st.sampled_from(["pcm", "", "raw", "mp3", "opus", "flac", "PCM", "wave"])
RATES = st.one_of(st.integers(-10, 200_000), st.sampled_from([8000, 16000, 22050, 44100, 48000]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rate=RATES, channels=st.integers(-2, 80), fmt=FORMATS, coding=CODINGS,
       channel_index=st.integers(-3, 10),
       payloads=st.lists(st.binary(max_size=4096), min_size=1, max_size=4),
       stamps=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=4, max_size=4))
def test_random_streams_never_raise_and_are_accounted(rate, channels, fmt, coding, channel_index,
                                                      payloads, stamps):
    ingest = AudioIngest(channel_index=channel_index)
    rejected_format = ingest.set_format(PcmFormat(rate, channels, fmt, coding)) is not None
    for payload, stamp in zip(payloads, stamps):
        before = sum(ingest.counts.values())
        out = ingest.convert(np.frombuffer(payload, dtype=np.uint8),
                             stamp if np.isfinite(stamp) else None)
        if out.samples is None:
            # nothing comes out without a counted reason (except a payload of one partial frame)
            assert sum(ingest.counts.values()) > before
            assert out.notes
        else:
            assert out.samples.dtype == np.float32
            assert np.all(np.isfinite(out.samples))
            assert np.all(np.abs(out.samples) <= 1.0 + 1e-6)
        for reason, detail in out.notes:
            assert reason in ingest.counts and detail
    if rejected_format:
        assert ingest.counts["unsupported_format"] >= 1


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), min_size=1,
                       max_size=512))
def test_float_payloads_are_sanitised(values):
    ingest = AudioIngest()
    assert ingest.set_format(PcmFormat(16000, 1, "F32LE")) is None
    data = np.asarray(values, dtype="<f4")
    out = ingest.convert(np.frombuffer(data.tobytes(), dtype=np.uint8))
    bad = int((~np.isfinite(data)).sum())
    assert ingest.counts.get("nonfinite_samples", 0) == (1 if bad else 0)
    if out.samples is not None:
        assert np.all(np.isfinite(out.samples)) and np.all(np.abs(out.samples) <= 1.0)


def test_oversized_message_rejected_with_seconds():
    ingest = AudioIngest()
    ingest.set_format(PcmFormat(8000, 1, "U8"))
    out = ingest.convert(np.zeros(8000 * 61, dtype=np.uint8))
    assert out.samples is None and ingest.counts["oversized_message"] == 1
    assert ingest.seconds["oversized_message"] == 61.0


def test_rate_change_restarts_the_resampler():
    ingest = AudioIngest()
    ingest.set_format(PcmFormat(48000, 1, "S16LE"))
    a = ingest.convert(np.zeros(48000 * 2, dtype=np.uint8))
    ingest.set_format(PcmFormat(8000, 1, "S16LE"))
    b = ingest.convert(np.zeros(8000 * 2 * 2, dtype=np.uint8))
    assert a.samples is not None and b.samples is not None
    assert abs(len(b.samples) - 32000) < 2000  # 2 s at 8 kHz -> about 2 s at 16 kHz


def test_stamp_gap_and_jump_back_are_counted_not_dropped():
    ingest = AudioIngest(gap_tolerance_s=0.05)
    ingest.set_format(PcmFormat(16000, 1, "S16LE"))
    piece = np.zeros(3200, dtype=np.uint8)  # 0.1 s
    assert ingest.convert(piece, 100.0).samples is not None
    assert ingest.convert(piece, 100.1).samples is not None  # continuous
    assert ingest.convert(piece, 101.2).samples is not None  # 1 s gap
    assert ingest.convert(piece, 50.0).samples is not None  # jump back
    assert ingest.counts["stamp_gap"] == 1 and ingest.counts["stamp_jump_back"] == 1
    assert abs(ingest.seconds["stamp_gap"] - 1.0) < 1e-6
