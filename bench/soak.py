"""The 24-hour-equivalent soak: a day of mixed audio through the Engine at full speed.

Why: the node is meant to run for days (ARCHITECTURE.md §3.4: bounded context, flat per-chunk
cost and memory). A real-time day is too long to wait for, so 216,000 chunks (24 h of audio) are
pushed as fast as the model takes them, in one thread (push a chunk or a random-sized piece, then
``process_pending()``): deterministic for a given seed, no scheduling noise from threads. Every
``--every`` chunks a CSV row records memory, latency percentiles of the window, replies, context
rebuilds, context length, backlog and dropped audio; at the end a PNG and a summary are written.

Targets it reports against: RSS growth after warm-up <= 50 MB, p99 decision latency drift
(last hour vs first hour) <= 10 %, no audio lost. Latency is wall-clock on a shared machine, so
each row also carries the 1-minute load average: read a drift next to the load it came with.
"""
from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

from common import RESULTS, load_model, machine_context, rss_mb
from mixed_audio import MixedAudio, default_clip_paths, load_clips
from audio_interaction_ros.core.engine import Engine, EngineConfig
from audio_interaction_ros.core.events import (AudioDropped, ContextRebuilt, EngineError,
                                               ReplyDone)
from audio_interaction_ros.core.protocol import CHUNK_SAMPLES, CHUNK_SECONDS
from audio_interaction_ros.core.sampling import SamplingConfig
from audio_interaction_ros.core.session import ListenSession, SessionConfig

CHUNKS_PER_HOUR = int(3600 / CHUNK_SECONDS)  # 9000
TARGET_RSS_GROWTH_MB = 50.0
TARGET_P99_DRIFT_PCT = 10.0
FIELDS = ["chunk", "audio_h", "wall_s", "rss_mb", "py_objects", "decision_p50_ms",
          "decision_p95_ms", "decision_p99_ms", "listen_p99_ms", "encoder_p99_ms", "replies",
          "rebuilds", "context_tokens", "backlog_s", "dropped_s", "errors", "loadavg1"]


class Counters:
    """The engine's events, counted (never stored: a day of events would itself be a leak)."""

    def __init__(self) -> None:
        self.replies = 0
        self.rebuilds = 0
        self.dropped_samples = 0
        self.errors = 0
        self.last_error = ""

    def __call__(self, event) -> None:
        if isinstance(event, ReplyDone):
            self.replies += 1
        elif isinstance(event, ContextRebuilt):
            self.rebuilds += 1
        elif isinstance(event, AudioDropped):
            self.dropped_samples += event.samples
        elif isinstance(event, EngineError):
            self.errors += 1
            self.last_error = event.message


def p(values, q: float) -> float:
    """Percentile in ms of durations in seconds (NaN when empty)."""
    return round(float(np.percentile(values, q)) * 1e3, 3) if len(values) else float("nan")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--chunks", type=int, default=24 * CHUNKS_PER_HOUR,
                        help="chunks to process (9000 = one hour of audio)")
    parser.add_argument("--every", type=int, default=1000, help="chunks per CSV row")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for CSV/PNG/JSON")
    parser.add_argument("--name", default="soak", help="file name stem of the outputs")
    parser.add_argument("--model", default="fixture", help="fixture | real | checkpoint dir")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--pieces", choices=["chunk", "random"], default="random",
                        help="push exactly one chunk, or random-sized pieces (0.05-2 chunks)")
    parser.add_argument("--max-backlog-s", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0 = torch's default). On a shared machine 1 "
                        "avoids OpenMP threads stalling at barriers when a core is taken")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def summarise(rows: list[dict], first: list[float], last: deque, warm_chunks: int,
              counters: Counters, mix: MixedAudio, engine: Engine) -> dict:
    """Growth, drift and loss against the targets, from the rows and the latency windows."""
    after_warm = [r for r in rows if r["chunk"] >= warm_chunks] or rows[-1:]
    base = after_warm[0]["rss_mb"]
    growth = rows[-1]["rss_mb"] - base
    peak_growth = max(r["rss_mb"] for r in after_warm) - base
    p99_first, p99_last = p(first, 99), p(list(last), 99)
    drift = (p99_last - p99_first) / p99_first * 100.0 if p99_first else float("nan")
    stats = engine.stats()
    lost_s = sum(stats.dropped_s.values())
    return {
        "chunks": rows[-1]["chunk"], "audio_hours": rows[-1]["audio_h"],
        "wall_s": rows[-1]["wall_s"], "warmup_chunks": warm_chunks,
        "rss_mb_at_warmup_end": base, "rss_mb_end": rows[-1]["rss_mb"],
        "rss_growth_mb": round(growth, 1), "rss_peak_growth_mb": round(peak_growth, 1),
        "rss_ok": peak_growth <= TARGET_RSS_GROWTH_MB,
        "decision_p99_first_ms": p99_first, "decision_p99_last_ms": p99_last,
        "decision_p50_first_ms": p(first, 50), "decision_p50_last_ms": p(list(last), 50),
        "p99_drift_pct": round(drift, 1), "p99_ok": drift <= TARGET_P99_DRIFT_PCT,
        "loadavg1_first_window": round(float(np.mean(
            [r["loadavg1"] for r in rows if r["chunk"] <= warm_chunks]
            or [rows[0]["loadavg1"]])), 2),
        "loadavg1_last_window": round(float(np.mean(
            [r["loadavg1"] for r in rows if r["chunk"] > rows[-1]["chunk"] - warm_chunks])), 2),
        "lost_audio_s": lost_s, "dropped_by_reason_s": stats.dropped_s,
        "lost_ok": lost_s == 0 and counters.errors == 0,
        "replies": counters.replies, "rebuilds": counters.rebuilds, "errors": counters.errors,
        "last_error": counters.last_error,
        "mix_seconds": {k: round(v, 1) for k, v in sorted(mix.seconds_by_kind.items())},
    }


def run(args: argparse.Namespace) -> dict:
    """Run the soak loop; write ``<name>.csv`` as it goes, then ``<name>.png`` and ``.json``."""
    args.out.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    context = machine_context()
    model = load_model(args.model, args.device, args.dtype, seed=args.seed)
    counters = Counters()
    session = ListenSession(model, SessionConfig(sampling=SamplingConfig(seed=args.seed)))
    engine = Engine(model, [session], EngineConfig(max_backlog_s=args.max_backlog_s),
                    emit=counters)
    mix = MixedAudio(load_clips(default_clip_paths()), seed=args.seed)
    piece_rng = np.random.default_rng(args.seed + 1)
    warm_chunks = min(CHUNKS_PER_HOUR, max(1, args.chunks // 4))
    first: list[float] = []  # decision latencies of the warm-up window (the "first hour")
    last: deque[float] = deque(maxlen=warm_chunks)  # ... and of the most recent window
    window, listen_w, encoder_w = [], [], []
    rows: list[dict] = []
    csv_path = args.out / f"{args.name}.csv"
    started = time.perf_counter()
    done = 0
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        while done < args.chunks:
            size = CHUNK_SAMPLES if args.pieces == "chunk" else \
                int(piece_rng.integers(CHUNK_SAMPLES // 20, 2 * CHUNK_SAMPLES))
            engine.push(mix.read(size))
            errors = counters.errors
            new = engine.process_pending(max_chunks=args.chunks - done)
            new -= counters.errors - errors  # a failed step leaves no timing (it is counted)
            if new <= 0:
                continue
            timings = engine.recent_timings()[-new:]
            for timing in timings:
                done += 1
                window.append(timing.decision_s)
                listen_w.append(timing.listen_s)
                encoder_w.append(timing.encoder_s)
                (first if done <= warm_chunks else last).append(timing.decision_s)
                if done % args.every == 0 or done == args.chunks:
                    row = {
                        "chunk": done, "audio_h": round(done * CHUNK_SECONDS / 3600, 4),
                        "wall_s": round(time.perf_counter() - started, 1),
                        "rss_mb": round(rss_mb(), 1), "py_objects": len(gc.get_objects()),
                        "decision_p50_ms": p(window, 50), "decision_p95_ms": p(window, 95),
                        "decision_p99_ms": p(window, 99), "listen_p99_ms": p(listen_w, 99),
                        "encoder_p99_ms": p(encoder_w, 99), "replies": counters.replies,
                        "rebuilds": session.rebuilds, "context_tokens": session.context_tokens,
                        "backlog_s": round(engine.backlog_s, 3),
                        "dropped_s": round(counters.dropped_samples / 16000, 3),
                        "errors": counters.errors, "loadavg1": round(os.getloadavg()[0], 2),
                    }
                    writer.writerow(row)
                    handle.flush()
                    rows.append(row)
                    window, listen_w, encoder_w = [], [], []
                    print(f"[soak] {done}/{args.chunks} chunks, {row['audio_h']:.2f} h audio, "
                          f"{row['wall_s']:.0f} s wall, RSS {row['rss_mb']:.1f} MB, p99 "
                          f"{row['decision_p99_ms']:.2f} ms, replies {row['replies']}, rebuilds "
                          f"{row['rebuilds']}, ctx {row['context_tokens']}, load "
                          f"{row['loadavg1']}", flush=True)
    if not last:  # a run shorter than two windows: compare with the first window itself
        last.extend(first)
    summary = summarise(rows, first, last, warm_chunks, counters, mix, engine)
    report = {"machine": context, "machine_end_loadavg": [round(x, 2) for x in os.getloadavg()],
              "model": {"spec": args.model, "device": str(model.device),
                        "dtype": str(model.dtype).removeprefix("torch.")},
              "args": {k: str(v) for k, v in vars(args).items()}, "summary": summary}
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=1) + "\n")
    from soak_plot import plot

    plot(rows, args.out / f"{args.name}.png", title=f"soak: {args.model} {args.dtype} on "
         f"{args.device}, {summary['audio_hours']:.1f} h of audio",
         warmup_h=warm_chunks * CHUNK_SECONDS / 3600, rss_budget_mb=TARGET_RSS_GROWTH_MB)
    return report


def print_summary(report: dict) -> None:
    """Print the verdict lines, one per target."""
    s = report["summary"]
    mark = {True: "OK", False: "MISSED"}
    print(f"\nsoak: {s['chunks']} chunks = {s['audio_hours']:.2f} h of audio in "
          f"{s['wall_s']:.0f} s "
          f"({s['audio_hours'] * 3600 / max(s['wall_s'], 1e-9):.0f}x real time)")
    print(f"RSS after warm-up ({s['warmup_chunks']} chunks) {s['rss_mb_at_warmup_end']:.1f} MB, "
          f"end {s['rss_mb_end']:.1f} MB: growth {s['rss_growth_mb']:+.1f} MB, peak "
          f"{s['rss_peak_growth_mb']:+.1f} MB (target <= {TARGET_RSS_GROWTH_MB:.0f}) "
          f"{mark[s['rss_ok']]}")
    print(f"decision p99 first window {s['decision_p99_first_ms']:.2f} ms, last window "
          f"{s['decision_p99_last_ms']:.2f} ms: drift {s['p99_drift_pct']:+.1f} % (target <= "
          f"{TARGET_P99_DRIFT_PCT:.0f}) {mark[s['p99_ok']]}; load avg "
          f"{s['loadavg1_first_window']} vs {s['loadavg1_last_window']}")
    print(f"lost audio {s['lost_audio_s']:.1f} s, errors {s['errors']} {mark[s['lost_ok']]}; "
          f"replies {s['replies']}, rebuilds {s['rebuilds']}; mix {s['mix_seconds']}")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    report = run(args)
    print_summary(report)
    print(f"wrote {args.out / args.name}.csv, .png, .json")
    return report


if __name__ == "__main__":
    main()
