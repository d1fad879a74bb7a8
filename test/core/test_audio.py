"""PCM decoding, channel handling and resampling (core/audio.py)."""
from __future__ import annotations

import numpy as np
import pytest

from audio_interaction_ros.core.audio import (PcmFormat, StreamResampler, decode_pcm, pad_to_chunks,
                                              read_audio_file, resample)

RNG = np.random.default_rng(0)


def _interleaved(channels: int, frames: int = 100) -> np.ndarray:
    return RNG.uniform(-0.9, 0.9, size=(frames, channels)).astype(np.float32)


@pytest.mark.parametrize("fmt, encode, tol", [
    pytest.param("S16LE", lambda x: (x * 32768).astype("<i2"), 1 / 32768, id="s16"),
    pytest.param("S32LE", lambda x: (x * 2147483648).astype("<i4"), 1e-7, id="s32"),
    pytest.param("F32LE", lambda x: x.astype("<f4"), 0, id="f32"),
    pytest.param("U8", lambda x: (x * 128 + 128).astype("u1"), 1 / 128, id="u8"),
    pytest.param("S8", lambda x: (x * 128).astype("i1"), 1 / 128, id="s8"),
])
def test_every_sample_format_decodes_to_float(fmt, encode, tol):
    signal = _interleaved(1)[:, 0]
    decoded = decode_pcm(encode(signal).tobytes(), PcmFormat(16000, 1, fmt))
    assert decoded.samples.dtype == np.float32
    np.testing.assert_allclose(decoded.samples, signal, atol=tol + 1e-7)


def test_downmix_and_channel_select():
    frames = _interleaved(2)
    payload = (frames * 32768).astype("<i2").tobytes()
    fmt = PcmFormat(48000, 2, "S16LE")
    mixed = decode_pcm(payload, fmt, channel_index=-1).samples
    right = decode_pcm(payload, fmt, channel_index=1).samples
    np.testing.assert_allclose(mixed, frames.mean(axis=1), atol=2 / 32768)
    np.testing.assert_allclose(right, frames[:, 1], atol=1 / 32768)
    with pytest.raises(ValueError, match="channel_index 2"):
        decode_pcm(payload, fmt, channel_index=2)


def test_incomplete_last_frame_is_dropped_and_reported():
    payload = np.zeros(11, dtype=np.uint8).tobytes()  # 2 stereo S16 frames + 3 bytes
    decoded = decode_pcm(payload, PcmFormat(16000, 2, "S16LE"))
    assert len(decoded.samples) == 2
    assert decoded.trailing_bytes_dropped == 3


def test_nonfinite_floats_are_zeroed_and_counted():
    signal = np.array([0.5, np.nan, np.inf, -np.inf, -0.25], dtype="<f4")
    decoded = decode_pcm(signal.tobytes(), PcmFormat(16000, 1, "F32LE"))
    assert decoded.nonfinite_replaced == 3
    np.testing.assert_array_equal(decoded.samples, [0.5, 0, 0, 0, -0.25])


@pytest.mark.parametrize("fmt, message", [
    pytest.param(PcmFormat(16000, 1, "S16LE", "mp3"), "coding_format 'mp3'", id="mp3"),
    pytest.param(PcmFormat(16000, 1, "S24LE"), "sample_format 'S24LE'", id="s24"),
    pytest.param(PcmFormat(4000, 1), "4000 Hz", id="rate-low"),
    pytest.param(PcmFormat(96000, 1), "96000 Hz", id="rate-high"),
    pytest.param(PcmFormat(16000, 0), "channels 0", id="no-channels"),
])
def test_unsupported_formats_are_rejected_with_reason(fmt, message):
    with pytest.raises(ValueError, match=message):
        decode_pcm(b"\x00\x00", fmt)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resample_keeps_duration_and_tone(rate):
    t = np.arange(rate) / rate
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    out = resample(tone, rate)
    assert abs(len(out) - 16000) <= 1
    spectrum = np.abs(np.fft.rfft(out[1000:15000]))
    assert abs(np.argmax(spectrum) * 16000 / 14000 - 1000) < 5


def test_stream_resampler_equals_one_shot():
    rate = 44100
    signal = RNG.uniform(-0.5, 0.5, size=rate).astype(np.float32)
    stream = StreamResampler(rate)
    pieces = np.array_split(signal, [1000, 1001, 7000, 20000])
    out = np.concatenate([stream(p, last=(i == len(pieces) - 1)) for i, p in enumerate(pieces)])
    whole = StreamResampler(rate)(signal, last=True)
    np.testing.assert_allclose(out, whole, atol=1e-6)


def test_read_audio_file_converts_rate_and_channels(stereo_48k_wav, stereo_48k_mp3):
    bark = read_audio_file(stereo_48k_wav)  # 48 kHz stereo
    import soundfile
    info = soundfile.info(str(stereo_48k_wav))
    assert info.samplerate == 48000 and info.channels == 2
    assert abs(len(bark) - info.frames / 3) <= 2
    mp3 = read_audio_file(stereo_48k_mp3)
    assert len(mp3) > 16000 and np.abs(mp3).max() > 0.01


def test_read_audio_file_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_audio_file(tmp_path / "absent.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(ValueError, match="could not be decoded"):
        read_audio_file(junk)


def test_pad_to_chunks():
    assert len(pad_to_chunks(np.ones(6401, np.float32), 6400)) == 12800
    assert len(pad_to_chunks(np.ones(6400, np.float32), 6400)) == 6400
