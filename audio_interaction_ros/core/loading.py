"""Build a network and fill it tensor by tensor, quantizing each linear layer once it is in.

No rclpy here.

Why not ``from_pretrained(state_dict=...)``: that needs the whole checkpoint in memory next to
the model it builds (13.6 GB at the peak for the 3B model in bfloat16), and a quantized model
would then be quantized from a full dense copy. Here the network is allocated without
initialisation (untouched pages are never resident), each checkpoint tensor is read on its own,
converted, and assigned or quantized right away, so the peak stays near the size of what is kept
plus one tensor; ``bench/load_memory.py`` measures it. The strict checks of the old path remain:
any missing, unexpected or mis-shaped tensor is a CheckpointError that names it.
"""
from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterable

import torch
from torch import nn

from .checkpoint import CheckpointError
from .quantization import QuantizationReport, quantize_linear

HEAD = "lm_head"  # the LM head: int8 in every quantized scheme (see quantization.py)


def build_empty(cls, config, dtype: torch.dtype, device: torch.device | str = "cpu") -> nn.Module:
    """Build ``cls`` from ``config`` with uninitialised parameters in ``dtype``.

    Non-persistent buffers such as RoPE frequencies are computed by the constructors, as
    transformers does.
    """
    from transformers.initialization import no_init_weights

    with torch.device(device), no_init_weights():
        return cls._from_config(config, dtype=dtype).eval()


def _split(name: str) -> tuple[str, str]:
    owner, _, attr = name.rpartition(".")
    return owner, attr


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    if new is not root.get_submodule(name):
        owner, attr = _split(name)
        setattr(root.get_submodule(owner) if owner else root, attr, new)


def release_freed_memory() -> None:
    """Hand the memory freed while quantizing back to the system.

    glibc keeps freed heap blocks (measured: 0.75 GB left resident after an int4 load at the real
    dimensions). Elsewhere a no-op.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def fill_and_quantize(root: nn.Module, tensors: Iterable[tuple[str, torch.Tensor]], scheme: str,
                      device: torch.device, report: QuantizationReport, what: str) -> None:
    """Assign ``tensors`` (name, value) to ``root``'s parameters and persistent buffers.

    Each keeps the dtype it already has; every ``nn.Linear`` is replaced by its quantized form
    (built on ``device``) once all its tensors are in. Anything missing, unknown or of the wrong
    shape raises CheckpointError naming it; quantization happens only after all checks passed for
    the layer's own tensors.
    """
    expected = dict(root.state_dict(keep_vars=True))
    linears = {name: module for name, module in root.named_modules()
               if isinstance(module, nn.Linear)}
    waiting = {name: {f"{name}.{key}" for key, _ in module.named_parameters(recurse=False)}
               for name, module in linears.items()}
    done: set[str] = set()
    problems: dict[str, list[str]] = {"unexpected_keys": [], "mismatched_keys": []}
    for name, value in tensors:
        target = expected.get(name)
        if target is None:
            problems["unexpected_keys"].append(name)
            continue
        if tuple(value.shape) != tuple(target.shape):
            problems["mismatched_keys"].append(
                f"{name} {tuple(value.shape)} vs {tuple(target.shape)}")
            continue
        owner, attr = _split(name)
        module = root.get_submodule(owner) if owner else root
        # Kept tensors are copied: safetensors hands out views of the memory-mapped shard, and
        # weights left there would be page cache, dropped under memory pressure and read back
        # from disk mid-stream. A weight about to be quantized is only read.
        value = value.to(target.dtype, copy=scheme == "none" or owner not in waiting)
        if isinstance(target, nn.Parameter):
            target.data = value  # drops the never-touched placeholder
        else:
            module._buffers[attr] = value
        done.add(name)
        pending = waiting.get(owner)
        if pending is not None:
            pending.discard(name)
            if not pending:
                _replace(root, owner, quantize_linear(module, scheme, device, report,
                                                      head=owner == HEAD))
                del waiting[owner]
    release_freed_memory()
    problems["missing_keys"] = sorted(set(expected) - done)
    problems = {key: value for key, value in problems.items() if value}
    if problems:
        detail = "; ".join(f"{key}: {sorted(value)[:4]}" for key, value in problems.items())
        raise CheckpointError(f"{what} weights do not fit the model: {detail}")


def quantize_modules(root: nn.Module, scheme: str, device: torch.device,
                     report: QuantizationReport,
                     fill: Callable[[str, nn.Linear], None] | None = None) -> None:
    """Replace each ``nn.Linear`` of a built ``root`` by its quantized form, one at a time.

    ``fill(name, linear)`` first writes its weights (e.g. random ones for the real-size benchmark
    model), so that at most one dense layer exists beside the quantized ones.
    """
    for name in [n for n, m in root.named_modules() if isinstance(m, nn.Linear)]:
        linear = root.get_submodule(name)
        if fill is not None:
            fill(name, linear)
        _replace(root, name, quantize_linear(linear, scheme, device, report, head=name == HEAD))
    release_freed_memory()
