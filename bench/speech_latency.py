"""Time from a finished reply to the first published speech audio, and synthesis speed.

    .venv/bin/python bench/speech_latency.py                        # piper (auto), 20 replies
    .venv/bin/python bench/speech_latency.py --backend espeak --mode stream --json out.json

The speech node runs in-process with a tester node on one executor, as in the tests. Each reply
is published once the previous one has played out (is_speaking false), so every figure is the
cost of a robot that was silent: ``speech`` mode publishes the whole reply on ``speech``
(std_msgs/String); ``stream`` mode publishes it on ``reply`` (hri_msgs/LiveSpeech) one word
every ``--token-interval-s`` and then the final, as the interaction node does, and also reports
when the first audio came relative to the final (negative: before the reply ended). The node's
own figure (callback to publish, from /diagnostics) is printed beside the end-to-end one (publish
to the tester's callback), so DDS and executor costs can be told apart. Nothing here is asserted.
Self-contained on purpose: bench/common.py imports torch, which this does not need.
"""
from __future__ import annotations

import argparse
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

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 90 + 10))

REPLIES = [
    "Hello! How can I help you today?",
    "I hear a dog barking outside.",
    "The door is open. Please close it when you leave.",
    "It is twenty past three in the afternoon.",
    "Someone is speaking in the next room.",
    "Sure, I can do that for you.",
    "The kettle is boiling. Shall I turn it off?",
    "I did not catch that. Could you say it again?",
    "Your package arrived this morning.",
    "There is a phone ringing in the kitchen.",
]


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    values = np.asarray(seconds, dtype=np.float64) * 1e3
    if not values.size:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "n": 0}
    return {"p50_ms": round(float(np.percentile(values, 50)), 1),
            "p95_ms": round(float(np.percentile(values, 95)), 1),
            "max_ms": round(float(values.max()), 1), "n": int(values.size)}


def machine_context() -> dict:
    import onnxruntime

    return {"time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "cpu_cores": os.cpu_count(), "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "onnxruntime": onnxruntime.__version__}


def synthesis_speed(backend: str, threads: int, sample_rate_hz: int) -> dict:
    """Real-time factor of Voice.synthesize over the reply texts (after one warm-up)."""
    from audio_interaction_ros.voice.tts import VoiceConfig, open_voice

    started = time.perf_counter()
    voice = open_voice(VoiceConfig(backend=backend, sample_rate_hz=sample_rate_hz,
                                   threads=threads))
    load_s = time.perf_counter() - started
    compute_s = audio_s = 0.0
    per_text = []
    for text in REPLIES:
        started = time.perf_counter()
        samples, rate_hz = voice.synthesize(text)
        took = time.perf_counter() - started
        compute_s += took
        audio_s += len(samples) / rate_hz
        per_text.append(took)
    return {"backend": voice.backend, "voice": voice.name, "threads": threads,
            "load_s": round(load_s, 3), "audio_s": round(audio_s, 2),
            "compute_s": round(compute_s, 3), "real_time_factor": round(compute_s / audio_s, 4),
            "per_reply": percentiles_ms(per_text)}


def node_latency(args: argparse.Namespace) -> dict:
    import rclpy
    from audio_common_msgs.msg import AudioDataStamped
    from diagnostic_msgs.msg import DiagnosticArray
    from hri_msgs.msg import LiveSpeech
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Bool, Header, String

    from audio_interaction_ros.ros.speech_node import SpeechNode

    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    reliable = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
    context = rclpy.context.Context()
    rclpy.init(context=context)
    node = SpeechNode(context=context, parameter_overrides=[
        Parameter("autostart", value=False), Parameter("backend", value=args.backend),
        Parameter("threads", value=args.threads), Parameter("diagnostics_period_s", value=0.2),
        Parameter("input", value="speech" if args.mode == "speech" else "reply")])
    tester = rclpy.create_node("speech_latency", context=context)
    state = {"first_audio": None, "speaking": None, "diag": {}}

    def on_audio(msg):
        if state["first_audio"] is None:
            state["first_audio"] = time.monotonic()

    def on_speaking(msg):
        state["speaking"] = msg.data

    def on_diag(msg):
        for status in msg.status:
            if status.name.endswith(": speech"):
                state["diag"] = {kv.key: kv.value for kv in status.values}

    tester.create_subscription(AudioDataStamped, "/speech/speech_audio", on_audio, reliable)
    tester.create_subscription(Bool, "/speech/is_speaking", on_speaking, latched)
    tester.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    speech_pub = tester.create_publisher(String, "speech", reliable)
    reply_pub = tester.create_publisher(LiveSpeech, "reply", reliable)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(tester)

    def spin_until(predicate, timeout_s: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not predicate():
            executor.spin_once(timeout_sec=0.01)
        return predicate()

    def live(incremental: str = "", final: str = "") -> LiveSpeech:
        return LiveSpeech(header=Header(stamp=tester.get_clock().now().to_msg(),
                                        frame_id="assistant"),
                          incremental=incremental, final=final)

    try:
        if node.trigger_configure() != TransitionCallbackReturn.SUCCESS or \
                node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            raise SystemExit("speech node did not start (see its log)")
        voice = node.voice
        spin_until(lambda: state["speaking"] is False)
        spin_until(lambda: False, 0.5)  # discovery settles
        after_final, after_first_sentence = [], []
        for i in range(args.replies):
            text = REPLIES[i % len(REPLIES)]
            state["first_audio"] = None
            if args.mode == "speech":
                sent = time.monotonic()
                speech_pub.publish(String(data=text))
                spin_until(lambda: state["first_audio"] is not None)
                after_final.append(state["first_audio"] - sent)
            else:
                words, so_far, first_sentence_at = text.split(" "), "", None
                for k, word in enumerate(words):
                    so_far = f"{so_far} {word}" if so_far else word
                    sent = time.monotonic()
                    reply_pub.publish(live(incremental=so_far))
                    if first_sentence_at is None and k and words[k - 1][-1] in ".!?":
                        first_sentence_at = sent  # this word shows the sentence has ended
                    spin_until(lambda: False, args.token_interval_s)
                final_at = time.monotonic()
                reply_pub.publish(live(final=text))
                spin_until(lambda: state["first_audio"] is not None)
                after_final.append(state["first_audio"] - final_at)
                after_first_sentence.append(state["first_audio"] - (first_sentence_at or
                                                                    final_at))
            spin_until(lambda: state["speaking"] is False and
                       state["diag"].get("utterances") == str(i + 1))
        result = {"backend": voice.backend, "voice": voice.name, "mode": args.mode,
                  "replies": args.replies,
                  "first_audio_after_final": percentiles_ms(after_final),
                  "node_text_to_first_audio_ms": {
                      "p50_ms": float(state["diag"].get("text_to_first_audio_p50_ms", "nan")),
                      "p95_ms": float(state["diag"].get("text_to_first_audio_p95_ms", "nan"))}}
        result["first_audio_after_final_each_ms"] = [round(x * 1e3, 1) for x in after_final]
        if args.mode == "stream":
            result["first_audio_after_first_sentence_complete"] = \
                percentiles_ms(after_first_sentence)
            result["token_interval_s"] = args.token_interval_s
        return result
    finally:
        node.on_shutdown(None)
        executor.shutdown()
        node.destroy_node()
        tester.destroy_node()
        rclpy.try_shutdown(context=context)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="auto", choices=("auto", "piper", "espeak"))
    parser.add_argument("--mode", default="speech", choices=("speech", "stream"))
    parser.add_argument("--replies", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1,
                        help="onnxruntime threads for piper (0 = all cores)")
    parser.add_argument("--token-interval-s", type=float, default=0.05,
                        help="stream mode: time between two words of a reply")
    parser.add_argument("--no-synthesis", action="store_true",
                        help="skip the synthesis-speed table")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = {"context": machine_context()}
    if not args.no_synthesis:
        results["synthesis"] = [synthesis_speed(backend, threads, 22050)
                                for backend, threads in (("piper", 1), ("piper", 0),
                                                         ("espeak", 0))]
    results["latency"] = node_latency(args)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
