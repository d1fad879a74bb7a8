"""The soak's picture: memory and decision latency over hours of audio (matplotlib, Agg).

Separate from soak.py so that re-plotting an existing CSV needs no model:
``python bench/soak_plot.py bench/results/soak.csv [WARMUP_HOURS]``.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on CI or a robot
import matplotlib.pyplot as plt  # noqa: E402


def read_rows(path: Path) -> list[dict]:
    """Read the CSV rows with numbers as floats."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def plot(rows: list[dict], out: Path, title: str = "soak", warmup_h: float | None = None,
         rss_budget_mb: float = 50.0) -> None:
    """Two panels sharing the audio-hours axis: RSS (MB); decision p50/p99 (ms) with load.

    The RSS axis spans at least the growth budget, so allocator noise of a few MB does not look
    like a leak; with ``warmup_h`` the end of warm-up and the budget above it are drawn.
    """
    hours = [r["audio_h"] for r in rows]
    rss = [r["rss_mb"] for r in rows]
    fig, (mem, lat) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    mem.plot(hours, rss, color="tab:blue", label="RSS")
    if warmup_h is not None:
        base = next((r for h, r in zip(hours, rss) if h >= warmup_h), rss[-1])
        for axis in (mem, lat):
            axis.axvline(warmup_h, color="k", ls=":", lw=0.8)
        mem.axhline(base + rss_budget_mb, color="tab:green", ls="--", lw=0.8,
                    label=f"end of warm-up + {rss_budget_mb:.0f} MB")
        mem.legend(loc="lower right", fontsize=8)
    low = min(rss) - 5
    mem.set_ylim(low, max(max(rss) + 5, low + rss_budget_mb + 15))
    mem.set_ylabel("RSS (MB)")
    mem.grid(alpha=0.3)
    mem.set_title(title)
    lat.plot(hours, [r["decision_p99_ms"] for r in rows], color="tab:red", label="p99")
    lat.plot(hours, [r["decision_p50_ms"] for r in rows], color="tab:orange", label="p50")
    lat.set_ylabel(f"decision latency per {int(rows[0]['chunk'])} chunks (ms)")
    lat.set_xlabel("audio hours")
    lat.set_ylim(bottom=0)
    lat.grid(alpha=0.3)
    load = lat.twinx()
    load.plot(hours, [r["loadavg1"] for r in rows], color="grey", alpha=0.4, lw=0.8,
              label="load avg (1 min)")
    load.set_ylabel("machine load (1 min)", color="grey")
    load.set_ylim(bottom=0)
    handles = lat.get_legend_handles_labels()[0] + load.get_legend_handles_labels()[0]
    lat.legend(handles=handles, loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    source = Path(sys.argv[1])
    warm = float(sys.argv[2]) if len(sys.argv) > 2 else None
    title = source.stem
    if source.with_suffix(".json").is_file():  # written by soak.py beside the CSV
        import json

        report = json.loads(source.with_suffix(".json").read_text())
        title = (f"{source.stem}: {report['model']['spec']} {report['model']['dtype']} on "
                 f"{report['model']['device']}, {report['summary']['audio_hours']:.1f} h of audio")
    plot(read_rows(source), source.with_suffix(".png"), title=title, warmup_h=warm)
