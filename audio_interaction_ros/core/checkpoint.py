"""Find, verify and read an Audio-Interaction checkpoint in its release layout. No rclpy here.

The release (PROTOCOL.md §1.1) stores the LM as litgpt tensors in sharded safetensors, the audio
tower as a plain torch state dict, and the encoder's config inside a Qwen2.5-Omni config. This
module turns that into what transformers' classes load: a ``Qwen2Config`` and HF tensor names.
"""
from __future__ import annotations

import json
import os
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

DEFAULT_REPO_ID = "zhifeixie/AudioInteraction"
INDEX_FILE = "model.safetensors.index.json"
LM_CONFIG_FILE = "model_config.yaml"
ENCODER_FILE = "audiointeraction_ChunkwisedEncoder.pth"
OMNI_CONFIG_DIR = "qwen25OmniConfig"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
# What a download needs; training-only files of the release are left on the hub.
DOWNLOAD_PATTERNS = ["*.safetensors", INDEX_FILE, LM_CONFIG_FILE, ENCODER_FILE,
                     f"{OMNI_CONFIG_DIR}/*", *TOKENIZER_FILES, "generation_config.json"]

_SAFETENSORS_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2,
                      "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


class CheckpointError(RuntimeError):
    """The checkpoint is missing, incomplete or not the expected layout; the message says which."""


@dataclass(frozen=True)
class CheckpointFiles:
    """Paths of one verified checkpoint directory."""

    root: Path
    shards: tuple[Path, ...]
    lm_config: Path
    encoder: Path
    omni_config: Path


def resolve_checkpoint(model: str | os.PathLike, cache_dir: str | None = None,
                       local_files_only: bool | None = None) -> Path:
    """Return a local directory for ``model``: a directory as given, or a Hugging Face repo id.

    A repo id is resolved through huggingface_hub's cache (downloaded once, with progress bars);
    offline and not cached gives a CheckpointError that says how to get it.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    text = str(model)
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise CheckpointError(
            f"model {text!r} is neither a checkpoint directory nor a Hugging Face repo id "
            f"such as {DEFAULT_REPO_ID!r}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(text, allow_patterns=DOWNLOAD_PATTERNS, cache_dir=cache_dir,
                                      local_files_only=bool(local_files_only)))
    except LocalEntryNotFoundError as exc:
        raise CheckpointError(
            f"model {text!r} is not in the Hugging Face cache and cannot be downloaded "
            f"(offline?). On a connected machine run `hf download {text}` (or set model to a "
            f"local checkpoint directory) and copy the cache to this robot.") from exc
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise CheckpointError(f"downloading model {text!r} failed: {exc}") from exc


def _safetensors_payload_bytes(path: Path) -> int:
    """Bytes the header of a safetensors file promises; raises CheckpointError if it is broken."""
    size = path.stat().st_size
    try:
        with path.open("rb") as handle:
            header_len = struct.unpack("<Q", handle.read(8))[0]
            if header_len > size - 8:
                raise ValueError("header longer than the file")
            header = json.loads(handle.read(header_len))
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"shard {path.name} is not a valid safetensors file: {exc}") from exc
    end = max((meta["data_offsets"][1] for key, meta in header.items() if key != "__metadata__"),
              default=0)
    if 8 + header_len + end != size:
        raise CheckpointError(
            f"shard {path.name} is {size} bytes but its header describes {8 + header_len + end}: "
            "the file is truncated or corrupted; delete it and download again")
    return sum(_SAFETENSORS_BYTES.get(meta["dtype"], 0) * _numel(meta["shape"])
               for key, meta in header.items() if key != "__metadata__")


def _numel(shape: list[int]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def verify_checkpoint(root: str | os.PathLike) -> CheckpointFiles:
    """Check that every file of the release layout is present and every shard is whole."""
    root = Path(root)
    if not root.is_dir():
        raise CheckpointError(f"checkpoint directory {str(root)!r} does not exist")
    required = [INDEX_FILE, LM_CONFIG_FILE, ENCODER_FILE, f"{OMNI_CONFIG_DIR}/config.json",
                *TOKENIZER_FILES]
    missing = [name for name in required if not (root / name).is_file()]
    if missing:
        raise CheckpointError(f"checkpoint {str(root)!r} lacks {', '.join(missing)}")
    try:
        index = json.loads((root / INDEX_FILE).read_text())
        weight_map: dict[str, str] = index["weight_map"]
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{INDEX_FILE} in {str(root)!r} is unreadable: {exc}") from exc
    shard_names = sorted(set(weight_map.values()))
    absent = [name for name in shard_names if not (root / name).is_file()]
    if absent:
        raise CheckpointError(
            f"checkpoint {str(root)!r} lacks shard(s) {', '.join(absent)} listed in {INDEX_FILE}; "
            "the download is incomplete")
    payload = sum(_safetensors_payload_bytes(root / name) for name in shard_names)
    promised = index.get("metadata", {}).get("total_size")
    if promised is not None and int(promised) != payload:
        raise CheckpointError(
            f"shards in {str(root)!r} hold {payload} bytes of tensors but {INDEX_FILE} promises "
            f"{promised}: a shard is from another release or corrupted")
    return CheckpointFiles(root=root, shards=tuple(root / n for n in shard_names),
                           lm_config=root / LM_CONFIG_FILE, encoder=root / ENCODER_FILE,
                           omni_config=root / OMNI_CONFIG_DIR)


def read_litgpt_config(path: Path) -> dict:
    """Read the litgpt ``Config`` kwargs of model_config.yaml, with the keys this loader needs."""
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{path} is not valid YAML: {exc}") from exc
    needed = ("n_layer", "n_embd", "n_head", "padded_vocab_size")
    if not isinstance(config, dict) or any(key not in config for key in needed):
        raise CheckpointError(f"{path} lacks one of {needed}")
    unsupported = {key: config.get(key) for key in ("parallel_residual", "bias", "lm_head_bias")
                   if config.get(key)}
    if unsupported or config.get("mlp_class_name", "LLaMAMLP") != "LLaMAMLP" or \
            config.get("norm_class_name", "RMSNorm") != "RMSNorm":
        raise CheckpointError(f"{path} describes a model this loader cannot map onto Qwen2: "
                              f"{unsupported or config.get('mlp_class_name')}")
    return config


def qwen2_config(litgpt: dict):
    """Return the ``Qwen2Config`` equal to a litgpt Qwen2.5 config (PROTOCOL.md §1.3)."""
    from transformers import Qwen2Config

    n_head = litgpt["n_head"]
    head_size = litgpt.get("head_size") or litgpt["n_embd"] // n_head
    if head_size * n_head != litgpt["n_embd"]:
        raise CheckpointError("head_size * n_head != n_embd is not supported by Qwen2")
    if litgpt.get("rotary_percentage", 1.0) != 1.0:
        raise CheckpointError("partial rotary embeddings are not supported by Qwen2")
    return Qwen2Config(
        vocab_size=litgpt["padded_vocab_size"],
        hidden_size=litgpt["n_embd"],
        intermediate_size=litgpt["intermediate_size"],
        num_hidden_layers=litgpt["n_layer"],
        num_attention_heads=n_head,
        num_key_value_heads=litgpt.get("n_query_groups", n_head),
        hidden_act="silu",
        max_position_embeddings=max(int(litgpt.get("block_size", 4096)), 4096),
        rms_norm_eps=float(litgpt.get("norm_eps", 1e-6)),
        rope_theta=float(litgpt.get("rope_base", 10000)),
        tie_word_embeddings=False,  # litgpt trained wte and lm_head as separate tensors
        use_sliding_window=False,
        attention_dropout=0.0,
    )


def regroup_legacy_qkv(tensor: torch.Tensor, n_head: int, n_groups: int,
                       head_size: int) -> torch.Tensor:
    """Older litgpt ``attn.attn`` rows are interleaved per KV group ([Q..Q K V] per group).

    Return them grouped ([all Q | all K | all V]) like the current ``attn.qkv``.
    """
    q_per_kv = n_head // n_groups
    blocks = tensor.reshape(n_groups, (q_per_kv + 2) * head_size, *tensor.shape[1:])
    q, k, v = blocks.split([q_per_kv * head_size, head_size, head_size], dim=1)
    return torch.cat([part.reshape(-1, *tensor.shape[1:]) for part in (q, k, v)])


_DIRECT = {
    "transformer.wte.weight": "model.embed_tokens.weight",
    "transformer.ln_f.weight": "model.norm.weight",
    "lm_head.weight": "lm_head.weight",
}
_PER_LAYER = {
    "norm_1.weight": "input_layernorm.weight",
    "norm_2.weight": "post_attention_layernorm.weight",
    "attn.proj.weight": "self_attn.o_proj.weight",
    "mlp.fc_1.weight": "mlp.gate_proj.weight",
    "mlp.fc_2.weight": "mlp.up_proj.weight",
    "mlp.proj.weight": "mlp.down_proj.weight",
}


def litgpt_to_hf(state: dict[str, torch.Tensor], litgpt: dict) -> dict[str, torch.Tensor]:
    """Rename litgpt tensors to ``Qwen2ForCausalLM`` names, splitting the fused qkv projection.

    Accepts the current grouped ``attn.qkv`` and the legacy interleaved ``attn.attn``. Unknown or
    missing tensors raise CheckpointError naming them.
    """
    n_head = litgpt["n_head"]
    n_groups = litgpt.get("n_query_groups", n_head)
    head_size = litgpt.get("head_size") or litgpt["n_embd"] // n_head
    q_rows, kv_rows = n_head * head_size, n_groups * head_size
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in state.items():
        if key in _DIRECT:
            out[_DIRECT[key]] = tensor
            continue
        parts = key.split(".", 3)
        if len(parts) != 4 or parts[:2] != ["transformer", "h"] or not parts[2].isdigit():
            unknown.append(key)
            continue
        layer, name = parts[2], parts[3]
        prefix = f"model.layers.{layer}."
        if name in _PER_LAYER:
            out[prefix + _PER_LAYER[name]] = tensor
        elif name.startswith(("attn.qkv.", "attn.attn.")):
            kind = name.rsplit(".", 1)[1]  # weight or bias
            if name.startswith("attn.attn."):
                tensor = regroup_legacy_qkv(tensor, n_head, n_groups, head_size)
            if tensor.shape[0] != q_rows + 2 * kv_rows:
                raise CheckpointError(
                    f"{key} has {tensor.shape[0]} rows, expected {q_rows + 2 * kv_rows} "
                    f"({n_head} query heads + 2x{n_groups} KV heads of {head_size})")
            q, k, v = tensor.split([q_rows, kv_rows, kv_rows])
            for proj, part in (("q_proj", q), ("k_proj", k), ("v_proj", v)):
                out[f"{prefix}self_attn.{proj}.{kind}"] = part
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"unexpected LM tensors: {', '.join(sorted(unknown)[:5])}")
    return out


def iter_lm_tensors(files: CheckpointFiles, litgpt: dict) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield the LM's tensors one at a time, by ``Qwen2ForCausalLM`` name.

    Each shard is opened with safetensors and only the tensor being handed out is read (so a loader
    can convert or quantize it before the next one exists).
    """
    from safetensors import SafetensorError, safe_open

    for shard in files.shards:
        try:
            with safe_open(str(shard), framework="pt") as handle:
                for key in handle.keys():
                    yield from litgpt_to_hf({key: handle.get_tensor(key)}, litgpt).items()
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"shard {shard.name} could not be read: {exc}") from exc


def load_encoder_state(files: CheckpointFiles) -> dict[str, torch.Tensor]:
    """Load the audio tower's state dict; never unpickles code (``weights_only=True``)."""
    try:  # memory-mapped where the file allows it: tensors are read when used
        state = torch.load(files.encoder, map_location="cpu", weights_only=True,
                           mmap=zipfile.is_zipfile(files.encoder))
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise CheckpointError(f"{files.encoder.name} could not be loaded safely: {exc}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{files.encoder.name} is not a state dict")
    return state
