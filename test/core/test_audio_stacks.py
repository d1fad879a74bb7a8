"""What other audio stacks send, in core terms (no rclpy).

mgonzs13's five typed arrays with a PortAudio format in every message, unstamped audio, and MP3 cut
into messages.
"""
from __future__ import annotations

import array
import io
import os
import sys

import numpy as np
import pytest
import soundfile

from audio_interaction_ros.core import mp3
from audio_interaction_ros.core.audio import PORTAUDIO_FORMATS, PcmFormat, portaudio_payload
from audio_interaction_ros.core.ingest import AudioIngest

RNG = np.random.default_rng(3)
SIGNAL = RNG.uniform(-0.9, 0.9, size=64).astype(np.float32)


@pytest.mark.parametrize("code, typecode, encode, tol", [
    pytest.param(1, "f", lambda x: x, 0.0, id="paFloat32"),
    pytest.param(2, "i", lambda x: (x * 2**31).astype(np.int32), 1e-7, id="paInt32"),
    pytest.param(8, "h", lambda x: (x * 2**15).astype(np.int16), 2**-15, id="paInt16"),
    pytest.param(16, "b", lambda x: (x * 2**7).astype(np.int8), 2**-7, id="paInt8"),
    pytest.param(32, "B", lambda x: (x * 2**7 + 128).astype(np.uint8), 2**-7, id="paUInt8"),
])
def test_each_portaudio_format_reads_its_own_array(code, typecode, encode, tol):
    name = PORTAUDIO_FORMATS[code][0]
    arrays = {key: array.array(tc) for key, tc in
              [("float32_data", "f"), ("int32_data", "i"), ("int16_data", "h"),
               ("int8_data", "b"), ("uint8_data", "B")]}
    arrays[name] = array.array(typecode, encode(SIGNAL).tolist())  # as rclpy delivers them
    payload, fmt = portaudio_payload(arrays, code, 1, 16000)
    ingest = AudioIngest()
    out = ingest.convert(payload, fmt=fmt)
    assert out.format_changed == fmt and fmt.sample_rate_hz == 16000
    np.testing.assert_allclose(out.samples, SIGNAL, atol=tol + 1e-7)


@pytest.mark.parametrize("arrays, code, match", [
    pytest.param({"float32_data": [0.1]}, 8, "samples are in float32_data", id="other-array"),
    pytest.param({"int16_data": [1], "int8_data": [1]}, 8, "int16_data, int8_data",
                 id="two-arrays"),
    pytest.param({"int16_data": [1]}, 4, "not a PortAudio sample format", id="paInt24"),
])
def test_contradictory_or_unknown_formats_are_refused_with_the_reason(arrays, code, match):
    with pytest.raises(ValueError, match=match):
        portaudio_payload(arrays, code, 1, 16000)


def test_a_format_carried_per_message_changes_like_a_new_audio_info():
    ingest = AudioIngest()
    pieces = []
    for rate, count in ((16000, 10), (48000, 10), (16000, 10)):  # 0.1 s messages
        samples = (np.sin(np.arange(rate // 10) / 7) * 8000).astype(np.int16)
        for i in range(count):
            payload, fmt = portaudio_payload({"int16_data": samples}, 8, 1, rate)
            out = ingest.convert(payload, fmt=fmt)
            assert (out.format_changed is not None) == (i == 0)
            pieces.append(out.samples)
    total = sum(len(p) for p in pieces)
    assert abs(total - 3 * 16000) < 1600  # 3 s in, about 3 s out at 16 kHz (filter delays)
    assert not ingest.counts


def test_a_bad_carried_format_is_counted_per_message_and_refused_once():
    ingest = AudioIngest()
    bad = PcmFormat(1000, 1, "S16LE")  # 1 kHz: outside 8-48 kHz
    for _ in range(5):
        assert ingest.convert(np.zeros(200, np.uint8), fmt=bad).samples is None
    assert ingest.counts["unsupported_format"] == 1 + 5  # the refusal, then each message
    out = ingest.convert(np.zeros(3200, np.uint8), fmt=PcmFormat(16000, 1, "S16LE"))
    assert out.samples is not None and out.format_changed is not None


def test_unstamped_audio_runs_on_its_sample_count_and_counts_real_pauses():
    ingest = AudioIngest(gap_tolerance_s=0.1)
    ingest.set_format(PcmFormat(16000, 1, "S16LE"))
    piece = np.zeros(320, np.uint8)  # 10 ms, ros-drivers' alsasrc buffer
    jitter = RNG.uniform(0.0, 0.08, size=200)  # delivery delays under the tolerance
    stamps = [ingest.convert(piece, arrival_s=1000.0 + i * 0.01 + jitter[i]).stamp_s
              for i in range(200)]
    np.testing.assert_allclose(np.diff(stamps), 0.01, atol=1e-9)  # the samples are the clock
    burst = [ingest.convert(piece, arrival_s=1002.0).stamp_s for _ in range(20)]  # catching up
    assert not ingest.counts and burst[-1] == pytest.approx(stamps[0] + 2.19, abs=1e-6)
    after_pause = ingest.convert(piece, arrival_s=1010.0).stamp_s  # the driver stopped ~7.8 s
    assert after_pause == 1010.0 and ingest.counts["stamp_gap"] == 1
    assert ingest.seconds["stamp_gap"] == pytest.approx(1010.0 - (stamps[0] + 2.2), abs=1e-6)


def test_a_header_stamp_wins_over_the_arrival_time():
    ingest = AudioIngest()
    ingest.set_format(PcmFormat(16000, 1, "S16LE"))
    assert ingest.convert(np.zeros(320, np.uint8), 55.5, arrival_s=9.0).stamp_s == 55.5


# ---------------------------------------------------------------------------------- MP3

def mp3_bytes(signal: np.ndarray, rate: int) -> bytes:
    """MP3 as an encoder produces it (libsndfile's LAME), to be cut into messages."""
    out = io.BytesIO()
    soundfile.write(out, signal, rate, format="MP3", subtype="MPEG_LAYER_III")
    return out.getvalue()


def require_pyav():
    """PyAV is a requirement (requirements.txt); only a hand-made environment lacks it."""
    if mp3.mp3_unavailable_reason() and not os.environ.get("CI"):
        pytest.skip("PyAV is not installed (pip install -r requirements.txt)")


def tone(rate: int, seconds: float = 2.0) -> np.ndarray:
    """A sweep from 300 Hz to 3 kHz (no period, so one alignment fits)."""
    t = np.arange(int(rate * seconds)) / rate
    return (0.4 * np.sin(2 * np.pi * (300 * t + 675 * t ** 2))).astype(np.float32)


def decode_mp3(data: bytes, piece_bytes: int) -> tuple[np.ndarray, AudioIngest]:
    ingest = AudioIngest()
    assert ingest.set_format(PcmFormat(16000, 1, "S16LE", "mp3")) is None
    out = [ingest.convert(np.frombuffer(data[i:i + piece_bytes], np.uint8)).samples
           for i in range(0, len(data), piece_bytes)]
    return np.concatenate(out), ingest


@pytest.mark.parametrize("piece_bytes", [1, 97, 417])
def test_mp3_cut_anywhere_decodes_like_one_piece_and_like_the_signal(piece_bytes):
    require_pyav()
    signal = tone(16000)
    data = mp3_bytes(signal, 16000)
    whole, _ = decode_mp3(data, len(data))
    streamed, ingest = decode_mp3(data, piece_bytes)
    assert not ingest.counts
    np.testing.assert_array_equal(streamed, whole)
    # the same sweep, delayed by the codec (about 1100 samples): compare 1 s after aligning
    delay = int(np.argmax(np.correlate(streamed[4000:12000], signal[4000:8000], "valid")))
    error = streamed[8000 + delay:24000 + delay] - signal[8000:24000]
    assert 500 < delay < 3000
    assert np.sqrt(np.mean(error ** 2)) < 0.1 * np.sqrt(np.mean(signal ** 2))


def test_mp3_at_another_rate_is_resampled_and_garbage_is_counted_not_raised():
    require_pyav()
    ingest = AudioIngest()
    ingest.set_format(PcmFormat(44100, 2, "S16LE", "mp3"))
    data = mp3_bytes(np.repeat(tone(44100)[:, None], 2, axis=1), 44100)
    samples = np.concatenate([ingest.convert(np.frombuffer(data[i:i + 500], np.uint8)).samples
                              for i in range(0, len(data), 500)])
    assert abs(len(samples) - 32000) < 2500  # 2 s of 44.1 kHz stereo -> ~2 s mono at 16 kHz
    before = len(samples)
    garbage = ingest.convert(np.frombuffer(RNG.bytes(5000), np.uint8))
    assert garbage.samples is not None and before  # never raises; damaged data is reported
    assert all(reason == "undecodable_mp3" for reason, _ in garbage.notes)


def test_without_a_decoder_mp3_is_refused_once_with_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    ingest = AudioIngest()
    reason = ingest.set_format(PcmFormat(16000, 1, "S16LE", "mp3"))
    assert reason and "format:=wave" in reason and "pip install av" in reason
    out = ingest.convert(np.zeros(417, np.uint8))
    assert out.samples is None and "format:=wave" in out.notes[0][1]
    assert ingest.counts["unsupported_format"] == 2


def stamped_pieces(packets: list[tuple[bytes, float]], frames_per_message: int,
                   piece_bytes: int | None) -> list[tuple[bytes, float]]:
    """Messages of whole MP3 frames, or of ``piece_bytes`` cut anywhere, stamped with the time
    of the audio their first byte belongs to (as a capture driver stamps them)."""
    if piece_bytes is None:
        return [(b"".join(data for data, _ in packets[i:i + frames_per_message]), packets[i][1])
                for i in range(0, len(packets), frames_per_message)]
    data = b"".join(data for data, _ in packets)
    starts = np.cumsum([0] + [len(d) for d, _ in packets[:-1]])
    times = [t for _, t in packets]
    return [(data[i:i + piece_bytes], float(np.interp(i, starts, times)))
            for i in range(0, len(data), piece_bytes)]


@pytest.mark.parametrize("rate, frames_per_message, piece_bytes", [
    pytest.param(16000, 1, None, id="16k-a-frame-per-message"),
    pytest.param(44100, 3, None, id="44k-3-frames-per-message"),
    pytest.param(16000, 1, 432, id="16k-cut-every-432-bytes"),
    pytest.param(48000, 1, 97, id="48k-cut-every-97-bytes"),
])
def test_stamped_mp3_is_continuous_and_a_real_pause_is_one_gap(rate, frames_per_message,
                                                               piece_bytes):
    """Stamped MP3 reports nothing while it flows, and exactly the pause a publisher made.

    A decoder hands a frame out only once it is whole (and, for pieces cut anywhere, the next
    one has begun) and the codec adds its delay, so the audio decoded before a message is never
    exactly at its stamp; none of that is a gap.
    """
    require_pyav()
    from ..conftest import mp3_packets

    pcm = (tone(rate, 3.0) * 32767).astype(np.int16)
    first = stamped_pieces(mp3_packets(pcm, rate), frames_per_message, piece_bytes)
    second = stamped_pieces(mp3_packets(pcm, rate), frames_per_message, piece_bytes)
    ingest = AudioIngest()
    ingest.set_format(PcmFormat(rate, 1, "S16LE", "mp3"))
    samples = [ingest.convert(np.frombuffer(data, np.uint8), stamp_s=1000.0 + t).samples
               for data, t in first]
    assert not ingest.counts, dict(ingest.counts)  # continuous: nothing to report
    resumed = 1000.0 + 3.0 + 1.0  # the publisher paused for 1 s, then sent a new stream
    samples += [ingest.convert(np.frombuffer(data, np.uint8), stamp_s=resumed + t).samples
                for data, t in second]
    assert dict(ingest.counts) == {"stamp_gap": 1}, dict(ingest.counts)
    assert ingest.seconds["stamp_gap"] == pytest.approx(1.0, abs=0.2)
    assert abs(sum(map(len, samples)) / 16000 - 6.0) < 0.3  # all of it, resampled to 16 kHz
