"""The network: transformers' Qwen2 decoder and Qwen2.5-Omni audio tower.

Loaded from the release layout, with the two calls the listen/speak loop needs (encode chunks; one
forward for the rows of several sessions, rows.py). No rclpy here; no per-stream state either:
sessions own their caches, so one model serves several sessions and streams.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from . import checkpoint as ckpt
from .compilation import compile_model, resolve_compile
from .loading import build_empty, fill_and_quantize
from .protocol import AUDIO_TOKENS_PER_CHUNK, MEL_BINS, MEL_FRAMES_PER_CHUNK
from .quantization import QuantizationReport, check_supported, tensor_bytes
from .rows import KVCache, Row, forward_hidden
from .rows import install as install_rows_attention

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(device: str = "auto") -> torch.device:
    """Pick the device: ``auto`` is CUDA when present.

    Asking for CUDA without one is an error, not a fallback.
    """
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


def cpu_bf16_feature(cpuinfo: str | None = None) -> str | None:
    """Return the CPU feature that makes bfloat16 matmuls fast here, or None if there is none.

    ``amx_bf16``, ``avx512_bf16`` on x86; ``bf16`` on ARM; read from /proc/cpuinfo.
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
                cpuinfo = handle.read()
        except OSError:  # not Linux: ask torch (x86 only)
            if torch.cpu._is_amx_tile_supported():
                return "amx_bf16"
            return "avx512_bf16" if torch.cpu._is_avx512_bf16_supported() else None
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86, ARM
            flags.update(value.split())
    return next((f for f in ("amx_bf16", "avx512_bf16", "bf16") if f in flags), None)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """Resolve ``dtype`` (a name, or ``auto``) to a torch dtype.

    ``auto``: bfloat16 on a GPU that has it (as the authors ran), float16 on older GPUs; on a CPU
    bfloat16 where it has native bf16 instructions (AMX / AVX512-BF16 on x86, bf16 on ARM: 4.4x
    faster than float32 per decision on such a CPU), float32 otherwise.
    """
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_bf16_feature() else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def dtype_reason(dtype: str, device: torch.device, chosen: torch.dtype) -> str:
    """Why ``chosen`` (for logs and ModelInfo): asked for, or what ``auto`` found."""
    if dtype != "auto":
        return "requested"
    if device.type == "cuda":
        return "auto: GPU " + ("has bf16" if chosen == torch.bfloat16 else "lacks bf16")
    feature = cpu_bf16_feature()
    return f"auto: CPU has {feature}" if feature else "auto: CPU has no native bf16"


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


class _IndexedHead(torch.nn.Module):
    """Full head, then the wanted columns (for heads that cannot be sliced)."""

    def __init__(self, head: torch.nn.Module, index: torch.Tensor) -> None:
        super().__init__()
        self.head = head
        self.index = index

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden).index_select(-1, self.index)


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
    dtype_reason: str = "requested"
    quantization: str = "none"
    quantized_layers: str = ""  # e.g. "252 int4, 1 int8 (...)"
    weight_bytes: int = 0  # parameters and buffers as stored on the device
    compiled: bool = False
    compile_reason: str = ""  # why (not), and what warm-up cost


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
        self._decoder = lm.get_decoder()
        self._heads: dict[tuple[int, ...], torch.nn.Module] = {}
        install_rows_attention(lm)
        if encoder.config.output_dim != self.embed_dim:
            raise ckpt.CheckpointError(
                f"the audio encoder writes {encoder.config.output_dim}-wide features but the LM "
                f"is {self.embed_dim} wide (qwen25OmniConfig audio_config.output_dim)")

    @classmethod
    def load(cls, model: str | os.PathLike = ckpt.DEFAULT_REPO_ID, device: str = "auto",
             dtype: str = "auto", cache_dir: str | None = None,
             local_files_only: bool | None = None, quantization: str = "none",
             compile: str = "auto") -> "AudioInteractionModel":
        """Load a verified checkpoint, then compile and warm up what ``compile`` asks for.

        Linear layers are quantized while they are read (core/loading.py); compilation is
        core/compilation.py. Every failure is a CheckpointError/ValueError whose message names the
        file or setting at fault.
        """
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, torch_device)
        check_supported(quantization, torch_device, torch_dtype)
        resolve_compile(compile, torch_device, torch_dtype, quantization, 0)  # fail early
        root = ckpt.resolve_checkpoint(model, cache_dir=cache_dir,
                                       local_files_only=local_files_only)
        files = ckpt.verify_checkpoint(root)
        litgpt = ckpt.read_litgpt_config(files.lm_config)
        from transformers import AutoConfig, AutoTokenizer, Qwen2ForCausalLM
        from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import (
            Qwen2_5OmniAudioEncoder)

        report = QuantizationReport(quantization)
        try:
            with _quiet_transformers():
                lm = build_empty(Qwen2ForCausalLM, ckpt.qwen2_config(litgpt), torch_dtype)
                fill_and_quantize(lm, ckpt.iter_lm_tensors(files, litgpt), quantization,
                                  torch_device, report, "LM")
                try:
                    audio_config = AutoConfig.from_pretrained(
                        files.omni_config).thinker_config.audio_config
                except (OSError, ValueError, AttributeError) as exc:
                    raise ckpt.CheckpointError(
                        f"{files.omni_config} is not a Qwen2.5-Omni config: {exc}") from exc
                encoder = build_empty(Qwen2_5OmniAudioEncoder, audio_config, torch_dtype)
                fill_and_quantize(encoder, ckpt.load_encoder_state(files).items(),
                                  quantization, torch_device, report, "audio encoder")
                try:
                    tokenizer = AutoTokenizer.from_pretrained(str(root))
                except (OSError, ValueError) as exc:
                    raise ckpt.CheckpointError(
                        f"tokenizer in {root} could not be loaded: {exc}") from exc
            lm.to(torch_device)
            encoder.to(torch_device)
        except torch.OutOfMemoryError as exc:
            raise RuntimeError(f"out of GPU memory while moving the model to {torch_device}: "
                               f"{exc}; use a smaller dtype or device:=cpu, or "
                               "quantization:=int8/int4") from exc
        weight_bytes = tensor_bytes(lm, encoder)
        compiled, compile_reason = compile_model(lm, encoder, compile, torch_device, torch_dtype,
                                                 quantization, weight_bytes)
        info = ModelInfo(source=str(model), root=str(root), device=str(torch_device),
                         dtype=str(torch_dtype).removeprefix("torch."),
                         n_layers=litgpt["n_layer"], width=litgpt["n_embd"],
                         max_context_tokens=int(litgpt.get("block_size", 4096)),
                         dtype_reason=dtype_reason(dtype, torch_device, torch_dtype),
                         quantization=quantization, quantized_layers=report.summary(),
                         weight_bytes=weight_bytes, compiled=compiled,
                         compile_reason=compile_reason)
        return cls(lm, encoder, tokenizer, info)

    @torch.inference_mode()
    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """Encode whole chunks: mel (128, 40*n) -> encoder features (n, 10, width).

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

    def new_cache(self, max_tokens: int | None = None) -> KVCache:
        """Return an empty KV cache for one session, bounded by ``max_tokens`` positions.

        The default bound is the model's context length.
        """
        config = self.lm.config
        head_dim = getattr(config, "head_dim", None) or \
            config.hidden_size // config.num_attention_heads
        return KVCache(config.num_hidden_layers, config.num_key_value_heads, head_dim,
                       self.dtype, self.device, max_tokens or self.info.max_context_tokens)

    @torch.inference_mode()
    def forward(self, rows: Sequence[Row]) -> list[torch.Tensor]:
        """One forward for several sessions (rows.py).

        Each row's new tokens go into its own cache at its own positions. Return, per row, the
        float32 logits at its last token over ``row.head`` (the whole vocabulary when None, those
        ids only when a tuple).

        The listen decision needs two of the LM head's 151,936 rows: reading only those saves
        ~10 % of the bytes of a listen step; their values are the full head's.
        """
        hidden = forward_hidden(self._decoder, rows)
        out: list[torch.Tensor | None] = [None] * len(rows)
        groups: dict[tuple[int, ...] | None, list[int]] = {}
        for i, row in enumerate(rows):
            groups.setdefault(row.head, []).append(i)
        for head, members in groups.items():
            if head == ():
                logits = hidden.new_zeros((len(members), 0), dtype=torch.float32)
            else:
                index = torch.tensor(members, device=hidden.device)
                module = self.lm.get_output_embeddings() if head is None else \
                    self._head_columns(head)
                logits = module(hidden.index_select(0, index)).float()
            for j, i in enumerate(members):
                out[i] = logits[j]
        return out

    def _head_columns(self, ids: tuple[int, ...]) -> torch.nn.Module:
        """Return the LM head restricted to ``ids``, built once per id set.

        A head whose weight cannot be indexed (a quantized tensor subclass) falls back to the full
        head, then indexing.
        """
        head = self._heads.get(ids)
        if head is None:
            full = self.lm.get_output_embeddings()
            index = torch.tensor(ids, device=self.device)
            try:
                weight = full.weight.detach().index_select(0, index)
                bias = None if full.bias is None else full.bias.detach().index_select(0, index)
                head = torch.nn.Linear(weight.shape[1], len(ids), bias=bias is not None,
                                       device=self.device, dtype=weight.dtype)
                head.weight.data.copy_(weight)
                if bias is not None:
                    head.bias.data.copy_(bias)
            except (RuntimeError, NotImplementedError, TypeError, AttributeError):
                head = _IndexedHead(full, index)
            self._heads[ids] = head
        return head

    def decode(self, ids: list[int]) -> str:
        """Text of BPE ids (never control ids: callers filter them)."""
        return self.tokenizer.decode(ids, skip_special_tokens=False,
                                     clean_up_tokenization_spaces=False)

    def encode_text(self, text: str) -> list[int]:
        """BPE ids of text, no BOS/EOS (as the reference tokenizer)."""
        return self.tokenizer.encode(text, add_special_tokens=False)
