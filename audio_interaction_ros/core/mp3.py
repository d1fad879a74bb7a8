"""MP3 arriving in pieces (ros-drivers' audio_capture publishes mp3 by default), decoded with
FFmpeg through PyAV. No rclpy here.

Why PyAV and not soundfile: libsndfile 1.1+ decodes MPEG files (soundfile's wheel bundles 1.2.2),
but only whole files: opened on a growing buffer it stops for good at the first end of data it
meets, so a stream cut into messages cannot be decoded with it. FFmpeg's parser takes bytes cut
anywhere, keeps the bit reservoir and the overlap between frames, and hands out each frame once it
is complete. PyAV is an optional dependency (requirements.txt installs it); without it, mp3 is
refused with the fix (publish wave).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

MP3_CODINGS = ("mp3",)
WAVE_FIX = ("publish raw PCM instead: ros-drivers audio_capture with format:=wave "
            "(ros2 launch audio_capture capture.launch.py format:=wave)")


def mp3_unavailable_reason() -> str | None:
    """None if MP3 can be decoded here, else why not and what to do."""
    try:
        import av  # noqa: F401
    except ImportError as exc:
        return (f"coding_format 'mp3' cannot be decoded here: PyAV is not installed ({exc}; "
                f"pip install av); or {WAVE_FIX}")
    return None


@dataclass
class Decoded:
    """Audio of the frames completed by one piece, in order: (samples (frames, channels), rate)."""

    segments: list[tuple[NDArray[np.float32], int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # damaged data skipped by the decoder


class Mp3Stream:
    """Decoder state for one MP3 byte stream; pieces may be cut anywhere, even inside a frame."""

    def __init__(self) -> None:
        import av

        self._av = av
        self._codec = av.CodecContext.create("mp3float", "r")

    def decode(self, piece: bytes) -> Decoded:
        """Feed the next bytes; get the audio of every frame they complete. Never raises on bad
        data: what the decoder skips is reported in ``errors``."""
        out = Decoded()
        try:
            packets = self._codec.parse(bytes(piece))
        except self._av.error.FFmpegError as exc:
            out.errors.append(f"mp3 parser: {exc}")
            return out
        for packet in packets:
            try:
                frames = self._codec.decode(packet)
            except self._av.error.FFmpegError as exc:
                out.errors.append(f"mp3 decoder: {exc}")
                continue
            for frame in frames:
                out.segments.append((_float_frames(frame), int(frame.sample_rate)))
        return out


def _float_frames(frame) -> NDArray[np.float32]:
    """A PyAV AudioFrame as float32 (frames, channels) in [-1, 1]."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    data = data if frame.format.is_planar else data.reshape(-1, channels).T
    if np.issubdtype(data.dtype, np.integer):
        data = data.astype(np.float32) / np.float32(-np.iinfo(data.dtype).min)
    samples = np.ascontiguousarray(data.T, dtype=np.float32)
    return np.clip(np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0), -1.0, 1.0)
