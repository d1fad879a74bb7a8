"""Per-chunk cost of N rows batched into one step vs the same rows one after another.

Why: issue 9's claim is that a step reads every weight once whatever it carries, so N sessions
(of one stream: an assistant, a transcriber, a sound reporter) or N streams (a fleet of robots)
should cost little more than one. This measures it with the engine's own pieces:

- ``sessions`` (N sessions of one stream): one streaming log-mel and one audio-tower call for
  the chunk, then the N sessions' 13-token listen rows;
- ``streams`` (N streams of one session each): N log-mels, their N chunks in ONE audio-tower
  call (``encode_mels``), then the N listen rows;

each ``batched`` (one ``model.forward`` for the N rows, as the engine's tick) and ``sequential``
(N one-row forwards, and for streams N encoder calls: the engine before batching). Rows have
different context lengths (``context + 37 i`` tokens, KV caches of random keys/values: cost
depends on length, not values; rewound after each repetition) and compute only the two decision
logits, as the session does. ``reply``: N rows of one reply token (whole vocabulary) batched vs
sequential. Figures are medians (p50) and p95 over repetitions, in ms per chunk, with the load
average beside them; every variant is timed once per round, round robin (see ``measure``).

    .venv/bin/python bench/batch_step.py --dtype float32 --threads 2 --reps 30 --warmup 5 \
        --json bench/results/batch_step_fixture_cpu_float32.json
    flock /tmp/heavy.lock .venv/bin/python bench/batch_step.py --model real --dtype bfloat16 \
        --threads 2 --reps 9 --json bench/results/batch_step_real_cpu_bfloat16.json
    .venv/bin/python bench/batch_step.py --plot bench/results/batch_step.png \
        bench/results/batch_step_*.json            # the picture and the README table
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from common import (add_model_args, load_model, machine_context, percentiles_ms, random_cache,
                    sync, write_report)
from audio_interaction_ros.core.features import StreamingFrontEnd
from audio_interaction_ros.core.model import AudioInteractionModel
from audio_interaction_ros.core.pipeline import encode_mels
from audio_interaction_ros.core.protocol import (AUDIO_SLOT_OFFSET, AUDIO_TOKENS_PER_CHUNK,
                                                 CHUNK_SAMPLES, KEEP_SILENCE, LISTEN_BLOCK_IDS,
                                                 TEXT_BEGIN)
from audio_interaction_ros.core.rows import KVCache, Row

LISTEN_IDS = [KEEP_SILENCE, *LISTEN_BLOCK_IDS]  # last sampled token + one listening block
PAIR = (KEEP_SILENCE, TEXT_BEGIN)
NS = (1, 2, 3, 4, 8)
CONTEXT_STEP = 37  # row i holds context + 37 i tokens: every row a different length


def listen_row(model: AudioInteractionModel, cache: KVCache, audio: torch.Tensor) -> Row:
    """Return a session's listen row: the block with the chunk's encoder rows over its PADs."""
    embeds = model.embed(LISTEN_IDS)
    start = 1 + AUDIO_SLOT_OFFSET
    embeds[start:start + AUDIO_TOKENS_PER_CHUNK] = audio
    return Row(embeds, cache, torch.arange(cache.length, cache.length + len(LISTEN_IDS),
                                           device=model.device), PAIR)


def chunk_cost(model: AudioInteractionModel, caches: list[KVCache], fronts: list,
               audio: np.ndarray, layout: str, batched: bool) -> float:
    """Seconds for one chunk of every row, the way ``layout``/``batched`` says."""
    sync(model.device)
    started = time.perf_counter()
    if layout == "sessions":
        rows = encode_mels(model, [fronts[0].push(audio)])
        inputs = [listen_row(model, cache, rows[0]) for cache in caches]
        if batched:
            model.forward(inputs)
        else:
            for row in inputs:
                model.forward([row])
    elif batched:
        rows = encode_mels(model, [front.push(audio) for front in fronts])
        model.forward([listen_row(model, c, r) for c, r in zip(caches, rows)])
    else:
        for cache, front in zip(caches, fronts):
            rows = encode_mels(model, [front.push(audio)])
            model.forward([listen_row(model, cache, rows[0])])
    sync(model.device)
    return time.perf_counter() - started


def reply_cost(model: AudioInteractionModel, caches: list[KVCache], batched: bool) -> float:
    """Seconds for one reply token of every row (whole vocabulary)."""
    rows = [Row(model.embed([TEXT_BEGIN]), c, torch.tensor([c.length], device=model.device))
            for c in caches]
    sync(model.device)
    started = time.perf_counter()
    if batched:
        model.forward(rows)
    else:
        for row in rows:
            model.forward([row])
    sync(model.device)
    return time.perf_counter() - started


def _figures(seconds: list[float]) -> dict:
    """p50/p95 and the minimum (the least disturbed repetition on a shared machine), in ms."""
    return {**percentiles_ms(seconds), "min_ms": round(min(seconds) * 1e3, 3)}


def _rewound(fn, caches: list[KVCache]) -> float:
    lengths = [c.length for c in caches]
    try:
        return fn()
    finally:
        for cache, length in zip(caches, lengths):
            cache.truncate(length)


@torch.inference_mode()
def measure(model: AudioInteractionModel, context: int, reps: int, warmup: int,
            seed: int) -> dict:
    """Time every variant (layout, N, batched or not; reply tokens) once per round, round robin.

    Interleaved, so that a shared machine's slow minutes hit every variant alike: timed one
    after the other, a block of N=1 repetitions taken in a quiet minute and a block of N=3 in a
    busy one moved the ratio by 0.3.
    """
    generator = torch.Generator().manual_seed(seed)
    caches = [random_cache(model, context + CONTEXT_STEP * i, generator=generator)
              for i in range(max(NS))]
    fronts = [StreamingFrontEnd() for _ in range(max(NS))]
    audio = (np.random.default_rng(seed).standard_normal(CHUNK_SAMPLES) * 0.1).astype(np.float32)
    variants = {}
    for n in NS:
        for batched in (True, False):
            kind = "batched" if batched else "sequential"
            for layout in ("sessions", "streams"):
                variants[("chunk", layout, n, kind)] = (
                    lambda n=n, layout=layout, batched=batched: chunk_cost(
                        model, caches[:n], fronts[:n], audio, layout, batched))
            variants[("reply", None, n, kind)] = (
                lambda n=n, batched=batched: reply_cost(model, caches[:n], batched))
    times: dict[tuple, list[float]] = {key: [] for key in variants}
    for round_ in range(warmup + reps):
        for key, cost in variants.items():
            seconds = _rewound(cost, caches[:key[2]])
            if round_ >= warmup:
                times[key].append(seconds)
    out: dict = {"context": context, "reps": reps, "interleaved": True, "chunk": {}, "reply": {}}
    for (what, layout, n, kind), seconds in times.items():
        target = out["chunk"].setdefault(layout, {}) if what == "chunk" else out["reply"]
        target.setdefault(str(n), {})[kind] = _figures(seconds)
    for layout, by_n in out["chunk"].items():
        for n, figures in by_n.items():
            print(f"context {context} {layout:<8} N={n}: batched "
                  f"{figures['batched']['p50_ms']:.1f} ms, sequential "
                  f"{figures['sequential']['p50_ms']:.1f} ms", flush=True)
    return out


def ratios(result: dict) -> dict:
    """p50 per chunk of N rows / p50 of one row batched (the one-session cost)."""
    table = {}
    for layout, by_n in result["chunk"].items():
        one = by_n["1"]["batched"]["p50_ms"]
        table[layout] = {n: {kind: round(v["p50_ms"] / one, 2) for kind, v in figs.items()}
                         for n, figs in by_n.items()}
    one = result["reply"]["1"]["batched"]["p50_ms"]
    table["reply"] = {n: {kind: round(v["p50_ms"] / one, 2) for kind, v in figs.items()}
                      for n, figs in result["reply"].items()}
    return table


def _ms(value: float) -> str:
    return f"{value:.0f} ms" if value >= 100 else f"{value:.1f} ms"


def markdown(reports: list[dict]) -> str:
    """Return the README table.

    Per-chunk p50 (ms) and the ratio to one session, batched vs one after another, for every
    report and context.
    """
    lines = ["| model, dtype, threads | context | rows | N=1 | N=2 | N=3 | N=4 | N=8 | load |",
             "|---|---|---|---|---|---|---|---|---|"]
    for report in reports:
        what = f"{report['model']}, {report['dtype']}, {report['machine']['torch_threads']}"
        load = f"{report['machine']['loadavg_1_5_15'][0]} / {report['loadavg_after'][0]}"
        for result in report["results"]:
            table = ratios(result)
            for layout in ("sessions", "streams", "reply"):
                source = result["reply"] if layout == "reply" else result["chunk"][layout]
                for kind in ("batched", "sequential"):
                    cells = [f"{_ms(source[str(n)][kind]['p50_ms'])} "
                             f"(×{table[layout][str(n)][kind]:.2f})" for n in NS]
                    lines.append(f"| {what} | {result['context']} | {layout}, {kind} | "
                                 + " | ".join(cells) + f" | {load} |")
    return "\n".join(lines)


def plot(reports: list[dict], out: Path) -> None:
    """Per-chunk p50 against N, one panel per report and context."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(r, res) for r in reports for res in r["results"]]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4), squeeze=False)
    for axis, (report, result) in zip(axes[0], panels):
        one = result["chunk"]["sessions"]["1"]["batched"]["p50_ms"]
        for layout, colour in (("sessions", "tab:blue"), ("streams", "tab:orange")):
            base = result["chunk"][layout]["1"]["batched"]["p50_ms"]
            for kind, style in (("batched", "-o"), ("sequential", ":x")):
                axis.plot(NS, [result["chunk"][layout][str(n)][kind]["p50_ms"] / base
                               for n in NS], style, color=colour, label=f"{layout}, {kind}")
        axis.plot(NS, [1.5 if n == 3 else np.nan for n in NS], "k_", ms=14)
        axis.plot(NS, [3.0 if n == 8 else np.nan for n in NS], "k_", ms=14,
                  label="target (3: ×1.5, 8: ×3)")
        axis.set_title(f"{report['model']} {report['dtype']}, context {result['context']}\n"
                       f"one session: {one:.0f} ms/chunk", fontsize=9)
        axis.set_xlabel("rows per chunk (N)")
        axis.set_ylabel("cost per chunk / one row (N=1)")
        axis.set_xticks(NS)
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_args(parser)
    parser.add_argument("--contexts", default="1000,3000",
                        help="context of the shortest row (comma-separated)")
    parser.add_argument("--plot", type=Path, help="plot these JSON files (positional) instead")
    parser.add_argument("files", nargs="*", type=Path)
    args = parser.parse_args(argv)
    if args.plot:
        reports = [json.loads(f.read_text()) for f in args.files]
        plot(reports, args.plot)
        print(markdown(reports))
        return None
    if args.threads:
        torch.set_num_threads(args.threads)
    context = machine_context()
    model = load_model(args.model, args.device, args.dtype, seed=args.seed)
    results = [measure(model, int(c), args.reps, args.warmup, args.seed)
               for c in args.contexts.split(",")]
    report = write_report(args.json, args.model, model, context,
                          {"results": results, "ratios": [ratios(r) for r in results]})
    print(markdown([report]))
    return report


if __name__ == "__main__":
    main()
