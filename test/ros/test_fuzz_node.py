"""Hostile input through the node's own callbacks: every generated message has a checked outcome.

The node is configured but not activated, so its engine holds what it is given and consumes
nothing: no thread races the counters. For each AudioInfo and each payload the test predicts the
outcome from the input alone (is the announced format valid, is the payload empty, shorter than
one frame, longer than a message may be) and checks it:

- rejected: counted once under the predicted reason, and not one sample reached the engine;
- accepted: no rejection counted, and every sample the conversion produced is accounted for by
  the engine (queued, or dropped and counted when its bounded queue overflows).

How many samples a payload becomes (downmix, stream resampling) comes from a second AudioIngest
fed the same messages; the node's counters must equal that one's at every step. Afterwards the
activated node still answers a beep.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from audio_common_msgs.msg import AudioInfo
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn

from audio_interaction_ros.core.ingest import MAX_MESSAGE_S, AudioIngest
from audio_interaction_ros.core.protocol import SAMPLE_RATE_HZ
from audio_interaction_ros.ros import messages

from .conftest import spin_until
from .test_interaction_node import beep_clip, make_node

VALID_INFOS = st.builds(  # formats a driver really announces, so that acceptance is exercised
    AudioInfo,
    channels=st.integers(1, 8), sample_rate=st.sampled_from([8000, 11025, 16000, 22050, 48000]),
    sample_format=st.sampled_from(["S16LE", "S32LE", "F32LE", "U8", "S8", ""]),
    coding_format=st.sampled_from(["pcm", "", "wave"]))
ANY_INFOS = st.builds(
    AudioInfo,
    channels=st.integers(0, 255), sample_rate=st.integers(0, 2**32 - 1),
    sample_format=st.one_of(st.sampled_from(["S16LE", "S32LE", "F32LE", "U8", "S8", ""]),
                            st.text(max_size=6)),
    bitrate=st.integers(0, 2**32 - 1),
    coding_format=st.sampled_from(["pcm", "", "mp3", "opus", "wave", "x"]))
PAYLOADS = st.one_of(
    st.binary(max_size=64),  # around one frame
    st.builds(lambda n, seed: np.random.default_rng(seed).bytes(n),  # noise of any length
              st.integers(0, 20000), st.integers(0, 2**32 - 1)),
    st.builds(lambda v: np.asarray(v, "<f4").tobytes(),  # NaN, Inf, huge floats
              st.lists(st.floats(width=32), max_size=2000)),
    st.builds(bytes, st.just(1_000_000)))  # over MAX_MESSAGE_S at 8 kHz U8 mono
REJECTIONS = ("no_audio_info", "unsupported_format", "empty_message", "oversized_message",
              "partial_frame", "bad_channel_index")


class Oracle:
    """What the node must do with each message, predicted from the messages alone."""

    def __init__(self) -> None:
        self.format = None  # the last valid AudioInfo's format
        self.format_rejected = False  # the last AudioInfo was invalid
        self.seen: Counter[str] = Counter()  # outcomes predicted so far (coverage)

    def info(self, info: AudioInfo) -> bool:
        """Track an AudioInfo; True if it must be rejected."""
        fmt = messages.pcm_format(info)
        try:
            fmt.validate()
        except ValueError:
            self.format, self.format_rejected = None, True
            return True
        self.format, self.format_rejected = fmt, False
        return False

    def rejection(self, payload: bytes) -> str | None:
        """The reason a payload must be rejected for, or None if it must be accepted."""
        if self.format is None:
            return "unsupported_format" if self.format_rejected else "no_audio_info"
        if len(payload) == 0:
            return "empty_message"
        frame_bytes = self.format.frame_bytes
        if len(payload) / frame_bytes / self.format.sample_rate_hz > MAX_MESSAGE_S:
            return "oversized_message"
        if len(payload) < frame_bytes:
            return "partial_frame"  # not even one frame: nothing to keep
        return None


def accounted_samples(engine) -> int:
    """Samples the engine has been given: queued, or dropped and counted."""
    dropped_s = sum(engine.stats().dropped_s.values())
    return round((engine.backlog_s + dropped_s) * SAMPLE_RATE_HZ)


@pytest.fixture(scope="module")
def configured_node(toy_model_dir):
    """(node, context, shadow ingest, oracle): configured, engine not running."""
    import rclpy

    context = rclpy.context.Context()
    rclpy.init(context=context)
    node = make_node(context, toy_model_dir, max_backlog_s=5.0)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    shadow = AudioIngest(node.get_parameter("channel_index").value,
                         node.get_parameter("gap_tolerance_s").value)
    yield node, context, shadow, Oracle()
    node.on_shutdown(None)
    node.destroy_node()
    rclpy.try_shutdown(context=context)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(info=st.one_of(st.none(), VALID_INFOS, ANY_INFOS),
       payloads=st.lists(PAYLOADS, min_size=1, max_size=3), sec=st.integers(0, 2**31 - 1))
@example(info=None, payloads=[b"\x00\x01"], sec=0)  # before any AudioInfo
@example(info=AudioInfo(channels=1, sample_rate=8000, sample_format="U8", coding_format="pcm"),
         payloads=[bytes(1_000_000), b"", b"\x80" * 800], sec=1)
@example(info=AudioInfo(channels=2, sample_rate=48000, sample_format="S16LE"),
         payloads=[b"\x01\x02\x03", bytes(19203)], sec=2)  # short of one frame; one extra byte
@example(info=AudioInfo(channels=1, sample_rate=16000, sample_format="S16LE"),
         payloads=[bytes(20), b"\x7f\xff" * 3], sec=3)  # a few samples each, none resampled
def test_every_message_is_accepted_and_counted_or_rejected_with_its_reason(
        configured_node, info, payloads, sec):
    node, _, shadow, oracle = configured_node
    ingest, engine = node._ingest, node.engine
    if info is not None:
        before = ingest.counts["unsupported_format"]
        must_reject = oracle.info(info)
        node._on_audio_info(info)
        shadow.set_format(messages.pcm_format(info))
        assert ingest.counts["unsupported_format"] - before == int(must_reject), info
    for payload in payloads:
        stamp = messages.Time(sec=sec, nanosec=0)
        counts, given_before = Counter(ingest.counts), accounted_samples(engine)
        node._on_audio(messages.audio_message(payload, stamp, "fuzz"))
        expected = shadow.convert(np.frombuffer(payload, np.uint8),
                                  messages.stamp_seconds(stamp))
        reason = oracle.rejection(payload)
        produced = 0 if expected.samples is None else len(expected.samples)
        outcome = reason or ("accepted" if produced else "accepted, 0 samples")
        oracle.seen[outcome] += 1
        event(f"payload {outcome}")
        grown = {r for r in REJECTIONS if ingest.counts[r] > counts[r]}
        if reason is not None:
            assert expected.samples is None
            assert ingest.counts[reason] == counts[reason] + 1, (reason, len(payload))
            assert grown == {reason}
            assert accounted_samples(engine) == given_before
        else:
            assert expected.samples is not None, (len(payload), expected.notes)
            assert grown <= {"partial_frame"}  # a trailing partial frame is cut and counted
            assert accounted_samples(engine) - given_before == len(expected.samples)
        assert ingest.counts == shadow.counts


def test_node_still_answers_after_fuzzing(configured_node):
    node, context, _, oracle = configured_node
    # the fuzzing above reached acceptance and every rejection that input alone can cause
    assert {"accepted", "no_audio_info", "unsupported_format", "empty_message",
            "oversized_message", "partial_frame"} <= set(oracle.seen), oracle.seen
    from std_msgs.msg import String

    import rclpy

    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
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
