"""The network: transformers' Qwen2 decoder and Qwen2.5-Omni audio tower, loaded from the release
layout, with the two calls the listen/speak loop needs (encode a chunk, run a forward with audio
embeddings written into the PAD slots). No rclpy here; no per-stream state either: sessions own
their caches, so one model serves several sessions.
"""
from __future__ import annotations

import contextlib
import inspect
import os
from dataclasses import dataclass

import torch

from . import checkpoint as ckpt
from .protocol import AUDIO_TOKENS_PER_CHUNK, MEL_BINS, MEL_FRAMES_PER_CHUNK

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is an error, not a fallback."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device {device!r} is not valid: use auto, cpu, cuda or cuda:N") from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available "
                             "(no GPU, or torch built without CUDA); use device:=cpu or auto")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} requested but only {torch.cuda.device_count()} "
                             "CUDA device(s) exist")
    elif resolved.type != "cpu":
        raise ValueError(f"device {device!r} is not supported: use auto, cpu, cuda or cuda:N")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto``: bfloat16 on a GPU that has it (as the authors ran), float16 on older GPUs,
    float32 on CPU (half precision matmuls are slow there)."""
    if dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


@contextlib.contextmanager
def _quiet_transformers():
    """Silence transformers' loading chatter (progress bars, Omni config token warnings)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


def _strict_from_pretrained(cls, config, state: dict[str, torch.Tensor], dtype: torch.dtype,
                            what: str):
    """``cls.from_pretrained`` from an in-memory state dict, failing on any missing, unexpected
    or mis-shaped tensor (transformers would otherwise initialise them randomly and warn)."""
    try:
        model, info = cls.from_pretrained(None, config=config, state_dict=state, dtype=dtype,
                                          output_loading_info=True)
    except (RuntimeError, ValueError) as exc:
        raise ckpt.CheckpointError(f"{what} weights do not fit the model: {exc}") from exc
    problems = {key: info.get(key) for key in ("missing_keys", "unexpected_keys",
                                               "mismatched_keys") if info.get(key)}
    if problems:
        detail = "; ".join(f"{key}: {sorted(map(str, value))[:4]}"
                           for key, value in problems.items())
        raise ckpt.CheckpointError(f"{what} weights do not fit the model: {detail}")
    return model


# transformers 5.x renamed past_key_values to cache and derives cache positions itself;
# 4.5x needs cache_position. Decide once which call the installed version takes.
def _forward_cache_kwargs(lm_cls) -> tuple[str, bool]:
    params = inspect.signature(lm_cls.forward).parameters
    name = "cache" if "cache" in params else "past_key_values"
    return name, "cache_position" in params


@dataclass(frozen=True)
class ModelInfo:
    """What the node reports about the loaded model (diagnostics, logs)."""

    source: str
    root: str
    device: str
    dtype: str
    n_layers: int
    width: int
    max_context_tokens: int


class AudioInteractionModel:
    """Weights and tokenizer of one Audio-Interaction checkpoint on one device."""

    def __init__(self, lm, encoder, tokenizer, info: ModelInfo) -> None:
        self.lm = lm.eval()
        self.encoder = encoder.eval()
        self.tokenizer = tokenizer
        self.info = info
        self.device = next(lm.parameters()).device
        self.dtype = next(lm.parameters()).dtype
        self.embed_dim = lm.config.hidden_size
        self._embed = lm.get_input_embeddings()
        self._cache_kwarg, self._needs_cache_position = _forward_cache_kwargs(type(lm))
        if encoder.config.output_dim != self.embed_dim:
            raise ckpt.CheckpointError(
                f"the audio encoder writes {encoder.config.output_dim}-wide features but the LM "
                f"is {self.embed_dim} wide (qwen25OmniConfig audio_config.output_dim)")

    @classmethod
    def load(cls, model: str | os.PathLike = ckpt.DEFAULT_REPO_ID, device: str = "auto",
             dtype: str = "auto", cache_dir: str | None = None,
             local_files_only: bool | None = None) -> "AudioInteractionModel":
        """Resolve, verify and load a checkpoint; every failure is a CheckpointError/ValueError
        whose message names the file or setting at fault."""
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, torch_device)
        root = ckpt.resolve_checkpoint(model, cache_dir=cache_dir,
                                       local_files_only=local_files_only)
        files = ckpt.verify_checkpoint(root)
        litgpt = ckpt.read_litgpt_config(files.lm_config)
        from transformers import AutoConfig, AutoTokenizer, Qwen2ForCausalLM
        from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import (
            Qwen2_5OmniAudioEncoder)

        with _quiet_transformers():
            hf_state = ckpt.litgpt_to_hf(ckpt.load_litgpt_state(files), litgpt)
            lm = _strict_from_pretrained(Qwen2ForCausalLM, ckpt.qwen2_config(litgpt), hf_state,
                                         torch_dtype, "LM")
            del hf_state
            try:
                audio_config = AutoConfig.from_pretrained(
                    files.omni_config).thinker_config.audio_config
            except (OSError, ValueError, AttributeError) as exc:
                raise ckpt.CheckpointError(
                    f"{files.omni_config} is not a Qwen2.5-Omni config: {exc}") from exc
            encoder = _strict_from_pretrained(Qwen2_5OmniAudioEncoder, audio_config,
                                              ckpt.load_encoder_state(files), torch_dtype,
                                              "audio encoder")
            try:
                tokenizer = AutoTokenizer.from_pretrained(str(root))
            except (OSError, ValueError) as exc:
                raise ckpt.CheckpointError(f"tokenizer in {root} could not be loaded: {exc}") \
                    from exc
        try:
            lm.to(torch_device)
            encoder.to(torch_device)
        except torch.OutOfMemoryError as exc:
            raise RuntimeError(f"out of GPU memory while moving the model to {torch_device}: "
                               f"{exc}; use a smaller dtype or device:=cpu") from exc
        info = ModelInfo(source=str(model), root=str(root), device=str(torch_device),
                         dtype=str(torch_dtype).removeprefix("torch."),
                         n_layers=litgpt["n_layer"], width=litgpt["n_embd"],
                         max_context_tokens=int(litgpt.get("block_size", 4096)))
        return cls(lm, encoder, tokenizer, info)

    @torch.inference_mode()
    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """Encoder features of whole chunks: mel (128, 40*n) -> (n, 10, width).

        Each 40-frame chunk is its own window (``feature_lens=[40]*n``), as the model was trained;
        so encoding chunk by chunk equals encoding them together.
        """
        if mel.ndim != 2 or mel.shape[0] != MEL_BINS or mel.shape[1] % MEL_FRAMES_PER_CHUNK:
            raise ValueError(f"mel must be ({MEL_BINS}, 40*n), got {tuple(mel.shape)}")
        n_chunks = mel.shape[1] // MEL_FRAMES_PER_CHUNK
        lens = torch.full((n_chunks,), MEL_FRAMES_PER_CHUNK, dtype=torch.long, device=self.device)
        out = self.encoder(mel.to(self.device, self.dtype), feature_lens=lens,
                           aftercnn_lens=torch.tensor([mel.shape[1] // 2], device=self.device))
        return out.last_hidden_state.reshape(n_chunks, AUDIO_TOKENS_PER_CHUNK, self.embed_dim)

    @torch.inference_mode()
    def embed(self, ids: list[int]) -> torch.Tensor:
        """Token embeddings (len(ids), width)."""
        return self._embed(torch.tensor(ids, dtype=torch.long, device=self.device))

    def new_cache(self):
        """An empty KV cache for one session."""
        from transformers import DynamicCache

        return DynamicCache(config=self.lm.config)

    @torch.inference_mode()
    def forward(self, embeds: torch.Tensor, cache, start: int,
                position_ids: torch.Tensor) -> torch.Tensor:
        """Run ``embeds`` (T, width) at cache positions start..start+T-1 with the given RoPE
        ``position_ids`` (T,); return the float32 logits of the last position (vocab,)."""
        kwargs = {self._cache_kwarg: cache}
        if self._needs_cache_position:
            kwargs["cache_position"] = torch.arange(start, start + embeds.shape[0],
                                                    device=self.device)
        out = self.lm(inputs_embeds=embeds.unsqueeze(0), position_ids=position_ids.unsqueeze(0),
                      use_cache=True, logits_to_keep=1, **kwargs)
        return out.logits[0, -1].float()

    def decode(self, ids: list[int]) -> str:
        """Text of BPE ids (never control ids: callers filter them)."""
        return self.tokenizer.decode(ids, skip_special_tokens=False,
                                     clean_up_tokenization_spaces=False)

    def encode_text(self, text: str) -> list[int]:
        """BPE ids of text, no BOS/EOS (as the reference tokenizer)."""
        return self.tokenizer.encode(text, add_special_tokens=False)
