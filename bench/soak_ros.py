"""The soak over ROS topics: hours of mixed audio through a separate interaction_node process.

Why: bench/soak.py proves the engine flat over 24 h; this proves the node (subscription, ingest,
engine thread, publishing, diagnostics) flat too, over real DDS between processes. This process
publishes 48 kHz stereo S16LE (what a USB microphone sends, so every message is decoded,
downmixed and resampled) at ``--speed`` times real time, and samples every ``--every-s`` seconds:
the node's RSS (from /proc), its /diagnostics (real-time factor, decision latency p50/p95,
backlog, dropped audio), and the replies it published. Output: a CSV under bench/results/ and a
summary against the targets (RSS growth <= 50 MB after warm-up, no lost audio).

    .venv/bin/python bench/soak_ros.py --hours 1 --speed 10 [--model DIR]
"""
from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
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
    parser.add_argument("--out", type=Path, default=RESULTS / "soak_ros.csv")
    args = parser.parse_args()

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 90 + 10))
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import String

    from audio_common_msgs.msg import AudioDataStamped, AudioInfo
    from audio_interaction_ros.ros import messages, qos

    backlog_limit_s = 60.0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    node_proc = subprocess.Popen(
        [sys.executable, "-m", "audio_interaction_ros.ros.interaction_node", "--ros-args",
         "-p", f"model:={args.model}", "-p", "device:=cpu", "-p", "temperature:=0.0",
         "-p", f"max_backlog_s:={backlog_limit_s}", "-p", "diagnostics_period_s:=1.0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rclpy.init()
    node = rclpy.create_node("soak_publisher")
    info_pub = node.create_publisher(AudioInfo, "audio_info", qos.LATCHED)
    audio_pub = node.create_publisher(AudioDataStamped, "audio", qos.AUDIO_RELIABLE)
    diag: dict[str, str] = {}
    replies = []
    node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: [
        diag.update({kv.key: kv.value for kv in s.values}) for s in m.status
        if "audio interaction" in s.name], qos.PERIODIC)
    node.create_subscription(String, "/audio_interaction/speech",
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
                         "chunks": diag.get("chunks", ""), "replies_seen": len(replies)})
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
    warm = [r for r in rows if r["audio_h"] >= min(0.1, args.hours / 4)]
    growth = warm[-1]["node_rss_mb"] - warm[0]["node_rss_mb"] if warm else float("nan")
    print(f"\n{args.hours} h of audio at x{args.speed} over topics in "
          f"{time.monotonic() - start:.0f} s; node exit code {code}")
    print(f"node RSS {rows[0]['node_rss_mb']} -> {rows[-1]['node_rss_mb']} MB; growth after "
          f"warm-up {growth:+.1f} MB (target <= 50)")
    print(f"dropped by backlog overflow: {diag.get('dropped_s.backlog_overflow', '0')} s "
          f"(target 0); replies {len(replies)}; chunks {diag.get('chunks')}")
    print(f"machine: {machine_context()}")
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
