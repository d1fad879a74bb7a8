"""The toy model's recipe in one place: sizes, replies, and the version that names its cache.

Bump ``TOY_VERSION`` whenever anything here or in the training data changes: the version is part
of the cache directory name and of the marker file inside it, so a changed recipe rebuilds instead
of silently reusing an old model.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

TOY_VERSION = "1"

# Replies: text and emotion id (protocol EMOTIONS: 151617 surprise, 151618 normal).
BEEP_REPLY = "I hear a beep."
SPEECH_REPLY = "Someone is speaking."
SURPRISE = 151617
NORMAL = 151618


@dataclass(frozen=True)
class LmSize:
    """litgpt/Qwen2 geometry; the vocabulary stays the real padded one so real ids work."""

    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    n_query_groups: int = 2
    head_size: int = 16
    intermediate_size: int = 128
    padded_vocab_size: int = 151936
    vocab_size: int = 151643
    rope_base: int = 1_000_000
    norm_eps: float = 1e-6
    block_size: int = 4096


@dataclass(frozen=True)
class EncoderSize:
    """Qwen2.5-Omni audio tower geometry (real: d_model 1280, 32 layers, 20 heads)."""

    d_model: int = 64
    encoder_layers: int = 2
    encoder_attention_heads: int = 4
    encoder_ffn_dim: int = 128
    output_dim: int = 64  # = LM width: features are written straight into the embeddings
    n_window: int = 100
    max_source_positions: int = 1500
    num_mel_bins: int = 128


def _threads() -> int:
    """Training threads: 1 unless ``AUDIO_INTERACTION_TOY_THREADS`` says otherwise.

    Measured on the 2-core dev machine with one other busy process: a training step takes
    0.095 s with 1 thread and 2.4 s with 2 (OpenMP threads spin-waiting for a core), and CI and
    robots always have something else running. The tiny matrices gain little from a second
    thread even on an idle machine.
    """
    return max(1, int(os.environ.get("AUDIO_INTERACTION_TOY_THREADS", "1")))


@dataclass(frozen=True)
class TrainRecipe:
    """Optimisation settings; chosen so a build takes about a minute on 2 CPU cores."""

    seed: int = 1234
    steps: int = 400
    lr: float = 3e-3
    warmup_steps: int = 20
    tokens_per_batch: int = 3000
    long_from: float = 0.5  # share of the steps before long histories are mixed in
    long_tokens: tuple[int, int] = (1000, 4000)
    n_streams: int = 700
    n_utterances: int = 48
    threads: int = field(default_factory=_threads)


LM = LmSize()
ENCODER = EncoderSize()
RECIPE = TrainRecipe()
