"""fleet_node as its own process serving robot1 and robot2 over DDS (localhost, a private domain),
as a GPU server listens for a fleet: each robot's reply comes on its own
/robotN/audio_interaction/speech; a robot that floods (audio far faster than real time) and sends
bad input has its drops and rejections counted in its own diagnostics, while the other robot
loses no audio and keeps getting its replies; SIGINT ends the process with exit code 0."""
from __future__ import annotations


import numpy as np
import pytest
import soundfile
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor

from audio_interaction_ros.ros import qos

from .conftest import spin_for, spin_until
from .test_cross_process import start, stop
from .test_interaction_node import AudioTester, beep_clip

CHUNK_S = 0.4
BEEP_S = 0.8  # covers one whole chunk wherever the chunk boundaries fall: at least one reply
ROBOT2_BACKLOG_S = 2.0
FLOOD_MESSAGE_S = 10.0  # one message: 5 x robot2's whole backlog, so each one overflows it
FLOOD_MESSAGES = 20


@pytest.fixture()
def fleet_process(tmp_path, toy_model_dir):
    """fleet_node for robot1 and robot2 on the toy model; robot2 with a 2 s backlog."""
    params = tmp_path / "robot2.yaml"
    params.write_text(f"/robot2/audio_interaction:\n  ros__parameters:\n"
                      f"    max_backlog_s: {ROBOT2_BACKLOG_S}\n")
    log = tmp_path / "fleet.log"
    proc = start("audio_interaction_ros.ros.fleet_node", "-p", "robots:=[robot1, robot2]",
                 "-p", f"model:={toy_model_dir}", "-p", "device:=cpu", "-p", "temperature:=0.0",
                 "-p", "diagnostics_period_s:=0.2", "--params-file", str(params), log=log)
    try:
        yield proc, log
    finally:
        code = stop(proc)
        text = log.read_text()
        assert code == 0, text
        assert "Traceback" not in text, text


def test_fleet_node_serves_two_robots_apart(ros_context, fleet_process, speech_wav):
    proc, log = fleet_process
    speech, _ = soundfile.read(speech_wav, dtype="int16", always_2d=True)  # 16 kHz mono
    robot1, robot2 = (AudioTester(ros_context, ns) for ns in ("/robot1", "/robot2"))
    executor = SingleThreadedExecutor(context=ros_context)
    for tester in (robot1, robot2):
        executor.add_node(tester.node)
    fleet: list[dict[str, str]] = []  # the fleet's own status: the shared batched step
    robot1.node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: fleet.extend(
        {kv.key: kv.value for kv in s.values} for s in m.status
        if s.name == "/audio_interaction_fleet: batched step"), qos.PERIODIC)
    try:
        assert spin_until(executor, lambda: all(
            t.audio_pub.get_subscription_count() for t in (robot1, robot2)), 60), log.read_text()
        assert "loaded on cpu" in log.read_text() and "shared with 1 other" in log.read_text()
        robot1.info(48000, 2)
        robot2.info(16000, 1)
        for tester, (rate, channels) in ((robot1, (48000, 2)), (robot2, (16000, 1))):
            assert tester.until_heard(executor, rate, channels), log.read_text()

        # each robot's reply on its own topic: robot1 hears a beep, robot2 a speaker (a beep
        # across a chunk boundary may be answered twice: where the chunks fall depends on how
        # much of the warm-up was heard)
        robot1.send_paced(executor, beep_clip(beep_s=BEEP_S))
        robot2.send_paced(executor, speech, rate=16000)
        assert spin_until(executor, lambda: robot1.speech and robot2.speech, 30), \
            log.read_text()
        spin_for(executor, 1.0)  # a reply that went astray would arrive as fast
        assert set(robot1.speech) == {"I hear a beep."}
        assert set(robot2.speech) == {"Someone is speaking."}

        # robot2 floods (10 s of audio per message, back to back) and sends a broken message,
        # while robot1 streams two beeps at its microphone's pace
        noise = (np.random.default_rng(0).normal(0, 0.01, int(FLOOD_MESSAGE_S * 16000))
                 * 32767).astype(np.int16).tobytes()
        steady = np.concatenate([beep_clip(beep_s=BEEP_S), beep_clip(beep_s=BEEP_S)])
        piece = 4800  # 0.1 s at 48 kHz
        floods = 0
        before = robot1.values()  # warm-up may have left counts (audio before its info)
        chunks_before, replies_before = int(before["chunks"]), len(robot1.speech)
        for i, start_frame in enumerate(range(0, len(steady), piece)):
            robot1.send_bytes(steady[start_frame:start_frame + piece].tobytes(), 0.1)
            if floods < FLOOD_MESSAGES:
                robot2.send_bytes(noise, FLOOD_MESSAGE_S)
                floods += 1
            if i == 10:
                robot2.send_bytes(b"\x01\x02\x03")  # not a whole S16LE frame
            spin_for(executor, 0.1)
        assert spin_until(executor, lambda: len(robot1.speech) >= replies_before + 2, 30), \
            log.read_text()
        flood_chunks = int(len(steady) / 48000 / CHUNK_S)
        assert spin_until(executor, lambda: int(robot1.values()["chunks"]) - chunks_before
                          >= flood_chunks - 1, 30), robot1.values()
        assert spin_until(executor, lambda: "input_messages.partial_frame" in robot2.values()
                          and "dropped_s.backlog_overflow" in robot2.values(), 30), robot2.values()
    finally:
        for tester in (robot1, robot2):
            tester.node.destroy_node()

    assert set(robot1.speech) == {"I hear a beep."}  # robot2's audio never answered there
    first, flooded = robot1.values(), robot2.values()
    losses = [k for k in first if k.startswith(("dropped_s.", "input_messages."))]
    assert [first[k] for k in losses] == [before.get(k) for k in losses], (before, first)
    assert float(flooded["dropped_s.backlog_overflow"]) >= FLOOD_MESSAGE_S - ROBOT2_BACKLOG_S
    assert int(flooded["input_messages.partial_frame"]) == 1
    # both robots' chunks went through shared forwards (one row each: one session per robot)
    assert fleet and fleet[-1]["streams"] == "2" and int(fleet[-1]["rows_per_forward_max"]) >= 2


def test_a_bad_robots_list_is_one_error_line_and_exit_2(tmp_path):
    log = tmp_path / "fleet.log"
    proc = start("audio_interaction_ros.ros.fleet_node", "-p", "robots:=[robot1, /robot1]",
                 log=log)
    assert proc.wait(timeout=60) == 2, log.read_text()
    assert "fleet_node: error: robots: '/robot1' is named twice" in log.read_text()
    assert "Traceback" not in log.read_text()
