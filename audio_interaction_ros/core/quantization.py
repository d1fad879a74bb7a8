"""Weight-only int8 / int4 quantization of the model's linear layers, applied while loading.

Why: every listen step and every reply token reads all the weights once, so on a CPU or a Jetson
the step time is bytes read / memory bandwidth. 3.4 B LM parameters are 6.8 GB in bfloat16,
3.4 GB in int8 and about 1.8 GB in int4 (group-wise scales included): fewer bytes per step, and
a model that fits an 8 GB board beside the robot's own software.

What is stored (one module per scheme, each a thin wrapper over torch's own weight-only kernels,
the ones torchao itself dispatches to; the quantization arithmetic is torchao's):

- ``int8``: symmetric, one scale per output channel; ``aten._weight_int8pack_mm`` (CPU, CUDA).
- ``int4``: asymmetric, one scale and zero point per group of 128 input features (tinygemm
  layout); ``aten._weight_int4pack_mm_for_cpu`` on CPU, ``aten._weight_int4pack_mm`` on CUDA
  (compute capability 8.0+: Ampere, Jetson Orin; bfloat16 only). A layer whose shape the kernel
  cannot take (input features not a multiple of 32, or output features not a multiple of 16 on
  CPU / 8 on CUDA) stays int8, and the report counts it with the reason; group size is the
  largest of 128, 64, 32 that divides the input features (the toy models are 64 wide).
- The LM head is int8 in both schemes: the listen decision reads just two of its rows, the head
  is where a 4-bit error moves the decision most, and int8 rows index cheaply (``weight_rows``).

Why not torchao's own tensor subclasses (``quantize_`` with ``Int8WeightOnlyConfig`` /
``Int4WeightOnlyConfig``): with torchao 0.18 and torch 2.13 there is no int4 weight-only layout
for the CPU at all, and the int8 one dequantizes the whole matrix to bfloat16 on every eager call
(measured: 14x slower than bfloat16 at 1 row); ``bench/linear_kernels.py`` has the numbers.

Embeddings, norms, convolutions and biases keep the load dtype (they are a small part of the
bytes a step reads). No rclpy here.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

SCHEMES = ("none", "int8", "int4")
INT4_GROUP_SIZES = (128, 64, 32)  # largest first; 128 is the usual choice for 3B models
# Rows quantized at a time: keeps the float32 temporaries of a 151936-row head small.
_ROW_BLOCK = 4096


@contextlib.contextmanager
def _quiet_import():
    """Import torchao quietly.

    Its CPU wheel logs that its CUDA extensions cannot load, and torch warns about an enum it
    registers; neither matters to weight-only quantization.
    """
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _torchao_utils():
    try:
        with _quiet_import():
            from torchao.quantization import utils
    except ImportError as exc:
        raise ValueError("quantization int8/int4 needs torchao (pip install torchao==0.18.0, "
                         "see requirements.txt); quantization:=none works without it") from exc
    return utils


def check_supported(scheme: str, device: torch.device, dtype: torch.dtype) -> None:
    """Raise ValueError naming what works if ``scheme`` cannot run on ``device`` in ``dtype``."""
    if scheme not in SCHEMES:
        raise ValueError(f"quantization {scheme!r} is not one of {', '.join(SCHEMES)}")
    if scheme == "none":
        return
    _torchao_utils()
    if scheme == "int4" and device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if major < 8:
            raise ValueError(
                f"quantization int4 needs a CUDA GPU of compute capability 8.0 or newer "
                f"(Ampere, Jetson Orin; tinygemm kernel); this one is {major}.{minor}: use "
                "quantization:=int8 or none")
        if dtype != torch.bfloat16:
            raise ValueError(f"quantization int4 on CUDA runs in bfloat16 only, not "
                             f"{str(dtype).removeprefix('torch.')}: use dtype:=bfloat16 or auto, "
                             "or quantization:=int8")


class Int8Linear(nn.Module):
    """``y = x W^T + b`` with W stored as int8 rows and one scale per row (output channel)."""

    def __init__(self, qweight: torch.Tensor, scale: torch.Tensor,
                 bias: torch.Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = qweight.shape
        self.register_buffer("qweight", qweight)
        self.register_buffer("scale", scale)
        self.register_buffer("bias", bias)

    @classmethod
    def from_weight(cls, weight: torch.Tensor, bias: torch.Tensor | None) -> "Int8Linear":
        utils = _torchao_utils()
        qweight = torch.empty(weight.shape, dtype=torch.int8, device=weight.device)
        scale = torch.empty(weight.shape[0], dtype=weight.dtype, device=weight.device)
        for start in range(0, weight.shape[0], _ROW_BLOCK):
            rows = slice(start, start + _ROW_BLOCK)
            q, s, _ = utils.dynamically_quantize_per_channel(weight[rows], -128, 127, torch.int8)
            qweight[rows], scale[rows] = q, s
        return cls(qweight, scale, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch._weight_int8pack_mm(x.reshape(-1, self.in_features), self.qweight, self.scale)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def weight_rows(self, index: torch.Tensor | list[int]) -> torch.Tensor:
        """Dequantized rows of W (what ``linear.weight[index]`` is for a dense layer)."""
        return self.qweight[index].to(self.scale.dtype) * self.scale[index, None]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


class Int4Linear(nn.Module):
    """``y = x W^T + b`` with W packed as 4-bit groups for the device's tinygemm kernel."""

    def __init__(self, packed: torch.Tensor, scales_and_zeros: torch.Tensor, group_size: int,
                 in_features: int, out_features: int, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.group_size = group_size
        self.register_buffer("packed", packed)
        self.register_buffer("scales_and_zeros", scales_and_zeros)
        self.register_buffer("bias", bias)

    @classmethod
    def from_weight(cls, weight: torch.Tensor, bias: torch.Tensor | None,
                    group_size: int) -> "Int4Linear":
        utils = _torchao_utils()
        out_features, in_features = weight.shape
        values, scales_and_zeros = utils.groupwise_affine_quantize_tensor(
            weight, 4, group_size, weight.dtype)
        if weight.device.type == "cuda":  # torchao leaves two nibbles per byte there
            packed = torch.ops.aten._convert_weight_to_int4pack(values, 8)
        else:
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(values, 8)
        return cls(packed, scales_and_zeros, group_size, in_features, out_features, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        if rows.device.type == "cuda":
            y = torch.ops.aten._weight_int4pack_mm(rows, self.packed, self.group_size,
                                                   self.scales_and_zeros)
        else:
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(rows, self.packed, self.group_size,
                                                           self.scales_and_zeros)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, int4, "
                f"group_size={self.group_size}")


QUANTIZED_LINEARS = (Int8Linear, Int4Linear)


def linear_rows(module: nn.Module, index: torch.Tensor | list[int]) -> torch.Tensor:
    """Return rows ``index`` of a linear layer's weight, dense, whether or not it is quantized.

    The LM head is a plain ``nn.Linear`` or an ``Int8Linear``.
    """
    if isinstance(module, Int8Linear):
        return module.weight_rows(index)
    if isinstance(module, nn.Linear):
        return module.weight[index]
    raise TypeError(f"no dense rows for {type(module).__name__}")


def int4_group_size(in_features: int, out_features: int, device: torch.device) -> int | str:
    """Return the int4 group size for a layer of this shape, or why the kernel cannot take it."""
    rows_multiple = 8 if device.type == "cuda" else 16
    if out_features % rows_multiple:
        return f"output features not a multiple of {rows_multiple}"
    if device.type == "cuda" and in_features % 128:  # tinygemm tiles k by 8 x 16
        return "input features not a multiple of 128"
    for size in INT4_GROUP_SIZES:
        if in_features % size == 0:
            return size
    return f"input features not a multiple of {INT4_GROUP_SIZES[-1]}"


@dataclass
class QuantizationReport:
    """What quantization did: layers per storage kind, and why any layer was kept wider."""

    scheme: str
    layers: dict[str, int] = field(default_factory=dict)  # "int8"/"int4"/"dense" -> count
    kept_int8: dict[str, int] = field(default_factory=dict)  # reason -> layers

    def count(self, kind: str, reason: str | None = None) -> None:
        self.layers[kind] = self.layers.get(kind, 0) + 1
        if reason:
            self.kept_int8[reason] = self.kept_int8.get(reason, 0) + 1

    def summary(self) -> str:
        parts = [f"{n} {kind}" for kind, n in sorted(self.layers.items())]
        kept = "; ".join(f"{n} kept int8: {reason}" for reason, n in self.kept_int8.items())
        return ", ".join(parts) + (f" ({kept})" if kept else "")


def quantize_linear(linear: nn.Linear, scheme: str, device: torch.device,
                    report: QuantizationReport, head: bool = False) -> nn.Module:
    """Return the replacement of ``linear`` under ``scheme``, built on ``device``.

    The dense layer is moved there first, so a GPU never holds more than one dense layer at a time.
    """
    if scheme == "none":
        report.count("dense")
        return linear
    linear = linear.to(device)
    weight = linear.weight.detach()
    bias = None if linear.bias is None else linear.bias.detach().clone()  # kept: own memory
    if scheme == "int4" and not head:
        group = int4_group_size(linear.in_features, linear.out_features, device)
        if isinstance(group, int):
            report.count("int4")
            return Int4Linear.from_weight(weight, bias, group)
        report.count("int8", group)
    else:
        report.count("int8", "LM head (int8 in every scheme)" if scheme == "int4" else None)
    return Int8Linear.from_weight(weight, bias)


def tensor_bytes(*modules: nn.Module) -> int:
    """Bytes of every parameter and buffer (quantized weights, scales, norms, RoPE tables)."""
    seen: set[int] = set()
    total = 0
    for module in modules:
        for tensor in (*module.parameters(), *module.buffers()):
            if id(tensor) not in seen:
                seen.add(id(tensor))
                total += tensor.numel() * tensor.element_size()
    return total
