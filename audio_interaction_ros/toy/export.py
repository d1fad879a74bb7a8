"""Write trained toy networks in the exact release layout of the real checkpoint (PROTOCOL.md §1).

- ``model_config.yaml``: litgpt ``Config`` kwargs, every field explicit;
- ``model-0000{1,2}-of-00002.safetensors`` + ``model.safetensors.index.json``: litgpt tensor
  names, fused grouped qkv ``[Q | K | V]``, bf16 (as released), untied ``lm_head``; the index's
  ``metadata.total_size`` is the tensor payload in bytes (the loader checks it);
- ``audiointeraction_ChunkwisedEncoder.pth``: plain state dict of ``Qwen2_5OmniAudioEncoder``;
- ``qwen25OmniConfig/config.json``: a ``Qwen2_5OmniConfig`` whose thinker audio_config is the tiny
  encoder's;
- ``tokenizer.json`` + ``tokenizer_config.json``.

The embedding and head keep all 151936 rows so real token ids work; rows of ids the toy never
uses are zero (which is also why the files compress so well).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from ..core import checkpoint as ckpt
from .layout import Vocabulary
from .networks import ToyLM, audio_encoder_config
from .spec import LM, TOY_VERSION
from .tokenizer import write_tokenizer
from .train import Trained

DTYPE = torch.bfloat16
SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")


def litgpt_config() -> dict:
    """model_config.yaml contents: the litgpt Qwen2.5 preset fields at the toy's sizes."""
    name = f"AudioInteraction-toy-v{TOY_VERSION}"
    return {
        "attention_logit_softcapping": None, "attention_scores_scalar": None, "attn_bias": True,
        "bias": False, "block_size": LM.block_size, "final_logit_softcapping": None,
        "gelu_approximate": "none", "head_size": LM.head_size,
        "hf_config": {"name": name, "org": "audio_interaction_ros"},
        "intermediate_size": LM.intermediate_size, "lm_head_bias": False,
        "mlp_class_name": "LLaMAMLP", "n_embd": LM.n_embd, "n_expert": 0,
        "n_expert_per_token": 0, "n_head": LM.n_head, "n_layer": LM.n_layer,
        "n_query_groups": LM.n_query_groups, "name": name, "norm_class_name": "RMSNorm",
        "norm_eps": LM.norm_eps, "norm_qk": False, "padded_vocab_size": LM.padded_vocab_size,
        "padding_multiple": 512, "parallel_residual": False, "post_attention_norm": False,
        "post_mlp_norm": False, "rope_adjustments": None, "rope_base": LM.rope_base,
        "rope_condense_ratio": 1, "rotary_percentage": 1.0, "scale_embeddings": False,
        "shared_attention_norm": False, "sliding_window_layer_placing": None,
        "sliding_window_size": None, "vocab_size": LM.vocab_size,
    }


def _full_rows(compact: torch.Tensor, ids: tuple[int, ...]) -> torch.Tensor:
    full = torch.zeros(LM.padded_vocab_size, compact.shape[1], dtype=compact.dtype)
    full[torch.tensor(ids)] = compact
    return full


def litgpt_state(lm: ToyLM, vocab: Vocabulary) -> dict[str, torch.Tensor]:
    """Return the LM as litgpt tensors, full vocabulary.

    The inverse of ``core.checkpoint.litgpt_to_hf``.
    """
    hf = {k: v.detach().float() for k, v in lm.body.state_dict().items()}
    state = {"transformer.wte.weight": _full_rows(hf["embed_tokens.weight"], vocab.inputs),
             "transformer.ln_f.weight": hf["norm.weight"],
             "lm_head.weight": _full_rows(lm.head.weight.detach().float(), vocab.outputs)}
    for i in range(LM.n_layer):
        src, dst = f"layers.{i}.", f"transformer.h.{i}."
        for kind in ("weight", "bias"):
            state[f"{dst}attn.qkv.{kind}"] = torch.cat(
                [hf[f"{src}self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v")])
        state[f"{dst}norm_1.weight"] = hf[f"{src}input_layernorm.weight"]
        state[f"{dst}norm_2.weight"] = hf[f"{src}post_attention_layernorm.weight"]
        state[f"{dst}attn.proj.weight"] = hf[f"{src}self_attn.o_proj.weight"]
        state[f"{dst}mlp.fc_1.weight"] = hf[f"{src}mlp.gate_proj.weight"]
        state[f"{dst}mlp.fc_2.weight"] = hf[f"{src}mlp.up_proj.weight"]
        state[f"{dst}mlp.proj.weight"] = hf[f"{src}mlp.down_proj.weight"]
    return {k: v.to(DTYPE).contiguous() for k, v in state.items()}


def write_lm(directory: Path, state: dict[str, torch.Tensor]) -> None:
    """Two shards (everything but the head, then the head) and their index."""
    from safetensors.torch import save_file

    shards = ({k: v for k, v in state.items() if k != "lm_head.weight"},
              {"lm_head.weight": state["lm_head.weight"]})
    weight_map = {}
    for name, tensors in zip(SHARDS, shards):
        save_file(tensors, str(directory / name), metadata={"format": "pt"})
        weight_map.update({key: name for key in tensors})
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (directory / ckpt.INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    (directory / ckpt.LM_CONFIG_FILE).write_text(yaml.safe_dump(litgpt_config(), sort_keys=True))


def write_encoder(directory: Path, encoder: torch.nn.Module) -> None:
    """Write the audio tower's state dict (persistent tensors only, as released) and config."""
    from transformers import Qwen2_5OmniConfig
    from transformers.utils import logging as hf_logging

    state = {k: v.detach().to(DTYPE).contiguous() for k, v in encoder.state_dict().items()}
    torch.save(state, directory / ckpt.ENCODER_FILE)
    audio = audio_encoder_config().to_dict()
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the default talker config warns about its own token ids
    try:
        config = Qwen2_5OmniConfig(thinker_config={"audio_config": audio},
                                   enable_audio_output=False)
        config.save_pretrained(directory / ckpt.OMNI_CONFIG_DIR)
    finally:
        hf_logging.set_verbosity(level)


def export(trained: Trained, directory: Path) -> None:
    """Write every file of the release layout into ``directory`` (which must exist)."""
    write_lm(directory, litgpt_state(trained.lm, trained.vocab))
    write_encoder(directory, trained.encoder)
    write_tokenizer(directory, trained.tokenizer.document)
