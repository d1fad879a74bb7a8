"""Hostile input through the node's own callbacks: no exception ever escapes, every rejection is
counted with its reason, and the node still answers a beep afterwards."""
from __future__ import annotations

import numpy as np
import pytest
from audio_common_msgs.msg import AudioInfo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn

from audio_interaction_ros.ros import messages

from .conftest import spin_until
from .test_interaction_node import beep_clip, make_node

INFOS = st.builds(
    AudioInfo,
    channels=st.integers(0, 255), sample_rate=st.integers(0, 2**32 - 1),
    sample_format=st.one_of(st.sampled_from(["S16LE", "S32LE", "F32LE", "U8", "S8", ""]),
                            st.text(max_size=6)),
    bitrate=st.integers(0, 2**32 - 1),
    coding_format=st.sampled_from(["pcm", "", "mp3", "opus", "wave", "x"]))
PAYLOADS = st.one_of(st.binary(max_size=20000),
                     st.builds(lambda v: np.asarray(v, "<f4").tobytes(),
                               st.lists(st.floats(width=32), max_size=2000)))


@pytest.fixture(scope="module")
def live_node(toy_model_dir):
    import rclpy

    context = rclpy.context.Context()
    rclpy.init(context=context)
    node = make_node(context, toy_model_dir, max_backlog_s=5.0)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    yield node, context
    node.on_shutdown(None)
    node.destroy_node()
    rclpy.try_shutdown(context=context)


@settings(max_examples=150, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(info=st.one_of(st.none(), INFOS), payloads=st.lists(PAYLOADS, min_size=1, max_size=3),
       sec=st.integers(0, 2**31 - 1))
def test_callbacks_never_raise(live_node, info, payloads, sec):
    node, _ = live_node
    ingest = node._ingest
    if info is not None:
        node._on_audio_info(info)
    for payload in payloads:
        msg = messages.audio_message(payload, messages.Time(sec=sec, nanosec=0), "fuzz")
        before = sum(ingest.counts.values())
        pushed_before = node.engine.backlog_s + node.engine.stats().chunks
        node._on_audio(msg)
        accepted = node.engine.backlog_s + node.engine.stats().chunks != pushed_before
        if not accepted and ingest.format is None:
            assert sum(ingest.counts.values()) > before  # rejected with a counted reason


def test_node_still_answers_after_fuzzing(live_node):
    node, context = live_node
    from std_msgs.msg import String

    import rclpy

    listener = rclpy.create_node("fuzz_listener", context=context)
    speech = []
    listener.create_subscription(String, "/audio_interaction/speech",
                                 lambda m: speech.append(m.data), 10)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(listener)
    node._on_audio_info(messages.audio_info(48000, 2))
    node.engine.drop_backlog("test_reset")
    spin_until(executor, lambda: node.engine.backlog_s == 0 and not node.engine.busy, 30)
    node.engine.reset_session("assistant")
    clip = beep_clip()
    for start in range(0, len(clip), 4800):
        node._on_audio(messages.audio_message(clip[start:start + 4800],
                                              messages.Time(sec=0, nanosec=0), "mic"))
    assert spin_until(executor, lambda: "I hear a beep." in speech, 30)
    listener.destroy_node()
    assert node.engine.stats().errors == 0
