"""A random-weight model at the published dimensions, to time the real model without its weights.

Cost depends on shapes, not on values, so a Qwen2.5-Omni-3B-sized thinker (36 layers, width 2048,
16 heads / 2 KV heads, MLP 11008, vocab 151936, untied lm_head; PROTOCOL.md §1.2) and audio tower
(32 layers, d_model 1280, 20 heads, FFN 5120, output 2048) filled with small random numbers time
like the release. The modules are allocated without transformers' initialisation (seconds instead
of minutes for 4 B parameters), then filled in place: norms 1, biases 0, everything else
N(0, 0.02), which keeps activations finite in bfloat16. Non-persistent buffers (RoPE frequencies,
the encoder's sinusoid table) are computed by the constructors, in the same dtypes as
``AudioInteractionModel.load`` leaves them.

The tokenizer is the fixture's (same special ids; only the system prompt's BPE length differs).
"""
from __future__ import annotations

import torch

from common import FIXTURE_CKPT
from audio_interaction_ros.core.checkpoint import qwen2_config
from audio_interaction_ros.core.model import (AudioInteractionModel, ModelInfo, resolve_device,
                                              resolve_dtype)

# litgpt "Qwen2.5-3B" preset keys (PROTOCOL.md §1.2), mapped by the core's own qwen2_config.
REAL_LITGPT = {
    "n_layer": 36, "n_embd": 2048, "n_head": 16, "n_query_groups": 2, "head_size": 128,
    "intermediate_size": 11008, "padded_vocab_size": 151936, "rope_base": 1_000_000,
    "norm_eps": 1e-6, "block_size": 4096, "rotary_percentage": 1.0,
}
# Qwen2.5-Omni-3B thinker_config.audio_config.
REAL_AUDIO = {
    "num_mel_bins": 128, "encoder_layers": 32, "encoder_attention_heads": 20,
    "encoder_ffn_dim": 5120, "d_model": 1280, "output_dim": 2048, "n_window": 100,
    "max_source_positions": 1500,
}
INIT_STD = 0.02


def parameter_bytes(dtype: torch.dtype) -> int:
    """Weights' size at the real dimensions (LM 3.40 B + encoder 0.64 B parameters)."""
    return int((3.397e9 + 0.638e9) * torch.tensor([], dtype=dtype).element_size())


@torch.no_grad()
def _fill(module: torch.nn.Module, generator: torch.Generator) -> None:
    for name, param in module.named_parameters():
        if name.endswith("norm.weight") or name == "ln_post.weight":
            param.fill_(1.0)
        elif name.endswith("bias"):
            param.zero_()
        else:
            param.normal_(0.0, INIT_STD, generator=generator)


def build_random_real_model(device: str = "cpu", dtype: str = "bfloat16",
                            seed: int = 0) -> AudioInteractionModel:
    """The 3B-dimension model with random weights on ``device``, ready for the core's API."""
    from transformers import AutoTokenizer, Qwen2ForCausalLM
    from transformers.initialization import no_init_weights
    from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import (
        Qwen2_5OmniAudioEncoderConfig)
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import Qwen2_5OmniAudioEncoder

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    # Allocate directly on the target device (on a GPU the fill runs there, in seconds).
    with torch.device(torch_device), no_init_weights():
        lm = Qwen2ForCausalLM._from_config(qwen2_config(REAL_LITGPT), dtype=torch_dtype)
        encoder = Qwen2_5OmniAudioEncoder._from_config(
            Qwen2_5OmniAudioEncoderConfig(**REAL_AUDIO), dtype=torch_dtype)
    generator = torch.Generator(device=torch_device).manual_seed(seed)
    _fill(lm, generator)
    _fill(encoder, generator)
    tokenizer = AutoTokenizer.from_pretrained(str(FIXTURE_CKPT))
    info = ModelInfo(source="random weights at Qwen2.5-Omni-3B dimensions",
                     root="", device=str(torch_device),
                     dtype=str(torch_dtype).removeprefix("torch."),
                     n_layers=REAL_LITGPT["n_layer"], width=REAL_LITGPT["n_embd"],
                     max_context_tokens=REAL_LITGPT["block_size"])
    return AudioInteractionModel(lm, encoder, tokenizer, info)
