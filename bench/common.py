"""Shared helpers of the benchmarks: paths, model choice, machine context and percentiles.

The benchmarks run from a source checkout (``python bench/<name>.py``) without installing the
package, so the repository root is put on ``sys.path`` here, once. Every figure a benchmark
writes carries the machine context beside it (load average, cores, threads, memory): on a shared
2-core machine a number without the load it was measured under cannot be compared with anything.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402  (after the path set-up, like the core imports below)

from audio_interaction_ros.core.model import AudioInteractionModel  # noqa: E402

SHARED = Path(os.environ.get("AUDIO_INTERACTION_SHARED", REPO.parent / "shared"))
FIXTURE_CKPT = SHARED / "fixtures" / "tiny-beep" / "ckpt"
FIXTURE_INPUTS = SHARED / "fixtures" / "tiny-beep" / "golden" / "inputs"
AUDIO_DIR = SHARED / "audio"
TOY_CKPT = REPO / "build" / "toy-model"
RESULTS = REPO / "bench" / "results"


def load_model(spec: str, device: str = "cpu", dtype: str = "float32", seed: int = 0,
               quantization: str = "none", compile: str = "false") -> AudioInteractionModel:
    """Load a benchmark model, quantized as ``quantization`` says, compiled as ``compile``.

    ``fixture`` (the tiny trained checkpoint), ``toy`` (build/toy-model), ``real`` (random weights
    at the published 3B dimensions, see realdim.py) or a checkpoint directory in the release
    layout.
    """
    if spec == "real":
        from realdim import build_random_real_model

        return build_random_real_model(device=device, dtype=dtype, seed=seed,
                                       quantization=quantization, compile=compile)
    path = {"fixture": FIXTURE_CKPT, "toy": TOY_CKPT}.get(spec, spec)
    return AudioInteractionModel.load(path, device=device, dtype=dtype,
                                      local_files_only=spec in ("fixture", "toy"),
                                      quantization=quantization, compile=compile)


def random_cache(model: AudioInteractionModel, length: int, headroom: int = 64,
                 generator: torch.Generator | None = None):
    """Return a session KV cache holding ``length`` positions of random keys/values.

    A forward's cost depends on the length, not on the values. There is room for ``headroom`` more.
    """
    cache = model.new_cache()
    cache.reserve(length + headroom)
    shape = (1, cache.kv_heads, length, cache.head_dim)
    for layer in range(cache.n_layers):
        keys = torch.randn(shape, generator=generator).to(model.device, model.dtype)
        values = torch.randn(shape, generator=generator).to(model.device, model.dtype)
        cache.write(layer, keys, values)
    cache.advance(length)
    return cache


def add_model_args(parser) -> None:
    """Add the options every model benchmark takes: which model, where, threads, output."""
    parser.add_argument("--model", default="fixture", help="fixture | real | checkpoint dir")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    parser.add_argument("--dtype", default="auto", help="float32 | bfloat16 | float16 | auto")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions")
    parser.add_argument("--warmup", type=int, default=1, help="untimed repetitions first")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the figures here")


def write_report(path: Path | None, spec: str, model: AudioInteractionModel, context: dict,
                 figures: dict) -> dict:
    """``figures`` with what was measured and how busy the machine was before and after.

    Written as JSON to ``path`` when given.
    """
    report = {"machine": context, "model": spec, "device": str(model.device),
              "dtype": str(model.dtype).removeprefix("torch."), **figures,
              "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1) + "\n")
    return report


def sync(device: torch.device) -> None:
    """Wait for queued GPU work so that a wall-clock interval covers it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rss_mb(key: str = "VmRSS") -> float:
    """Return a memory figure of this process from /proc/self/status, in MB.

    ``VmRSS`` (resident, what the soak watches for leaks), ``VmHWM`` (its peak so far), ``RssAnon``
    (resident without file-backed pages such as memory-mapped checkpoint shards, which the kernel
    can drop).
    """
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _meminfo_mb(key: str) -> float:
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def available_memory_mb() -> float:
    """Return the machine's MemAvailable (other processes included)."""
    return _meminfo_mb("MemAvailable")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_context() -> dict:
    """Return what a reader needs to judge a timing: where, with what, how busy the machine was."""
    import transformers

    context = {
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "mem_total_mb": round(_meminfo_mb("MemTotal")),
        "mem_available_mb": round(available_memory_mb()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": None,
    }
    if torch.cuda.is_available():
        context["cuda"] = {"device": torch.cuda.get_device_name(0),
                           "runtime": torch.version.cuda}
    return context


def percentiles_ms(seconds: list[float] | np.ndarray, qs: tuple[int, ...] = (50, 95)) -> dict:
    """``{"p50_ms": .., "p95_ms": ..}`` of durations given in seconds (NaN when empty)."""
    values = np.asarray(seconds, dtype=np.float64) * 1e3
    return {f"p{q}_ms": (round(float(np.percentile(values, q)), 3) if values.size else
                         float("nan")) for q in qs}


def write_json(path: Path | None, report: dict) -> None:
    """Write a benchmark's figures (with their machine context) to ``path``, if one was given."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
