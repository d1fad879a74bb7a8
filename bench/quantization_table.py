"""Markdown tables of the quantization results in bench/results (what README.md shows).

Run: ``python bench/quantization_table.py``.
"""
from __future__ import annotations

import json
from pathlib import Path

from common import RESULTS

SCHEMES = ("none", "int8", "int4")
BASELINE = "step_latency_real_cpu_bfloat16_none_compile_false.json"  # eager bf16: the package's
# step before quantization and compilation; with the whole LM head it measured x1.00 against the
# authors' own step, and its reference_listen adds that head back (bench/step_latency.py)


def _gb(mib: float) -> str:
    """/proc and the benchmarks count MiB; the README's sizes are GB (1e9 bytes)."""
    return f"{mib * 2**20 / 1e9:.2f} GB"


def _load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def steps() -> list[str]:
    base = _load(BASELINE)
    if base is None:
        return []
    base_ctx = {c["context_tokens"]: c for c in base["contexts"]}
    base_listen, base_token = (base_ctx[100][k]["p50_ms"] for k in ("lm_listen", "reply_token"))
    # the authors' step: the eager step plus the full LM head on all 13 positions (step_latency)
    reference = {c: row["reference_listen"]["p50_ms"] for c, row in base_ctx.items()
                 if "reference_listen" in row}
    rows = ["| quantization, compile | weights | RSS | encoder | LM listen (stream) | LM listen, "
            "ctx 100 / 1000 | ÷ reference's work, ctx 100 / 1000 | decision p50 / p95 | "
            "reply token, ctx 100 | load avg |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for scheme in SCHEMES:
        for compiled in ("false", "true"):
            run = _load(f"step_latency_real_cpu_bfloat16_{scheme}_compile_{compiled}.json")
            if run is None:
                continue
            stream, ctx = run["stream"], {c["context_tokens"]: c for c in run["contexts"]}
            listen = [ctx[c]["lm_listen"]["p50_ms"] for c in (100, 1000) if c in ctx]
            versus = " / ".join(f"x{reference[c] / ctx[c]['lm_listen']['p50_ms']:.2f}"
                                for c in (100, 1000) if c in ctx and c in reference) or "-"
            token = ctx[100]["reply_token"]["p50_ms"] if 100 in ctx else float("nan")
            rows.append(
                f"| {scheme}, compile {compiled} | {run['model']['weight_bytes'] / 1e9:.2f} GB | "
                f"{_gb(run['memory_mb']['end']['VmRSS'])} | "
                f"{stream['encoder']['p50_ms']:.0f} ms | {stream['lm_listen']['p50_ms']:.0f} ms | "
                f"{' / '.join(f'{x:.0f}' for x in listen)} ms "
                f"(x{base_listen / listen[0]:.2f}) | {versus} | "
                f"{stream['decision']['p50_ms']:.0f} / {stream['decision']['p95_ms']:.0f} ms | "
                f"{token:.0f} ms (x{base_token / token:.2f}) | "
                f"{run['machine']['loadavg_1_5_15'][0]:.1f} -> {run['loadavg_after'][0]:.1f} |")
    return rows


def kernels() -> list[str]:
    run = _load("linear_kernels_cpu.json")
    if run is None:
        return []
    table = run["table"]
    counts = list(next(iter(table.values())))
    rows = ["| storage | " + " | ".join(f"M = {m}" for m in counts) + " |",
            "|---|" + "---|" * len(counts)]
    for name, by_rows in table.items():
        rows.append(f"| {name} | " + " | ".join(
            f"{by_rows[m]['ms_per_mlp']:.1f} ms (x{by_rows[m]['speedup_vs_bf16_eager']:.2f})"
            for m in counts) + " |")
    return rows


def quality() -> list[str]:
    rows = []
    trained = _load("quantization_quality_trained.json")
    if trained:
        rows += ["| model | scheme | chunks | decisions agreeing | log-odds deviation median / "
                 "p95 / max | identical replies |", "|---|---|---|---|---|---|"]
        for model, schemes in trained["models"].items():
            for scheme, row in schemes.items():
                dev = row["log_odds_deviation"]
                rows.append(f"| {model} | {scheme} | {row['chunks']} | "
                            f"{row['decision_agreement'] * 100:.2f} % | {dev['median']} / "
                            f"{dev['p95']} / {dev['max']} | "
                            f"{row['clips_with_identical_replies']} |")
    realdim = _load("quantization_quality_realdim.json")
    if realdim:
        rows += ["", "| real dimensions, random weights | one MLP's output error median / max "
                 "| logits error median / max | top-1 token agreement | listen log-odds "
                 "deviation median |", "|---|---|---|---|---|"]
        for scheme, row in realdim["schemes"].items():
            err, mlp = row["relative_logits_error"], row.get("relative_mlp_output_error", {})
            rows.append(f"| {scheme} | {mlp.get('median')} / {mlp.get('max')} | "
                        f"{err['median']} / {err['max']} | "
                        f"{row['top1_agreement'] * 100:.0f} % | "
                        f"{row['listen_log_odds_deviation']['median']} |")
    return rows


def memory() -> list[str]:
    run = _load("load_memory_real.json")
    if run is None:
        return []
    rows = ["| loading as | weights kept | peak RssAnon | RssAnon after | peak VmHWM (incl. "
            "mapped shards) | load time |", "|---|---|---|---|---|---|"]
    for load in run["loads"]:
        rows.append(f"| {load['scheme']} | {_gb(load['weight_mb'])} | "
                    f"{_gb(load['peak_mb']['RssAnon'])} | {_gb(load['after_load_mb']['RssAnon'])} "
                    f"| {_gb(load['peak_mb']['VmHWM'])} | {load['load_s']:.0f} s |")
    return rows


if __name__ == "__main__":
    for title, lines in (("step", steps()), ("kernels", kernels()), ("quality", quality()),
                         ("memory", memory())):
        print(f"\n{title}\n" + "\n".join(lines))
    print(f"\n(from {Path(RESULTS)})")
