"""The model's audio front end: 128-bin Whisper log-mel, 40 frames per 0.4 s chunk. No rclpy here.

Two modes (PROTOCOL.md §2.2):
- ``reference``: one mel over a whole input, floored at (input max - 8) as the authors' CLI and
  transformers' ``WhisperFeatureExtractor`` do. Needs the whole input first: used for parity and
  offline evaluation of recordings.
- ``streaming``: causal, one chunk at a time. Each chunk's STFT sees the real previous samples
  on its left (the right edge is reflect-padded: the future is not known yet) and the floor
  follows a running maximum over a bounded window of recent chunks, so a loud bang an hour ago
  no longer decides how today's silence looks.

The filterbank and window are the ones of transformers' ``WhisperFeatureExtractor``; we compute the
STFT ourselves only because the extractor applies its floor per call, and streaming needs the
unfloored log-mel to apply a running floor.
"""
from __future__ import annotations

from collections import deque

import numpy as np
import torch
from numpy.typing import NDArray
from transformers import WhisperFeatureExtractor

from .protocol import (CHUNK_SAMPLES, MEL_BINS, MEL_FFT_SAMPLES, MEL_FRAMES_PER_CHUNK,
                       MEL_HOP_SAMPLES, SAMPLE_RATE_HZ)

FLOOR_RANGE_LOG10 = 8.0  # 80 dB below the maximum
LEFT_CONTEXT_SAMPLES = 2 * MEL_HOP_SAMPLES  # >= n_fft/2: frames 0 and 1 see real samples
DEFAULT_FLOOR_WINDOW_S = 30.0


def whisper_extractor() -> WhisperFeatureExtractor:
    """Return the transformers feature extractor configured as the model's front end (128 bins)."""
    return WhisperFeatureExtractor(feature_size=MEL_BINS, sampling_rate=SAMPLE_RATE_HZ,
                                   hop_length=MEL_HOP_SAMPLES, n_fft=MEL_FFT_SAMPLES)


class LogMel:
    """Unfloored log10 mel power spectrogram, computed as Whisper does (torch STFT, Slaney mel)."""

    def __init__(self) -> None:
        extractor = whisper_extractor()
        self._filters = torch.from_numpy(extractor.mel_filters.T.astype(np.float32))  # (128, 201)
        self._window = torch.hann_window(MEL_FFT_SAMPLES)

    def log10_mel(self, samples: NDArray[np.float32]) -> torch.Tensor:
        """Return the (MEL_BINS, len(samples) // hop) log10 mel.

        The STFT's last frame is dropped, as in Whisper.
        """
        wave = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
        stft = torch.stft(wave, MEL_FFT_SAMPLES, MEL_HOP_SAMPLES, window=self._window,
                          center=True, pad_mode="reflect", return_complex=True)
        power = (stft[:, :-1].abs() ** 2).contiguous()
        return torch.clamp(self._filters @ power, min=1e-10).log10()


def normalise(log_mel: torch.Tensor, max_log10: float) -> torch.Tensor:
    """Whisper's floor and scaling: max(x, max - 8), then (x + 4) / 4."""
    return (torch.clamp(log_mel, min=max_log10 - FLOOR_RANGE_LOG10) + 4.0) / 4.0


def reference_features(samples: NDArray[np.float32],
                       log_mel: LogMel | None = None) -> torch.Tensor:
    """Mel of a whole input, floored at its own maximum: (128, 40 * n_chunks) for padded input."""
    log_mel = log_mel or LogMel()
    mel = log_mel.log10_mel(samples)
    return normalise(mel, float(mel.max()))


class StreamingFrontEnd:
    """Causal mel, one chunk at a time: exactly ``MEL_FRAMES_PER_CHUNK`` frames per chunk.

    State: the last ``LEFT_CONTEXT_SAMPLES`` samples and the per-chunk maxima of the floor window.
    Both are bounded, so memory is flat however long the stream runs.
    """

    def __init__(self, floor_window_s: float = DEFAULT_FLOOR_WINDOW_S,
                 log_mel: LogMel | None = None) -> None:
        if floor_window_s <= 0:
            raise ValueError(f"floor_window_s must be > 0, got {floor_window_s}")
        self._log_mel = log_mel or LogMel()
        self._window_chunks = max(1, round(floor_window_s * SAMPLE_RATE_HZ / CHUNK_SAMPLES))
        self.reset()

    def reset(self) -> None:
        """Forget all past audio: the next chunk is treated as the start of a stream."""
        self._context = np.zeros(0, dtype=np.float32)
        self._chunk_maxima: deque[float] = deque(maxlen=self._window_chunks)

    def push(self, chunk: NDArray[np.float32]) -> torch.Tensor:
        """Features of one chunk of ``CHUNK_SAMPLES`` samples: (MEL_BINS, MEL_FRAMES_PER_CHUNK)."""
        if chunk.shape != (CHUNK_SAMPLES,):
            raise ValueError(f"a chunk must hold {CHUNK_SAMPLES} samples, got shape {chunk.shape}")
        drop = len(self._context) // MEL_HOP_SAMPLES
        mel = self._log_mel.log10_mel(np.concatenate([self._context, chunk]))[:, drop:]
        assert mel.shape[1] == MEL_FRAMES_PER_CHUNK
        self._context = chunk[-LEFT_CONTEXT_SAMPLES:].copy()
        self._chunk_maxima.append(float(mel.max()))
        return normalise(mel, max(self._chunk_maxima))
