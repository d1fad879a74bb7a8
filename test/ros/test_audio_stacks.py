"""The node on the audio and HRI stacks robots run (issue: plug into the audio and HRI stacks).

Publishers shaped like ros-drivers' audio_capture (stamped, unstamped, wave, mp3) and mgonzs13's
audio_capturer_node (int16, float32; in its own prefix, in a subprocess), and a ros4hri consumer.
Each one feeds a beep and gets the toy model's reply, with one unchanged node.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from audio_interaction_ros.core.mp3 import mp3_unavailable_reason
from audio_interaction_ros.ros import messages

from ..conftest import child_env
from .conftest import spin_until
from .drivers import (BEEP_REPLY, REPO, HriConsumer, RosDriversCapture, SpeechListener,
                      answers_a_beep, beep,
                      diagnostics, interaction_node, require, running, toy_model_dir)

MGONZS13_PREFIX = REPO / "build" / "mgonzs13_prefix"
# what a launch file remaps for ros-drivers' capture (its launch file's namespace is `audio`)
STAMPED = {"audio": "/audio/audio_stamped", "audio_info": "/audio/audio_info"}
UNSTAMPED = {"audio": "/audio/audio", "audio_info": "/audio/audio_info"}


@pytest.fixture(scope="module")
def toy_model():
    return toy_model_dir()


@pytest.mark.parametrize("remap, audio_type", [
    pytest.param(STAMPED, "auto", id="audio_stamped"),
    pytest.param(UNSTAMPED, "auto", id="audio-unstamped-auto"),
    pytest.param(UNSTAMPED, "data", id="audio-unstamped-data"),
])
def test_ros_drivers_capture_wave_gets_the_reply(ros_context, robot, toy_model, remap, audio_type):
    capture = RosDriversCapture(robot, "wave")  # up first, as on a robot
    node = interaction_node(ros_context, toy_model, remap=remap, audio_type=audio_type)
    tts = SpeechListener(robot)
    with running(node, capture.node, tts.node) as executor:
        wanted = "msg/AudioDataStamped " if remap is STAMPED else "msg/AudioData "
        answers_a_beep(executor, node, tts, capture, wanted)


def test_auto_follows_a_publisher_that_comes_up_after_the_node(ros_context, robot, toy_model):
    node = interaction_node(ros_context, toy_model, remap=UNSTAMPED)
    with running(node) as executor:
        assert "AudioDataStamped on /audio/audio" in diagnostics(node)["audio_input"]
        capture = RosDriversCapture(robot, "wave")
        tts = SpeechListener(robot)
        executor.add_node(capture.node)
        executor.add_node(tts.node)
        assert spin_until(executor, lambda: "msg/AudioData on" in diagnostics(node)["audio_input"],
                          20)
        capture.play(beep())
        assert spin_until(executor, lambda: tts.speech, 60)
        assert tts.speech[0] == BEEP_REPLY
        capture.node.destroy_node()
        tts.node.destroy_node()


@pytest.mark.parametrize("remap", [pytest.param(UNSTAMPED, id="audio"),
                                   pytest.param(STAMPED, id="audio_stamped")])
def test_ros_drivers_default_mp3_is_decoded(ros_context, robot, toy_model, remap):
    require(mp3_unavailable_reason() is None, "PyAV is not installed (requirements.txt)")
    capture = RosDriversCapture(robot, "mp3")
    node = interaction_node(ros_context, toy_model, remap=remap)
    tts = SpeechListener(robot)
    with running(node, capture.node, tts.node) as executor:
        # and nothing counted on the way: no damaged frame, no stamp gap or jump (the decoder's
        # hold-back and the codec delay are not gaps)
        wanted = "msg/AudioDataStamped " if remap is STAMPED else "msg/AudioData "
        answers_a_beep(executor, node, tts, capture, wanted)


def test_mp3_without_a_decoder_is_refused_once_with_the_fix(ros_context, robot, toy_model,
                                                            monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # a robot that skipped PyAV
    capture = RosDriversCapture(robot, "mp3")
    node = interaction_node(ros_context, toy_model, remap=UNSTAMPED)
    tts = SpeechListener(robot)
    logged = []
    node._log_once = lambda reason, detail: logged.append((reason, detail))
    with running(node, capture.node, tts.node) as executor:
        refused = "input_messages.unsupported_format"
        assert spin_until(executor, lambda: refused in diagnostics(node), 10)  # the info
        capture.play(beep())
        assert spin_until(executor, lambda: capture.paced.done, 60)
        assert spin_until(executor, lambda: int(diagnostics(node)[refused]) >=
                          1 + capture.paced.sent, 10)  # the info, then every message
        assert not tts.speech and node.engine is not None  # refused, node alive
        details = {detail for reason, detail in logged if reason == "unsupported_format"}
        assert details and all("format:=wave" in d for d in details)
        capture.info.coding_format = "wave"  # the fix
        capture.pub_info.publish(capture.info)
        assert spin_until(executor, lambda: node._ingest.format is not None, 10)
        capture.fmt = "wave"
        capture.play(beep())
        assert spin_until(executor, lambda: tts.speech, 60)


def test_ros4hri_consumer_sees_the_voice_its_speech_and_is_speaking(ros_context, robot,
                                                                    toy_model):
    import rclpy
    from hri_msgs.msg import LiveSpeech
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from std_msgs.msg import Bool

    from audio_interaction_ros.ros import qos

    voice = "/humans/voices/anonymous_speaker"
    consumer = HriConsumer(robot)  # up before the node, as a dialogue stack would be
    # every message, which libhri's depth-1 default subscriptions may skip between spins
    recorder = rclpy.create_node("recorder", context=robot)
    partials, flags = [], []
    recorder.create_subscription(LiveSpeech, f"{voice}/speech",
                                 lambda m: partials.append(m.incremental), qos.TEXT)
    recorder.create_subscription(Bool, f"{voice}/is_speaking", lambda m: flags.append(m.data),
                                 QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    capture = RosDriversCapture(robot, "wave")
    node = interaction_node(ros_context, toy_model, remap=STAMPED, locale="en_GB",
                            sessions=["assistant", "listener"], hri_voice_id="anonymous_speaker",
                            **{"listener.output": "transcript"})
    with running(node, capture.node, consumer.node, recorder) as executor:
        assert spin_until(executor, lambda: ["anonymous_speaker"] in consumer.tracked, 20)
        assert spin_until(executor, lambda: node.count_subscribers(f"{voice}/speech") > 1 and
                          node.count_subscribers(f"{voice}/is_speaking") > 1, 20)  # listening
        before = len(consumer.tracked)
        capture.play(beep())
        assert spin_until(
            executor, lambda: consumer.final and consumer.is_speaking[-1:] == [False], 60)
        final = consumer.final[0]
        assert final.final == BEEP_REPLY and 0.5 < final.confidence <= 1.0
        if "language" in LiveSpeech.get_fields_and_field_types():  # Humble's hri_msgs
            assert final.language == "en-GB"
        else:
            assert final.locale == "en_GB"
        assert spin_until(executor, lambda: flags == [False, True, False], 5), flags
        assert [p for p in partials if p][-1] == BEEP_REPLY and len(partials) > 2
        assert spin_until(executor, lambda: len(consumer.tracked) > before + 1, 10)  # periodic
        assert len(consumer.final) == 1  # only the transcript: the reply is the robot's words


def test_live_speech_fills_language_where_the_installed_message_has_it(monkeypatch):
    class HumbleLiveSpeech(dict):  # hri_msgs 2.1 on Humble: locale and language
        def __init__(self, **fields):
            super().__init__(fields)

    monkeypatch.setattr(messages, "LiveSpeech", HumbleLiveSpeech)
    monkeypatch.setattr(messages, "_LIVE_SPEECH_FIELDS", frozenset({"locale", "language"}))
    msg = messages.live_speech(messages.Time(), "", final="hi", locale="en_US")
    assert msg["language"] == "en-US" and msg["locale"] == "en_US"
    monkeypatch.setattr(messages, "_LIVE_SPEECH_FIELDS", frozenset({"language"}))  # 2.0
    assert "locale" not in messages.live_speech(messages.Time(), "", locale="fr_FR")


def test_bad_hri_voice_id_is_refused_with_the_reason(ros_context, toy_model):
    from rclpy.parameter import Parameter

    node = interaction_node(ros_context, toy_model)
    with running(node):
        result = node.set_parameters([Parameter("hri_voice_id", value="2 voices")])[0]
        assert not result.successful and "ROS name token" in result.reason


# ---------------------------------------------------------------- mgonzs13 (its own prefix)

@pytest.fixture(scope="module")
def mgonzs13_prefix():
    """mgonzs13's audio_common_msgs stand-in, built as `make` builds it (a no-op when current)."""
    proc = subprocess.run(["bash", str(REPO / "tools" / "build_interfaces.sh"), sys.prefix,
                           "--prefix", str(MGONZS13_PREFIX), "mgonzs13/audio_common_msgs"],
                          capture_output=True, text=True, timeout=900)
    require(proc.returncode == 0, f"mgonzs13 prefix not built: {proc.stderr[-2000:]}")
    return MGONZS13_PREFIX


def test_mgonzs13_capturer_int16_and_float32_get_the_reply(mgonzs13_prefix, toy_model):
    """The same node, in a process where mgonzs13's audio_common_msgs is the installed one
    (ARCHITECTURE §7: library order fixed by tools/overlay_env.py).
    """
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "overlay_env.py"), str(mgonzs13_prefix), "--",
         sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(REPO / "test" / "ros" / "mgonzs13_checks.py")],
        capture_output=True, text=True, timeout=900, cwd=REPO,
        env=child_env(AUDIO_INTERACTION_TOY=str(toy_model)))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("3 passed"), proc.stdout[-2000:]
