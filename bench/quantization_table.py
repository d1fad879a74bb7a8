"""Markdown tables of the quantization results in bench/results (what README.md shows).

Run: ``python bench/quantization_table.py``.
"""
from __future__ import annotations

import json
from pathlib import Path

from common import RESULTS

SCHEMES = ("none", "int8", "int4")
REFERENCE_LISTEN_MS = 349.0  # the authors' step, context 100 (issue 10, same kind of machine)
REFERENCE_TOKEN_MS = 327.0


def _load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def steps() -> list[str]:
    rows = ["| quantization, compile | weights | RSS | encoder | LM listen (stream) | LM listen, "
            "ctx 100 / 1000 | decision p50 / p95 | reply token, ctx 100 | load avg |",
            "|---|---|---|---|---|---|---|---|---|"]
    for scheme in SCHEMES:
        for compiled in ("false", "true"):
            run = _load(f"step_latency_real_cpu_bfloat16_{scheme}_compile_{compiled}.json")
            if run is None:
                continue
            stream, ctx = run["stream"], {c["context_tokens"]: c for c in run["contexts"]}
            listen = [ctx[c]["lm_listen"]["p50_ms"] for c in (100, 1000) if c in ctx]
            token = ctx[100]["reply_token"]["p50_ms"] if 100 in ctx else float("nan")
            rows.append(
                f"| {scheme}, compile {compiled} | {run['model']['weight_bytes'] / 1e9:.2f} GB | "
                f"{run['memory_mb']['end']['VmRSS'] / 1024:.1f} GB | "
                f"{stream['encoder']['p50_ms']:.0f} ms | {stream['lm_listen']['p50_ms']:.0f} ms | "
                f"{' / '.join(f'{x:.0f}' for x in listen)} ms "
                f"(x{REFERENCE_LISTEN_MS / listen[0]:.2f}) | "
                f"{stream['decision']['p50_ms']:.0f} / {stream['decision']['p95_ms']:.0f} ms | "
                f"{token:.0f} ms (x{REFERENCE_TOKEN_MS / token:.2f}) | "
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
        rows += ["| model | scheme | chunks | decisions agreeing | |d log-odds| median / p95 / "
                 "max | identical replies |", "|---|---|---|---|---|---|"]
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
                 "| logits error median / max | top-1 token agreement | listen |d log-odds| "
                 "median |", "|---|---|---|---|---|"]
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
    rows = ["| loading as | weights kept | peak RssAnon | peak VmHWM (incl. mapped shards) | "
            "load time |", "|---|---|---|---|---|"]
    for load in run["loads"]:
        rows.append(f"| {load['scheme']} | {load['weight_mb'] / 1024:.2f} GB | "
                    f"{load['peak_mb']['RssAnon'] / 1024:.2f} GB | "
                    f"{load['peak_mb']['VmHWM'] / 1024:.2f} GB | {load['load_s']:.0f} s |")
    return rows


if __name__ == "__main__":
    for title, lines in (("step", steps()), ("kernels", kernels()), ("quality", quality()),
                         ("memory", memory())):
        print(f"\n{title}\n" + "\n".join(lines))
    print(f"\n(from {Path(RESULTS)})")
