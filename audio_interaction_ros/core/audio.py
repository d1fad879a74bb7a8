"""Raw audio to the model's input: float32 mono at 16 kHz. No rclpy here.

Decoding of interleaved PCM bytes (the ROS AudioData payload), channel selection or downmix,
sanitising of non-finite samples, resampling with soxr, and reading audio files for the runner.
Every function raises ``ValueError`` with what was wrong and what is accepted; callers count it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr
from numpy.typing import NDArray

from .protocol import SAMPLE_RATE_HZ

MIN_RATE_HZ = 8_000
MAX_RATE_HZ = 48_000
MAX_CHANNELS = 64

# sample_format -> (numpy dtype of one sample, offset, scale): float = (x - offset) / scale
PCM_FORMATS: dict[str, tuple[str, float, float]] = {
    "S16LE": ("<i2", 0.0, 32768.0),
    "S32LE": ("<i4", 0.0, 2147483648.0),
    "F32LE": ("<f4", 0.0, 1.0),
    "U8": ("u1", 128.0, 128.0),
    "S8": ("i1", 0.0, 128.0),
}
SUPPORTED_CODINGS = ("", "pcm", "raw", "wave", "wav")

# PortAudio sample format codes (what mgonzs13/audio_common's AudioInfo.format holds) -> the array
# of its AudioData that carries the samples, PortAudio's name, and the PCM format of those samples.
PORTAUDIO_FORMATS: dict[int, tuple[str, str, str]] = {
    1: ("float32_data", "paFloat32", "F32LE"),
    2: ("int32_data", "paInt32", "S32LE"),
    8: ("int16_data", "paInt16", "S16LE"),
    16: ("int8_data", "paInt8", "S8"),
    32: ("uint8_data", "paUInt8", "U8"),
}


@dataclass(frozen=True)
class PcmFormat:
    """How the bytes of one audio stream are laid out (what AudioInfo describes)."""

    sample_rate_hz: int
    channels: int
    sample_format: str = "S16LE"
    coding_format: str = "pcm"

    def validate(self) -> None:
        """Raise ValueError naming the bad field, its value and what is accepted."""
        coding = self.coding_format.strip().lower()
        if coding not in SUPPORTED_CODINGS:
            raise ValueError(
                f"coding_format {self.coding_format!r} is not supported; publish raw PCM "
                f"({', '.join(PCM_FORMATS)})")
        if self.sample_format.upper() not in PCM_FORMATS:
            raise ValueError(
                f"sample_format {self.sample_format!r} is not supported; use one of "
                f"{', '.join(PCM_FORMATS)}")
        if not MIN_RATE_HZ <= self.sample_rate_hz <= MAX_RATE_HZ:
            raise ValueError(
                f"sample_rate {self.sample_rate_hz} Hz is outside {MIN_RATE_HZ}-{MAX_RATE_HZ} Hz")
        if not 1 <= self.channels <= MAX_CHANNELS:
            raise ValueError(f"channels {self.channels} is outside 1-{MAX_CHANNELS}")

    @property
    def frame_bytes(self) -> int:
        """Bytes per frame (one sample of every channel)."""
        return np.dtype(PCM_FORMATS[self.sample_format.upper()][0]).itemsize * self.channels


@dataclass(frozen=True)
class Decoded:
    """Samples decoded from one payload, with what had to be fixed on the way."""

    samples: NDArray[np.float32]  # mono, at the source rate
    trailing_bytes_dropped: int = 0  # an incomplete last frame
    nonfinite_replaced: int = 0  # NaN/Inf float samples set to 0


def decode_pcm(payload: bytes | bytearray | memoryview | NDArray[np.uint8], fmt: PcmFormat,
               channel_index: int = -1) -> Decoded:
    """Decode interleaved PCM bytes to float32 mono in [-1, 1] at the source rate.

    :param payload: raw bytes; an incomplete last frame is dropped and reported.
    :param channel_index: which channel to keep; -1 averages all channels (downmix).
    """
    fmt.validate()
    if not -1 <= channel_index < fmt.channels:
        raise ValueError(
            f"channel_index {channel_index} does not exist in a {fmt.channels}-channel stream "
            f"(use -1 to downmix or 0..{fmt.channels - 1})")
    raw = np.frombuffer(payload, dtype=np.uint8) if not isinstance(payload, np.ndarray) else payload
    usable = len(raw) - len(raw) % fmt.frame_bytes
    dtype, offset, scale = PCM_FORMATS[fmt.sample_format.upper()]
    frames = raw[:usable].view(dtype).reshape(-1, fmt.channels)
    if channel_index >= 0:
        picked = frames[:, channel_index]
    elif fmt.channels == 1:
        picked = frames[:, 0]
    else:
        picked = frames.mean(axis=1, dtype=np.float64 if dtype == "<i4" else np.float32)
    samples = np.asarray(picked, dtype=np.float32)
    if offset or scale != 1.0:
        samples = (samples - np.float32(offset)) / np.float32(scale)
    nonfinite = 0
    if dtype == "<f4":
        bad = ~np.isfinite(samples)
        nonfinite = int(bad.sum())
        if nonfinite:
            samples = np.where(bad, np.float32(0.0), samples)
        samples = np.clip(samples, -1.0, 1.0)  # a new array: the payload may be read-only
    return Decoded(np.ascontiguousarray(samples, dtype=np.float32), len(raw) - usable, nonfinite)


def portaudio_payload(arrays: Mapping[str, Sequence], format_code: int, channels: int,
                      rate_hz: int) -> tuple[NDArray[np.uint8], PcmFormat]:
    """The samples of an mgonzs13 ``AudioData`` (five typed arrays, one filled) as PCM bytes, and
    their format from the message's own ``AudioInfo``.

    :param arrays: array name (``float32_data`` ... ``uint8_data``) -> its interleaved samples.
    :raises ValueError: an unknown format code, or samples in another array than the format
        names (contradictory info is rejected, not guessed).
    """
    if format_code not in PORTAUDIO_FORMATS:
        known = ", ".join(f"{name}={code}" for code, (_, name, _) in PORTAUDIO_FORMATS.items())
        raise ValueError(f"AudioInfo.format {format_code} is not a PortAudio sample format this "
                         f"node reads ({known})")
    name, pa_name, sample_format = PORTAUDIO_FORMATS[format_code]
    filled = [key for key, _, _ in PORTAUDIO_FORMATS.values() if len(arrays.get(key, ()))]
    if filled and filled != [name]:
        raise ValueError(f"AudioInfo.format is {format_code} ({pa_name}, samples in {name}) but "
                         f"the samples are in {', '.join(filled)}")
    dtype = np.dtype(PCM_FORMATS[sample_format][0])
    values = arrays.get(name, ())
    if hasattr(values, "typecode") and np.dtype(values.typecode).itemsize == dtype.itemsize:
        samples = np.frombuffer(values, dtype=values.typecode)  # array.array, as rclpy delivers
    elif isinstance(values, (bytes, bytearray, memoryview)) and dtype.itemsize == 1:
        samples = np.frombuffer(values, dtype=dtype)
    else:
        samples = np.asarray(values)
    payload = np.ascontiguousarray(samples.astype(dtype, copy=False)).view(np.uint8)
    return payload, PcmFormat(int(rate_hz), int(channels), sample_format, "pcm")


def to_mono(samples: NDArray, channel_index: int = -1) -> NDArray[np.float32]:
    """Reduce (frames, channels) float audio to mono; 1-D input is returned as float32."""
    if samples.ndim == 1:
        return samples.astype(np.float32, copy=False)
    if channel_index >= samples.shape[1]:
        raise ValueError(f"channel_index {channel_index} does not exist in "
                         f"{samples.shape[1]}-channel audio")
    if channel_index >= 0:
        return np.ascontiguousarray(samples[:, channel_index], dtype=np.float32)
    return samples.mean(axis=1).astype(np.float32)


def resample(samples: NDArray[np.float32], rate_hz: int,
             target_hz: int = SAMPLE_RATE_HZ) -> NDArray[np.float32]:
    """Resample a whole signal with soxr (high quality, anti-aliased)."""
    if rate_hz == target_hz:
        return samples
    return soxr.resample(samples, rate_hz, target_hz, quality="HQ").astype(np.float32, copy=False)


class StreamResampler:
    """Resampling of a stream delivered in pieces, with filter state kept across pieces.

    Resampling each message alone would click at every boundary; soxr's stream object keeps
    the filter history, so the output equals resampling the concatenated stream.
    """

    def __init__(self, rate_hz: int, target_hz: int = SAMPLE_RATE_HZ) -> None:
        self.rate_hz = rate_hz
        self.target_hz = target_hz
        self._stream = (soxr.ResampleStream(rate_hz, target_hz, 1, dtype="float32", quality="HQ")
                        if rate_hz != target_hz else None)

    def __call__(self, samples: NDArray[np.float32], last: bool = False) -> NDArray[np.float32]:
        """Resample the next piece; ``last`` flushes the filter's delay line."""
        if self._stream is None:
            return samples
        return self._stream.resample_chunk(samples, last=last)


def read_audio_file(path: str | Path, channel_index: int = -1) -> NDArray[np.float32]:
    """Read a WAV/FLAC/OGG/MP3 file (whatever libsndfile decodes) as float32 mono 16 kHz.

    PCM16 files give exactly ``int16 / 32768``, which is what the reference read.
    """
    import soundfile  # only the runner and the player read files

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"audio file {str(path)!r} does not exist")
    try:
        data, rate_hz = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile reports unreadable data in several exception types
        raise ValueError(f"audio file {str(path)!r} could not be decoded: {exc}") from exc
    if data.shape[0] == 0:
        raise ValueError(f"audio file {str(path)!r} holds no samples")
    mono = to_mono(data, channel_index)
    mono = np.nan_to_num(mono, nan=0.0, posinf=0.0, neginf=0.0)
    return resample(mono, int(rate_hz))


def pad_to_chunks(samples: NDArray[np.float32], chunk_samples: int) -> NDArray[np.float32]:
    """Zero-pad at the end to a whole number of chunks (what the reference does per file)."""
    remainder = len(samples) % chunk_samples
    if remainder == 0 and len(samples):
        return samples
    return np.concatenate([samples, np.zeros(chunk_samples - remainder, dtype=np.float32)])
