"""The interaction node where mgonzs13/audio_common's audio_common_msgs is the installed one.

Not collected by plain pytest (no test_ prefix): test_audio_stacks.py runs this file in a child
process with build/mgonzs13_prefix laid over the venv (tools/overlay_env.py), since that package
and ros-drivers' one have the same name and cannot be imported in one process.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from audio_interaction_ros.ros.audio_input import detect_variant

from .conftest import spin_until
from .drivers import (BEEP_REPLY, Mgonzs13Capturer, SpeechListener, answers_a_beep, beep,
                      diagnostics, interaction_node, running, toy_model_dir)

if detect_variant().name != "mgonzs13":
    pytest.skip("run through test_audio_stacks.py (needs mgonzs13's audio_common_msgs)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def toy_model() -> Path:
    given = os.environ.get("AUDIO_INTERACTION_TOY")
    return Path(given) if given else toy_model_dir()


@pytest.mark.parametrize("format_code, whisper_ros", [
    pytest.param(8, True, id="paInt16-whisper_ros-/audio/in"),
    pytest.param(1, False, id="paFloat32-ros2-run-/audio"),
])
def test_capturer_gets_the_reply(ros_context, robot, toy_model, format_code, whisper_ros):
    capturer = Mgonzs13Capturer(robot, format_code, whisper_ros=whisper_ros)
    remap = {"audio": "/audio/in"} if whisper_ros else {}
    node = interaction_node(ros_context, toy_model, remap=remap)
    tts = SpeechListener(robot)
    with running(node, capturer.node, tts.node) as executor:
        answers_a_beep(executor, node, tts, capturer,
                       "mgonzs13 audio_common_msgs/msg/AudioStamped on /audio")


def test_a_rate_change_in_the_messages_is_followed(ros_context, robot, toy_model):
    capturer = Mgonzs13Capturer(robot, 8, rate=48000, chunk=1024)
    node = interaction_node(ros_context, toy_model)
    tts = SpeechListener(robot)
    with running(node, capturer.node, tts.node) as executor:
        capturer.play(beep(48000))
        assert spin_until(executor, lambda: capturer.paced.done, 60)
        capturer.rate, capturer.chunk = 16000, 512  # restarted with other settings
        capturer.play(beep(16000))
        assert spin_until(executor, lambda: len(tts.speech) >= 2, 60), diagnostics(node)
        assert tts.speech[:2] == [BEEP_REPLY] * 2
