"""torch.compile of the weight-heavy blocks, done during load (configure), never on a live chunk.

What is compiled: each decoder layer's MLP (gate/up/down, 88 % of a layer's weight bytes) and
each audio-encoder layer's feed-forward pair (fc1, fc2), every one a unit of its own. Attention,
RoPE and the KV cache stay eager: a compiled region that sees transformers' DynamicCache guards
on its internals (lazy initialisation, the stride of the first keys, the cache length) and
recompiles as a stream goes on, and every extra graph would hold another copy of the weights.

How (CPU; measured in bench/linear_kernels.py): inductor's C++ GEMM templates, which stream
bfloat16 weights at close to this machine's memory bandwidth with 13 rows where eager
``F.linear`` does not. They need the weights as constants (``freezing``) and pre-pack them; the
originals are discarded (``freezing_discard_parameters``), so a unit costs no extra memory, but it
can then never be recompiled: every unit therefore gets exactly one graph, compiled for a dynamic
row count (size-oblivious, so 1 row, 13 rows and a 2000-token rebuild share it; any batch of
sessions B x T rows too, as the unit flattens its input to 2-D), always under inference mode.
The FX graph cache is off for these compiles: a cache hit for a second unit of the same structure
would reuse the first unit's pre-packed weights (seen with torch 2.13: wrong outputs;
pytorch/pytorch#143144). Nothing is cached across processes, so each configure compiles again.

Recompiles are bounded by construction (one graph per unit) and counted: ``graphs()`` after
warm-up must not change while a stream runs (a test streams 10 minutes of audio).

CUDA: the same units compile with inductor's defaults (Triton); not measured here (no GPU was
lent to this work), hence not chosen by ``compile: auto``. No rclpy here.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import torch
from torch import nn

COMPILE_MODES = ("auto", "true", "false")
# What ``auto`` compiles for: CPU, bfloat16 weights of at least this many bytes (the 64-wide toy
# and fixture models gain nothing and would pay seconds of compilation per configure).
AUTO_MIN_WEIGHT_BYTES = 1 << 30
_CPU_INDUCTOR = {"freezing": True, "freezing_discard_parameters": True, "max_autotune": True,
                 "max_autotune_gemm_backends": "CPP,ATEN", "fx_graph_cache": False,
                 # autotuning prints a table per GEMM shape to stderr otherwise
                 "autotune_num_choices_displayed": 0, "max_autotune_report_choices_stats": False}


def resolve_compile(mode: str, device: torch.device, dtype: torch.dtype, quantization: str,
                    weight_bytes: int) -> tuple[bool, str]:
    """Whether to compile, and why (for logs and ModelInfo)."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile {mode!r} is not one of {', '.join(COMPILE_MODES)}")
    if mode == "false":
        return False, "compile:=false"
    if mode == "true":
        return True, "compile:=true"
    if device.type != "cpu":
        return False, "auto: not measured on CUDA here (compile:=true to try)"
    if weight_bytes < AUTO_MIN_WEIGHT_BYTES:
        return False, "auto: model too small to gain"
    if quantization != "none" or dtype != torch.bfloat16:
        return False, f"auto: compiled {quantization} {str(dtype)[6:]} measured no faster"
    return True, "auto: bfloat16 on CPU (C++ GEMM templates)"


class CompiledUnit(nn.Module):
    """A compiled block that takes and returns (..., features).

    Flattened to 2-D rows for the compiled graph so that one dynamic dimension covers every call
    shape. Once warmed up, a call that would need another graph raises instead of recompiling: the
    block's eager weights are gone, so a second graph could only compute garbage.
    """

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block
        self.compiled = torch.compile(block, dynamic=True)
        self.warm = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stance = "fail_on_recompile" if self.warm else "default"
        with torch.inference_mode(), torch.compiler.set_stance(stance):
            rows = x.reshape(-1, x.shape[-1])
            # the graph guards on the input being an inference tensor, contiguous
            rows = rows.contiguous() if rows.is_inference() else \
                rows.clone(memory_format=torch.contiguous_format)
            y = self.compiled(rows)
        return y.reshape(*x.shape[:-1], y.shape[-1])


class _FeedForward(nn.Module):
    """The audio-encoder layer's fc1 -> activation -> fc2, as one unit."""

    def __init__(self, fc1: nn.Module, activation, fc2: nn.Module) -> None:
        super().__init__()
        self.fc1, self.fc2 = fc1, fc2
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(x)))


class _Identity(nn.Module):
    """Stands in for fc2 once fc1 computes the whole feed-forward unit."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def compile_units(lm: nn.Module, encoder: nn.Module | None = None) -> list[CompiledUnit]:
    """Replace the LM's MLPs (and the encoder's fc1/fc2 pairs) by CompiledUnits.

    Nothing is compiled until the units first run (``warm_up``).
    """
    units = []
    for layer in lm.model.layers:
        layer.mlp = CompiledUnit(layer.mlp)
        units.append(layer.mlp)
    for layer in getattr(encoder, "layers", []):
        # the encoder layer calls fc1, its activation and fc2 in turn: fc1 computes all three
        activation = layer.activation_fn
        layer.fc1 = CompiledUnit(_FeedForward(layer.fc1, activation, layer.fc2))
        layer.activation_fn, layer.fc2 = _Identity(), _Identity()
        units.append(layer.fc1)
    return units


def graphs() -> int:
    """Graphs dynamo has compiled in this process (constant after warm-up if none recompiles)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


class compiling:
    """Context for the first (compiling) calls of units.

    inductor's CPU GEMM settings and size-oblivious dynamic rows; dynamo's per-function limit
    raised to one graph per unit.
    """

    def __init__(self, units: int) -> None:
        self._units = units
        self._stack = None

    def __enter__(self) -> "compiling":
        import contextlib

        import torch._dynamo.config as dynamo_config
        import torch._inductor.config as inductor_config
        import torch.fx.experimental._config as fx_config

        # All units of one class share a code object, and dynamo counts graphs per code object
        # (past the limit it runs the function eagerly). Graphs compiled before (another model in
        # this process) count too: the limit leaves room for one more graph per unit.
        room = graphs() + self._units + 1
        dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, room)
        dynamo_config.accumulated_recompile_limit = max(
            dynamo_config.accumulated_recompile_limit, room)
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(warnings.catch_warnings())
        warnings.filterwarnings("ignore", message="TypedStorage is deprecated")  # autotuner's
        self._stack.enter_context(inductor_config.patch(_CPU_INDUCTOR))
        self._stack.enter_context(fx_config.patch(backed_size_oblivious=True))
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()


@dataclass(frozen=True)
class WarmUp:
    """What compilation cost during load."""

    units: int
    graphs: int
    seconds: float


def warm_up(units: list[CompiledUnit], dtype: torch.dtype, device: torch.device,
            rows: int = 13) -> WarmUp:
    """Compile every unit now, with one call each with ``rows`` rows.

    The listen block's 13 rows tune the templates for the step that must keep up with the audio.
    """
    started, before = time.perf_counter(), graphs()
    with compiling(len(units)), torch.inference_mode():
        for unit in units:
            features = _in_features(unit.block)
            unit(torch.zeros(rows, features, dtype=dtype, device=device))
            unit.warm = True
    return WarmUp(len(units), graphs() - before, time.perf_counter() - started)


def _in_features(block: nn.Module) -> int:
    """Input width of a unit: that of its first linear layer (dense or quantized)."""
    return next(m.in_features for m in block.modules() if hasattr(m, "in_features"))


def compile_model(lm: nn.Module, encoder: nn.Module, mode: str, device: torch.device,
                  dtype: torch.dtype, quantization: str, weight_bytes: int) -> tuple[bool, str]:
    """Resolve ``mode``, and if it says so compile and warm up the units now.

    Returns whether the model is compiled and a line saying why / what it cost.
    """
    enabled, reason = resolve_compile(mode, device, dtype, quantization, weight_bytes)
    if not enabled:
        return False, reason
    result = warm_up(compile_units(lm, encoder), dtype, device)
    return True, (f"{reason}; {result.units} units, {result.graphs} graphs compiled in "
                  f"{result.seconds:.0f} s")
