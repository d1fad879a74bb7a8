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

import zlib

import torch

from common import FIXTURE_CKPT
from audio_interaction_ros.core.checkpoint import qwen2_config
from audio_interaction_ros.core.compilation import compile_model
from audio_interaction_ros.core.loading import build_empty, quantize_modules
from audio_interaction_ros.core.model import (AudioInteractionModel, ModelInfo, dtype_reason,
                                              resolve_device, resolve_dtype)
from audio_interaction_ros.core.quantization import (QuantizationReport, check_supported,
                                                     tensor_bytes)

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


def parameter_bytes(dtype: torch.dtype, quantization: str = "none") -> int:
    """Return the weights' size at the real dimensions, for a memory check before building.

    LM 3.40 B + encoder 0.64 B parameters, of which the 0.31 B of the embedding stay in ``dtype``
    and the 0.31 B of the head are int8 when quantized.
    """
    size = torch.tensor([], dtype=dtype).element_size()
    embed, head, rest = 0.311e9, 0.311e9, 3.397e9 + 0.638e9 - 0.622e9
    per_weight = {"none": size, "int8": 1, "int4": 0.53}[quantization]
    head_bytes = size if quantization == "none" else 1
    return int(embed * size + head * head_bytes + rest * per_weight)


@torch.no_grad()
def _fill(module: torch.nn.Module, generator: torch.Generator, seed: int,
          prefix: str = "") -> None:
    """Fill norms with 1, biases with 0, other parameters with N(0, 0.02).

    The stream is seeded by the parameter's own name, so a dense and a quantized build (which fill
    in different orders) hold the same weights. Quantized layers have no parameters left.
    """
    for name, param in module.named_parameters(prefix=prefix):
        if name.endswith("norm.weight") or name.endswith("ln_post.weight"):
            param.fill_(1.0)
        elif name.endswith("bias"):
            param.zero_()
        else:
            generator.manual_seed(seed + zlib.crc32(name.encode()))
            param.normal_(0.0, INIT_STD, generator=generator)


def build_random_real_model(device: str = "cpu", dtype: str = "bfloat16", seed: int = 0,
                            quantization: str = "none", compile: str = "false",
                            n_layers: int | None = None) -> AudioInteractionModel:
    """Build the 3B-dimension model with random weights on ``device``, ready for the core's API.

    With ``quantization`` int8/int4 each linear layer is filled and quantized before the next
    one is filled (core/loading.py ``quantize_modules``), so memory stays near the quantized
    size, as when loading a checkpoint; ``compile`` as ``AudioInteractionModel.load`` does it.
    ``n_layers`` shortens both stacks (quick experiments).
    """
    from transformers import AutoTokenizer, Qwen2ForCausalLM
    from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import (
        Qwen2_5OmniAudioEncoderConfig)
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import Qwen2_5OmniAudioEncoder

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    check_supported(quantization, torch_device, torch_dtype)
    litgpt = dict(REAL_LITGPT, n_layer=n_layers or REAL_LITGPT["n_layer"])
    audio = dict(REAL_AUDIO, encoder_layers=n_layers or REAL_AUDIO["encoder_layers"])
    # Dense: allocated directly on the target device (on a GPU the fill runs there, in seconds).
    # Quantized: allocated on the CPU untouched, each layer filled just before it is quantized.
    build_on = torch_device if quantization == "none" else torch.device("cpu")
    lm = build_empty(Qwen2ForCausalLM, qwen2_config(litgpt), torch_dtype, build_on)
    encoder = build_empty(Qwen2_5OmniAudioEncoder, Qwen2_5OmniAudioEncoderConfig(**audio),
                          torch_dtype, build_on)
    generator = torch.Generator(device=build_on)
    report = QuantizationReport(quantization)
    for module in (lm, encoder):
        if quantization != "none":
            quantize_modules(module, quantization, torch_device, report,
                             fill=lambda name, linear: _fill(linear, generator, seed, name))
        _fill(module, generator, seed)  # what is left dense (all of it without quantization)
        module.to(torch_device)
    tokenizer = AutoTokenizer.from_pretrained(str(FIXTURE_CKPT))
    weight_bytes = tensor_bytes(lm, encoder)
    compiled, compile_reason = compile_model(lm, encoder, compile, torch_device, torch_dtype,
                                             quantization, weight_bytes)
    info = ModelInfo(source="random weights at Qwen2.5-Omni-3B dimensions",
                     root="", device=str(torch_device),
                     dtype=str(torch_dtype).removeprefix("torch."),
                     n_layers=litgpt["n_layer"], width=litgpt["n_embd"],
                     max_context_tokens=litgpt["block_size"],
                     dtype_reason=dtype_reason(dtype, torch_device, torch_dtype),
                     quantization=quantization, quantized_layers=report.summary(),
                     weight_bytes=weight_bytes, compiled=compiled,
                     compile_reason=compile_reason)
    return AudioInteractionModel(lm, encoder, tokenizer, info)
