"""Weight-only kernels on this CPU at the real model's MLP shapes: which one to use per row count.

Why: a listen step multiplies 13 rows (one block) by every weight matrix, a reply token 1 row.
Both are bound by reading the weights, so fewer bytes per weight should pay, but only if the
kernel keeps streaming at memory speed with 13 rows. This times a stack of distinct Qwen2.5-3B
MLPs (gate/up 11008x2048, down 2048x11008; distinct matrices, so nothing stays in the CPU cache:
one matrix timed over and over flatters int8 by ~1.6x) for each storage (bf16, int8, int4, the
modules of core/quantization.py; and w8a8, int8 x int8, timed to see whether it would pay) eager
and compiled (each MLP a unit compiled exactly as
core/compilation.py compiles the model: inductor's CPU GEMM templates on frozen weights, one
graph per unit for any row count), at the row counts the model uses. Figures are milliseconds
per MLP and speed-up against eager bf16 at the same row count, measured interleaved (round
robin) so that machine load hits all variants alike.

    flock /tmp/heavy.lock python bench/linear_kernels.py --threads 2 --json bench/results/...
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from common import machine_context, write_json
from audio_interaction_ros.core.compilation import CompiledUnit, compiling
from audio_interaction_ros.core.quantization import QuantizationReport, quantize_linear

HIDDEN, INTERMEDIATE = 2048, 11008


class W8A8Linear(torch.nn.Module):
    """int8 weights x int8 activations (``w8a8``): a kernel the package does NOT use, timed here.

    Per-channel int8 weights stored (in, out) (oneDNN's fastest layout for ``torch._int_mm``),
    activations quantized per row on every call (absmax / 127, as torchao's
    ``_quantize_activation_per_token_absmax``), exact int32 product, rescaled. The question it
    answers: does an int8 x int8 GEMM (AVX512-VNNI) keep the halved bytes at 13 rows, where the
    weight-only kernels lose them? (torchao's own ``_quant_int8_dynamic_per_token_linear`` was
    30x slower at 1 row on this CPU: it sums the whole weight on every call.)
    """

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        from torchao.quantization.utils import dynamically_quantize_per_channel

        q, scale, _ = dynamically_quantize_per_channel(linear.weight.detach(), -128, 127,
                                                       torch.int8)
        self.qweight_t, self.scale = q.t().contiguous(), scale.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = x.float()
        row_scale = values.abs().amax(dim=-1, keepdim=True).clamp_min(1e-5) / 127
        values = torch.round(values / row_scale).clamp_(-127, 127).to(torch.int8)
        y = torch._int_mm(values, self.qweight_t).float() * (row_scale * self.scale)
        return y.to(x.dtype)


class MLPStack(torch.nn.Module):
    """``count`` Qwen2 MLPs applied in turn (residual), each with its own random weights."""

    def __init__(self, count: int, scheme: str, generator: torch.Generator) -> None:
        super().__init__()
        from transformers import Qwen2Config
        from transformers.models.qwen2.modeling_qwen2 import Qwen2MLP

        config = Qwen2Config(hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
                             hidden_act="silu")
        report = QuantizationReport(scheme)
        self.mlps = torch.nn.ModuleList()
        for _ in range(count):
            mlp = Qwen2MLP(config).to(torch.bfloat16).eval()
            for name in ("gate_proj", "up_proj", "down_proj"):
                linear = getattr(mlp, name)
                with torch.no_grad():
                    linear.weight.normal_(0.0, 0.02, generator=generator)
                setattr(mlp, name, W8A8Linear(linear) if scheme == "w8a8" else
                        quantize_linear(linear, scheme, torch.device("cpu"), report))
            self.mlps.append(mlp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for mlp in self.mlps:
            x = x + mlp(x)
        return x


def _median_ms(fn, x: torch.Tensor, reps: int) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - started)
    return float(np.median(times)) * 1e3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--mlps", type=int, default=8, help="distinct MLPs in the stack")
    parser.add_argument("--rows", default="1,13,39", help="row counts (M) to time")
    parser.add_argument("--schemes", default="none,int8,int4,w8a8",
                        help="w8a8: int8 x int8 (not a package option; see W8A8Linear)")
    parser.add_argument("--no-compile", action="store_true", help="eager kernels only")
    parser.add_argument("--rounds", type=int, default=5, help="round-robin rounds")
    parser.add_argument("--reps", type=int, default=3, help="calls per variant per round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    return parser.parse_args(argv)


@torch.inference_mode()
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    context = machine_context()
    generator = torch.Generator().manual_seed(0)
    rows = [int(r) for r in args.rows.split(",")]
    variants: dict[str, object] = {}
    compile_s: dict[str, float] = {}
    for scheme in args.schemes.split(","):
        stack = MLPStack(args.mlps, scheme, generator)
        label = "bf16" if scheme == "none" else scheme
        variants[f"{label} eager"] = stack
        if not args.no_compile:  # each MLP a unit, as core/compilation.py compiles the LM
            compiled = MLPStack(args.mlps, scheme, generator)
            compiled.mlps = torch.nn.ModuleList(CompiledUnit(mlp) for mlp in compiled.mlps)
            started = time.perf_counter()
            with compiling(args.mlps):
                compiled(torch.zeros(13, HIDDEN, dtype=torch.bfloat16))
            compile_s[f"{label} compiled"] = round(time.perf_counter() - started, 1)
            variants[f"{label} compiled"] = compiled
    inputs = {m: torch.randn(m, HIDDEN, dtype=torch.bfloat16, generator=generator)
              for m in rows}
    samples: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for m in rows:
            for name, fn in variants.items():
                samples.setdefault((name, m), []).append(
                    _median_ms(fn, inputs[m], args.reps) / args.mlps)
    table = {}
    for (name, m), values in samples.items():
        base = np.median(samples[("bf16 eager", m)])
        table.setdefault(name, {})[str(m)] = {
            "ms_per_mlp": round(float(np.median(values)), 3),
            "speedup_vs_bf16_eager": round(float(base / np.median(values)), 2),
            "bf16_equivalent_gb_s": round(3 * HIDDEN * INTERMEDIATE * 2
                                          / (float(np.median(values)) * 1e-3) / 1e9, 1)}
    report = {"machine": context, "args": {k: str(v) for k, v in vars(args).items()},
              "compile_s": compile_s, "table": table,
              "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    print(f"{'variant':<16}" + "".join(f"{'M=' + str(m):>22}" for m in rows))
    for name, by_rows in table.items():
        cells = [by_rows[str(m)] for m in rows]
        print(f"{name:<16}" + "".join(f"{c['ms_per_mlp']:>11.2f} ms x"
                                      f"{c['speedup_vs_bf16_eager']:<6.2f}" for c in cells))
    print(f"compile seconds: {compile_s}; load before {context['loadavg_1_5_15']}, after "
          f"{report['loadavg_after']}")
    write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
