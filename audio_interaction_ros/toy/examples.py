"""Streams to training examples: the model's own front end on the audio, the online layout on top.

Most streams go through ``StreamingFrontEnd`` (what the ROS node runs); a quarter through
``reference_features`` per segment (what ``audio-interaction-run --frontend reference`` and the
authors' CLI compute), so the toy behaves in both modes. Mels are kept in float16 to halve the
memory of the pre-computed pool.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..core.features import LogMel, StreamingFrontEnd, reference_features
from ..core.protocol import CHUNK_SAMPLES, MEL_BINS, MEL_FRAMES_PER_CHUNK
from .data import Stream, StreamMaker
from .layout import Sequence, Vocabulary, build_sequence

REFERENCE_SHARE = 0.25
GAP_SHARE = 0.5  # streams placed as if a long history had been heard before them
MAX_POSITION = 4096  # the session never uses positions beyond its 4096-token context


@dataclass
class Example:
    """A stream ready for training: its chunks' mels and its token sequence."""

    mel: torch.Tensor  # (n_chunks, 128, 40) float16
    labels: list[int]
    content: torch.Tensor  # (n_chunks, 2): speech present, beep present (auxiliary targets)
    sequence: Sequence


def chunk_mels(mel: torch.Tensor) -> torch.Tensor:
    """(128, 40 n) -> (n, 128, 40)."""
    n = mel.shape[1] // MEL_FRAMES_PER_CHUNK
    return mel.reshape(MEL_BINS, n, MEL_FRAMES_PER_CHUNK).permute(1, 0, 2)


def streaming_mels(stream: Stream, log_mel: LogMel) -> torch.Tensor:
    """Chunk by chunk through one ``StreamingFrontEnd``, after the stream's pre-roll."""
    front_end = StreamingFrontEnd(log_mel=log_mel)
    if stream.preroll is not None:
        for chunk in stream.preroll.reshape(-1, CHUNK_SAMPLES):
            front_end.push(chunk)
    return torch.stack([front_end.push(chunk)
                        for chunk in stream.samples.reshape(-1, CHUNK_SAMPLES)])


def reference_mels(stream: Stream, log_mel: LogMel) -> torch.Tensor:
    """Each segment normalised by its own maximum, as the reference does per file."""
    return torch.cat([chunk_mels(reference_features(segment, log_mel))
                      for segment in stream.segments])


def make_example(stream: Stream, vocab: Vocabulary, rng: np.random.Generator,
                 log_mel: LogMel) -> Example:
    mel = (reference_mels if rng.random() < REFERENCE_SHARE else streaming_mels)(stream, log_mel)
    room = MAX_POSITION - len(vocab.prefix) - 16 * len(stream.labels)
    gap = int(rng.integers(0, room)) if room > 0 and rng.random() < GAP_SHARE else 0
    return Example(mel.to(torch.float16), stream.labels, torch.from_numpy(stream.content),
                   build_sequence(vocab, stream.labels, gap))


def concatenate(examples: list[Example], vocab: Vocabulary) -> Example:
    """One long example from several streams heard back to back (no gap).

    How the toy learns that minutes of history must not change its answer to the current chunk.
    """
    labels = [label for example in examples for label in example.labels]
    return Example(torch.cat([e.mel for e in examples]), labels,
                   torch.cat([e.content for e in examples]), build_sequence(vocab, labels))


def make_pool(maker: StreamMaker, vocab: Vocabulary, rng: np.random.Generator,
              chunk_counts: list[int]) -> list[Example]:
    """One example per requested stream length."""
    log_mel = LogMel()
    return [make_example(maker(n), vocab, rng, log_mel) for n in chunk_counts]
