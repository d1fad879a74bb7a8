"""fleet_node as its own process serving robot1 and robot2 over DDS (localhost, a private domain),
as a GPU server listens for a fleet: each robot's reply comes on its own
/robotN/audio_interaction/speech; a robot that floods (audio far faster than real time) and sends
bad input has its drops and rejections counted in its own diagnostics, while the other robot
loses no audio and keeps getting its replies; SIGINT ends the process with exit code 0."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from rclpy.executors import SingleThreadedExecutor

from .conftest import spin_for, spin_until
from .test_cross_process import start, stop
from .test_interaction_node import AudioTester, beep_clip

TOY_DIR = Path(__file__).resolve().parents[2] / "build" / "toy-model"
CHUNK_S = 0.4
ROBOT2_BACKLOG_S = 2.0
FLOOD_MESSAGE_S = 10.0  # one message: 5 x robot2's whole backlog, so each one overflows it
FLOOD_MESSAGES = 20


def speech_clip() -> np.ndarray:
    """(frames, 1) int16 at 16 kHz: an espeak-ng sentence, then 1.6 s of silence (the toy answers
    "Someone is speaking." once the speaker has finished)."""
    from audio_interaction_ros.voice.tts import EspeakTts

    samples, _ = EspeakTts(sample_rate_hz=16000).synthesize("Where is the kitchen, please?")
    mono = np.concatenate([np.zeros(8000), 0.5 * samples / np.abs(samples).max(),
                           np.zeros(25600)])
    return (mono * 32767).astype(np.int16)[:, None]


@pytest.fixture()
def fleet_process(tmp_path):
    """fleet_node for robot1 and robot2 on the toy model; robot2 with a 2 s backlog."""
    if not (TOY_DIR / "TOY_MODEL.json").is_file():
        pytest.skip(f"{TOY_DIR} is missing: build the toy model first (make toy)")
    params = tmp_path / "robot2.yaml"
    params.write_text(f"/robot2/audio_interaction:\n  ros__parameters:\n"
                      f"    max_backlog_s: {ROBOT2_BACKLOG_S}\n")
    log = tmp_path / "fleet.log"
    proc = start("audio_interaction_ros.ros.fleet_node", "-p", "robots:=[robot1, robot2]",
                 "-p", f"model:={TOY_DIR}", "-p", "device:=cpu", "-p", "temperature:=0.0",
                 "-p", "diagnostics_period_s:=0.2", "--params-file", str(params), log=log)
    try:
        yield proc, log
    finally:
        code = stop(proc)
        text = log.read_text()
        assert code == 0, text
        assert "Traceback" not in text, text


def test_fleet_node_serves_two_robots_apart(ros_context, fleet_process):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng): no speech clip")
    proc, log = fleet_process
    robot1, robot2 = (AudioTester(ros_context, ns) for ns in ("/robot1", "/robot2"))
    executor = SingleThreadedExecutor(context=ros_context)
    for tester in (robot1, robot2):
        executor.add_node(tester.node)
    try:
        assert spin_until(executor, lambda: all(
            t.audio_pub.get_subscription_count() for t in (robot1, robot2)), 60), log.read_text()
        assert "loaded on cpu" in log.read_text() and "shared with 1 other" in log.read_text()
        robot1.info(48000, 2)
        robot2.info(16000, 1)
        spin_for(executor, 0.3)

        # each robot's reply on its own topic: robot1 hears a beep, robot2 a speaker
        robot1.send(beep_clip())
        robot2.send(speech_clip(), rate=16000)
        assert spin_until(executor, lambda: robot1.speech and robot2.speech, 30), \
            log.read_text()
        spin_for(executor, 1.0)  # a reply that went astray would arrive as fast
        assert robot1.speech == ["I hear a beep."]
        assert robot2.speech == ["Someone is speaking."]

        # robot2 floods (10 s of audio per message, back to back) and sends a broken message,
        # while robot1 streams two beeps at its microphone's pace
        noise = (np.random.default_rng(0).normal(0, 0.01, int(FLOOD_MESSAGE_S * 16000))
                 * 32767).astype(np.int16).tobytes()
        steady = np.concatenate([beep_clip(), beep_clip()])
        piece = 4800  # 0.1 s at 48 kHz
        floods = 0
        for i, start_frame in enumerate(range(0, len(steady), piece)):
            robot1.send_bytes(steady[start_frame:start_frame + piece].tobytes(), 0.1)
            if floods < FLOOD_MESSAGES:
                robot2.send_bytes(noise, FLOOD_MESSAGE_S)
                floods += 1
            if i == 10:
                robot2.send_bytes(b"\x01\x02\x03")  # not a whole S16LE frame
            spin_for(executor, 0.1)
        assert spin_until(executor, lambda: len(robot1.speech) == 3, 30), log.read_text()
        sent_chunks = int((len(beep_clip()) + len(steady)) / 48000 / CHUNK_S)
        assert spin_until(executor, lambda: int(robot1.values().get("chunks", 0))
                          >= sent_chunks - 1, 30), robot1.values()
        assert spin_until(executor, lambda: "input_messages.partial_frame" in robot2.values()
                          and "dropped_s.backlog_overflow" in robot2.values(), 30), robot2.values()
    finally:
        for tester in (robot1, robot2):
            tester.node.destroy_node()

    assert robot1.speech == ["I hear a beep."] * 3  # robot2's audio never answered on robot1's
    first, flooded = robot1.values(), robot2.values()
    assert not [k for k in first if k.startswith(("dropped_s.", "input_messages."))], first
    assert float(flooded["dropped_s.backlog_overflow"]) >= FLOOD_MESSAGE_S - ROBOT2_BACKLOG_S
    assert int(flooded["input_messages.partial_frame"]) == 1
