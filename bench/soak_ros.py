"""The soak over ROS topics: hours of mixed audio through a separate interaction_node process.

Why: bench/soak.py proves the engine flat over 24 h; this proves the node (subscription, ingest,
engine thread, publishing, diagnostics) flat too, over real DDS between processes. This process
publishes 48 kHz stereo S16LE (what a USB microphone sends, so every message is decoded,
downmixed and resampled) at ``--speed`` times real time, and samples every ``--every-s`` seconds:
the node's RSS (from /proc), its /diagnostics (real-time factor, decision latency p50/p95,
backlog, dropped audio), and the replies it published. Output: a CSV of the samples and a JSON
summary (arguments, machine context before and after, figures against the targets: RSS growth
<= 50 MB after warm-up, no lost audio, node exit code 0 on SIGINT) under bench/results/.

    flock /tmp/heavy.lock .venv/bin/python bench/soak_ros.py --hours 1 --speed 10 [--model DIR]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import FIXTURE_CKPT, REPO, RESULTS, machine_context
from mixed_audio import MixedAudio, default_clip_paths, load_clips

MESSAGE_S = 0.1


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0, help="audio to push")
    parser.add_argument("--speed", type=float, default=10.0, help="times real time")
    parser.add_argument("--every-s", type=float, default=10.0, help="sampling period (wall)")
    parser.add_argument("--model", default=str(FIXTURE_CKPT))
    parser.add_argument("--threads", type=int, default=1,
                        help="the node's cpu_threads (1 keeps a shared CPU's latency steady)")
    parser.add_argument("--out", type=Path, default=RESULTS / "soak_ros.csv",
                        help="the CSV; the summary goes beside it as .json")
    args = parser.parse_args()
    before = machine_context()

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 90 + 10))
    # a namespace of its own: another node or test in the same domain (a shared machine) must
    # neither feed this node nor be counted in its diagnostics and replies, nor get its audio
    namespace = f"/soak_{os.getpid()}"
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import String

    from audio_common_msgs.msg import AudioDataStamped, AudioInfo
    from audio_interaction_ros.ros import messages, qos

    backlog_limit_s = 60.0
    node_log = tempfile.TemporaryFile()  # the node's output, shown if it does not end cleanly
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    node_proc = subprocess.Popen(
        [sys.executable, "-m", "audio_interaction_ros.ros.interaction_node", "--ros-args",
         "-r", f"__ns:={namespace}",
         "-p", f"model:={args.model}", "-p", "device:=cpu", "-p", "temperature:=0.0",
         "-p", f"max_backlog_s:={backlog_limit_s}", "-p", "diagnostics_period_s:=1.0",
         "-p", f"cpu_threads:={args.threads}"],
        env=env, stdout=node_log, stderr=subprocess.STDOUT)
    rclpy.init()
    node = rclpy.create_node("soak_publisher")
    info_pub = node.create_publisher(AudioInfo, f"{namespace}/audio_info", qos.LATCHED)
    audio_pub = node.create_publisher(AudioDataStamped, f"{namespace}/audio",
                                      qos.AUDIO_RELIABLE)
    diag: dict[str, str] = {}
    replies = []
    node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: [
        diag.update({kv.key: kv.value for kv in s.values}) for s in m.status
        if s.name == f"{namespace}/audio_interaction: audio interaction"], qos.PERIODIC)
    node.create_subscription(String, f"{namespace}/audio_interaction/speech",
                             lambda m: replies.append(m.data), qos.TEXT)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    info_pub.publish(messages.audio_info(48000, 2))
    deadline = time.monotonic() + 120
    while audio_pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.1)
    if audio_pub.get_subscription_count() == 0:
        print("interaction node did not come up", file=sys.stderr)
        node_proc.kill()
        return 1

    mix = MixedAudio(load_clips(default_clip_paths()), seed=1)
    total_messages = int(args.hours * 3600 / MESSAGE_S)
    period = MESSAGE_S / args.speed
    rows, next_sample = [], time.monotonic()
    stamp_ns = node.get_clock().now().nanoseconds
    start = time.monotonic()
    for i in range(total_messages):
        mono = mix.read(1600)  # 0.1 s at 16 kHz -> 48 kHz stereo as a microphone sends it
        stereo = np.repeat(np.repeat(mono, 3)[:, None], 2, axis=1)
        pcm = (np.clip(stereo, -1, 1) * 32767).astype("<i2")
        audio_pub.publish(messages.audio_message(
            pcm, rclpy.time.Time(nanoseconds=stamp_ns).to_msg(), "soak"))
        stamp_ns += int(MESSAGE_S * 1e9)
        target = start + (i + 1) * period
        while True:
            executor.spin_once(timeout_sec=max(0.0, min(0.01, target - time.monotonic())))
            if time.monotonic() >= target:
                break
        if time.monotonic() >= next_sample:
            next_sample += args.every_s
            rows.append({"wall_s": round(time.monotonic() - start, 1),
                         "audio_h": round((i + 1) * MESSAGE_S / 3600, 4),
                         "node_rss_mb": round(rss_mb(node_proc.pid), 1),
                         "rtf": diag.get("real_time_factor", ""),
                         "decision_p50_ms": diag.get("decision_latency_p50_ms", ""),
                         "decision_p95_ms": diag.get("decision_latency_p95_ms", ""),
                         "backlog_s": diag.get("backlog_s", ""),
                         "dropped_overflow_s": diag.get("dropped_s.backlog_overflow", "0"),
                         "chunks": diag.get("chunks", ""), "replies_seen": len(replies),
                         "loadavg1": round(os.getloadavg()[0], 2)})
            print(rows[-1], flush=True)
    end = time.monotonic() + 30
    while time.monotonic() < end and float(diag.get("backlog_s", "0") or 0) > 0.4:
        executor.spin_once(timeout_sec=0.1)
    node_proc.send_signal(signal.SIGINT)
    code = node_proc.wait(timeout=60)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = summarize(rows, diag, replies, args, code, time.monotonic() - start)
    summary["machine_before"], summary["machine_after"] = before, machine_context()
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    if code != 0:
        node_log.seek(0)
        print(node_log.read().decode(errors="replace")[-4000:], file=sys.stderr)
    node.destroy_node()
    rclpy.shutdown()
    return 0 if code == 0 else 1


def summarize(rows: list[dict], diag: dict[str, str], replies: list[str],
              args: argparse.Namespace, exit_code: int, wall_s: float) -> dict:
    """Return the figures RESULTS.md and the README quote (samples and last diagnostics)."""
    warm = [r for r in rows if r["audio_h"] >= min(0.1, args.hours / 4)]
    p50 = [float(r["decision_p50_ms"]) for r in warm if r["decision_p50_ms"]]
    p95 = [float(r["decision_p95_ms"]) for r in warm if r["decision_p95_ms"]]
    dropped = {k.split(".", 1)[1]: float(v) for k, v in diag.items() if k.startswith("dropped_s.")}
    rejected = {k.split(".", 1)[1]: int(v) for k, v in diag.items()
                if k.startswith("input_messages.")}
    return {
        "args": {"hours": args.hours, "speed": args.speed, "every_s": args.every_s,
                 "model": args.model, "threads": args.threads},
        "wall_s": round(wall_s, 1), "node_exit_code_on_sigint": exit_code,
        "node_rss_mb": {"start": rows[0]["node_rss_mb"],
                        "after_warm_up": warm[0]["node_rss_mb"] if warm else None,
                        "end": rows[-1]["node_rss_mb"],
                        "max": max(r["node_rss_mb"] for r in rows)},
        "rss_growth_after_warm_up_mb": round(warm[-1]["node_rss_mb"] - warm[0]["node_rss_mb"], 1)
        if warm else None,
        "decision_p50_ms_median": round(float(np.median(p50)), 1) if p50 else None,
        "decision_p95_ms_median": round(float(np.median(p95)), 1) if p95 else None,
        "decision_p95_ms_max": max(p95) if p95 else None,
        "loadavg1_min_mean_max": [min(r["loadavg1"] for r in rows),
                                  round(float(np.mean([r["loadavg1"] for r in rows])), 2),
                                  max(r["loadavg1"] for r in rows)],
        "dropped_s": dropped, "rejected_messages": rejected,
        "chunks": int(diag.get("chunks", 0) or 0), "replies": len(replies),
        "targets": {"rss_growth_mb_max": 50, "dropped_s": 0, "node_exit_code": 0},
    }


if __name__ == "__main__":
    sys.exit(main())
