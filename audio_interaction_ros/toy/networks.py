"""The toy's two networks, built from transformers' own classes so the weights load unchanged.

- LM: ``Qwen2Model`` over a compact vocabulary (only the ids the toy uses) plus a compact output
  head; ``export`` scatters both into full 151936-row matrices. Training a 151936-row embedding
  and head would cost most of the build for rows that stay zero anyway.
- Encoder: a stock ``Qwen2_5OmniAudioEncoder``. Its forward splits attention per 0.4 s window in a
  Python loop (thousands of windows per training batch), so training uses ``encode_chunks``, the
  same computation batched over chunks; ``encode_chunks`` is checked against the stock forward at
  every build.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..core.protocol import AUDIO_TOKENS_PER_CHUNK, MEL_BINS, MEL_FRAMES_PER_CHUNK
from .spec import ENCODER, LM


def audio_encoder_config():
    """Return the tiny ``Qwen2_5OmniAudioEncoderConfig`` (output_dim = LM width)."""
    from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import (
        Qwen2_5OmniAudioEncoderConfig)

    return Qwen2_5OmniAudioEncoderConfig(
        num_mel_bins=ENCODER.num_mel_bins, encoder_layers=ENCODER.encoder_layers,
        encoder_attention_heads=ENCODER.encoder_attention_heads,
        encoder_ffn_dim=ENCODER.encoder_ffn_dim, d_model=ENCODER.d_model,
        output_dim=ENCODER.output_dim, n_window=ENCODER.n_window,
        max_source_positions=ENCODER.max_source_positions, dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0)


def build_encoder() -> nn.Module:
    """Build a freshly initialised tiny audio tower (transformers' init)."""
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import Qwen2_5OmniAudioEncoder

    config = audio_encoder_config()
    config._attn_implementation = "sdpa"
    return Qwen2_5OmniAudioEncoder(config)


def lm_config(vocab_size: int):
    """``Qwen2Config`` of the toy LM with a compact vocabulary (the export restores 151936)."""
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=vocab_size, hidden_size=LM.n_embd, intermediate_size=LM.intermediate_size,
        num_hidden_layers=LM.n_layer, num_attention_heads=LM.n_head,
        num_key_value_heads=LM.n_query_groups, hidden_act="silu",
        max_position_embeddings=LM.block_size, rms_norm_eps=LM.norm_eps,
        rope_theta=float(LM.rope_base), tie_word_embeddings=False, use_sliding_window=False,
        attention_dropout=0.0)


class ToyLM(nn.Module):
    """Qwen2 decoder over compact input ids, scoring only the ids the toy can answer with."""

    def __init__(self, n_inputs: int, n_outputs: int) -> None:
        super().__init__()
        from transformers import Qwen2Model

        config = lm_config(n_inputs)
        config._attn_implementation = "sdpa"
        self.body = Qwen2Model(config)
        self.head = nn.Linear(LM.n_embd, n_outputs, bias=False)
        nn.init.normal_(self.head.weight, std=config.initializer_range)

    def hidden(self, embeds: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Last hidden states (B, T, width).

        The all-ones mask keeps transformers from reading the gap in ``positions`` as the start of
        a new packed sequence.
        """
        mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        return self.body(inputs_embeds=embeds, position_ids=positions, attention_mask=mask,
                         use_cache=False).last_hidden_state


def encode_chunks(encoder: nn.Module, mel: torch.Tensor) -> torch.Tensor:
    """Stock ``Qwen2_5OmniAudioEncoder`` math for independent 40-frame chunks, batched.

    mel (N, 128, 40) -> (N, 10, output_dim). Equals ``encoder(mel2d, feature_lens=[40]*N)``.
    """
    if mel.shape[1:] != (MEL_BINS, MEL_FRAMES_PER_CHUNK):
        raise ValueError(f"mel must be (N, {MEL_BINS}, {MEL_FRAMES_PER_CHUNK}), got {mel.shape}")
    x = F.gelu(encoder.conv1(mel))
    x = F.gelu(encoder.conv2(x)).transpose(1, 2)  # (N, 20, d)
    x = x + encoder.positional_embedding.positional_embedding[:x.shape[1]].to(x.dtype)
    n, t, d = x.shape
    for layer in encoder.layers:
        attn = layer.self_attn
        h = layer.self_attn_layer_norm(x)
        q, k, v = (proj(h).view(n, t, attn.num_heads, -1).transpose(1, 2)
                   for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
        out = F.scaled_dot_product_attention(q, k, v, scale=attn.scaling)
        x = x + attn.out_proj(out.transpose(1, 2).reshape(n, t, d))
        x = x + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(x))))
    x = (x[:, 0::2] + x[:, 1::2]) / 2
    out = encoder.proj(encoder.ln_post(x))
    assert out.shape[1] == AUDIO_TOKENS_PER_CHUNK
    return out


@torch.no_grad()
def stock_encode(encoder: nn.Module, mel: torch.Tensor) -> torch.Tensor:
    """Run the stock forward on the same chunks, as ``AudioInteractionModel.encode`` calls it."""
    n = mel.shape[0]
    flat = mel.permute(1, 0, 2).reshape(MEL_BINS, n * MEL_FRAMES_PER_CHUNK)
    lens = torch.full((n,), MEL_FRAMES_PER_CHUNK, dtype=torch.long)
    out = encoder(flat, feature_lens=lens, aftercnn_lens=torch.tensor([flat.shape[1] // 2]))
    return out.last_hidden_state.reshape(n, AUDIO_TOKENS_PER_CHUNK, -1)
