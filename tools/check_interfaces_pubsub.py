"""Smoke check that the stand-in interface packages really travel over DDS (rmw_fastrtps_cpp).

Run with the venv's python after tools/build_interfaces.sh:

    AMENT_PREFIX_PATH=$VENV $VENV/bin/python tools/check_interfaces_pubsub.py [--two-process]

Publishes one AudioDataStamped (a few hundred bytes) and one LiveSpeech and waits for both, either
between two nodes in this process (default) or to a subscriber in a child process. Discovery stays
on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) on a random ROS_DOMAIN_ID unless those
are already set. Prints one line and exits 0 on success; exits 1 with a reason otherwise.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import time

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 101)))
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402

from audio_common_msgs.msg import AudioDataStamped  # noqa: E402
from hri_msgs.msg import LiveSpeech  # noqa: E402

PAYLOAD = (np.arange(480, dtype=np.int16) * 37).tobytes()  # 960 bytes of s16le "audio"
QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
TIMEOUT_S = 10.0


def _subscribe(node, got: dict) -> None:
    node.create_subscription(AudioDataStamped, "check_audio",
                             lambda m: got.setdefault("audio", m), QOS)
    node.create_subscription(LiveSpeech, "check_speech",
                             lambda m: got.setdefault("speech", m), QOS)


def _publish(node):
    audio = AudioDataStamped()
    audio.header.frame_id = "mic"
    audio.audio.data = PAYLOAD
    speech = LiveSpeech(incremental="hello", final="hello world", confidence=0.5, locale="en-GB")
    pubs = (node.create_publisher(AudioDataStamped, "check_audio", QOS),
            node.create_publisher(LiveSpeech, "check_speech", QOS))
    pubs[0].publish(audio)
    pubs[1].publish(speech)
    return pubs


def _check(got: dict) -> str:
    audio, speech = got.get("audio"), got.get("speech")
    if audio is None or speech is None:
        missing = sorted({"audio", "speech"} - got.keys())
        return f"timed out after {TIMEOUT_S} s waiting for {missing}"
    data = audio.audio.data
    samples = np.frombuffer(data, dtype=np.int16)  # zero-copy view of the received buffer
    if bytes(data) != PAYLOAD or not np.array_equal(samples, np.frombuffer(PAYLOAD, np.int16)):
        return "audio payload differs"
    if (speech.final, speech.locale, speech.confidence) != ("hello world", "en-GB", 0.5):
        return f"LiveSpeech differs: {speech}"
    return (f"ok: AudioDataStamped {len(data)} bytes (received data is "
            f"{type(data).__module__}.{type(data).__qualname__}, typecode {data.typecode!r}) "
            f"and LiveSpeech received on domain {os.environ['ROS_DOMAIN_ID']}")


def _spin_until(executor, got: dict) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while len(got) < 2 and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.1)


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    rclpy.init()
    executor = SingleThreadedExecutor()
    got: dict = {}
    child = None
    try:
        if mode == "--child-subscriber":
            node = rclpy.create_node("check_interfaces_sub")
            executor.add_node(node)
            _subscribe(node, got)
            _spin_until(executor, got)
            result = _check(got)
            print(result)
            return 0 if result.startswith("ok") else 1
        pub_node = rclpy.create_node("check_interfaces_pub")
        executor.add_node(pub_node)
        if mode == "--two-process":
            child = subprocess.Popen([sys.executable, __file__, "--child-subscriber"],
                                     stdout=subprocess.PIPE, text=True)
        else:
            sub_node = rclpy.create_node("check_interfaces_sub")
            executor.add_node(sub_node)
            _subscribe(sub_node, got)
        _publish(pub_node)
        if child is not None:
            deadline = time.monotonic() + TIMEOUT_S + 5
            while child.poll() is None and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.1)  # keep the publisher alive for late joiners
            out, _ = child.communicate(timeout=5)
            result = out.strip() if child.returncode == 0 else f"subscriber failed: {out.strip()}"
        else:
            _spin_until(executor, got)
            result = _check(got)
        print(result if result.startswith("ok") else f"check_interfaces_pubsub: {result}",
              file=sys.stdout if result.startswith("ok") else sys.stderr)
        return 0 if result.startswith("ok") else 1
    finally:
        if child is not None and child.poll() is None:
            child.kill()
        executor.shutdown()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
