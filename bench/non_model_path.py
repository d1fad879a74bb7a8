"""Cost of everything that is not the neural network, per 0.4 s chunk (issue: <= 2 ms p99).

Per chunk of a 48 kHz stereo S16LE microphone sending 100 ms messages: the subscription callback's
work (payload view, decode + downmix, resampling to 16 kHz, FIFO push) for 4 messages, the engine
taking one chunk, the streaming log-mel, and building + publishing the per-chunk outputs
(speak probability, one LiveSpeech). Reported as p50/p95/p99 in ms; nothing is asserted.

    .venv/bin/python bench/non_model_path.py [--chunks 2000] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audio_interaction_ros.core.audio import PcmFormat  # noqa: E402
from audio_interaction_ros.core.engine import SampleFifo  # noqa: E402
from audio_interaction_ros.core.features import StreamingFrontEnd  # noqa: E402
from audio_interaction_ros.core.ingest import AudioIngest  # noqa: E402

STAGES = ("callback_x4", "fifo_take", "frontend", "publish")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the engine thread's share of a 2-core robot CPU

    import rclpy
    from std_msgs.msg import Float32

    from audio_interaction_ros.ros import messages

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    rclpy.init()
    node = rclpy.create_node("non_model_path_bench")
    prob_pub = node.create_publisher(Float32, "bench/speak_probability", 10)
    from hri_msgs.msg import LiveSpeech

    live_pub = node.create_publisher(LiveSpeech, "bench/reply", 10)

    rng = np.random.default_rng(0)
    pcm = (rng.standard_normal((4800, 2)) * 3000).astype("<i2")
    msg = messages.audio_message(pcm, messages.Time(sec=1, nanosec=0), "mic")
    ingest = AudioIngest()
    ingest.set_format(PcmFormat(48000, 2, "S16LE"))
    fifo = SampleFifo(16000 * 10)
    front = StreamingFrontEnd()
    stamp = node.get_clock().now().to_msg()

    def one_chunk() -> list[float]:
        t0 = time.perf_counter()
        for _ in range(4):
            out = ingest.convert(messages.payload(msg.audio.data), 1.0)
            fifo.push(out.samples)
        t1 = time.perf_counter()
        chunk = fifo.take(6400)
        t2 = time.perf_counter()
        if chunk is not None:
            front.push(chunk)
        t3 = time.perf_counter()
        prob_pub.publish(Float32(data=0.01))
        live_pub.publish(messages.live_speech(stamp, "assistant", incremental="I hear",
                                              locale="en_US"))
        t4 = time.perf_counter()
        return [t1 - t0, t2 - t1, t3 - t2, t4 - t3]

    for _ in range(100):
        one_chunk()
    rows = np.array([one_chunk() for _ in range(args.chunks)]) * 1e3
    totals = rows.sum(axis=1)
    result = {"chunks": args.chunks, "load_avg": os.getloadavg(),
              "stages_ms": {name: {f"p{q}": float(np.percentile(rows[:, i], q))
                                   for q in (50, 95, 99)} for i, name in enumerate(STAGES)},
              "total_ms": {f"p{q}": float(np.percentile(totals, q)) for q in (50, 95, 99)}}
    for name, stats in result["stages_ms"].items():
        print(f"{name:12s} " + "  ".join(f"{k} {v:6.3f} ms" for k, v in stats.items()))
    print(f"{'total':12s} " + "  ".join(f"{k} {v:6.3f} ms" for k, v in result["total_ms"].items())
          + f"   (load average {result['load_avg'][0]:.2f})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
