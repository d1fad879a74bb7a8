"""The interaction node in-process.

Lifecycle, replies over topics, every bad input of ARCHITECTURE.md §6 counted in /diagnostics while
the node keeps answering.
"""
from __future__ import annotations

import contextlib
import time

import numpy as np
import pytest
import rclpy
from audio_common_msgs.msg import AudioDataStamped, AudioInfo
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from hri_msgs.msg import LiveSpeech
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from std_msgs.msg import Bool, Float32, String

from audio_interaction_ros.ros import messages
from audio_interaction_ros.ros.qos import LATCHED, TEXT as RELIABLE
from audio_interaction_ros.ros.interaction_node import InteractionNode

from .conftest import spin_for, spin_until


def beep_clip(rate: int = 48000, channels: int = 2, beep_s: float = 0.4) -> np.ndarray:
    """(frames, channels) int16: 0.8 s silence, 0.4 s of 1 kHz at half scale, 1.6 s silence."""
    t = np.arange(int(beep_s * rate)) / rate
    tone = 0.5 * np.sin(2 * np.pi * 1000 * t)
    mono = np.concatenate([np.zeros(int(0.8 * rate)), tone, np.zeros(int(1.6 * rate))])
    return np.repeat((mono * 32767).astype(np.int16)[:, None], channels, axis=1)


class AudioTester:
    """Publishes audio like a microphone driver and records what the node publishes; in
    ``namespace``, for an interaction node there (a robot of fleet_node)."""

    def __init__(self, context, namespace: str = ""):
        base = f"{namespace.rstrip('/')}/audio_interaction"
        self.node = rclpy.create_node("tester", namespace=namespace or None, context=context)
        self.info_pub = self.node.create_publisher(AudioInfo, "audio_info", LATCHED)
        self.audio_pub = self.node.create_publisher(AudioDataStamped, "audio", RELIABLE)
        self.speaking_pub = self.node.create_publisher(Bool, "robot_speaking", LATCHED)
        self.speech: list[str] = []
        self.replies: list[LiveSpeech] = []
        self.is_replying: list[bool] = []
        self.probabilities: list[float] = []
        self.diagnostics: list[DiagnosticStatus] = []
        sub = self.node.create_subscription
        sub(String, f"{base}/speech", lambda m: self.speech.append(m.data), RELIABLE)
        sub(LiveSpeech, f"{base}/reply", self.replies.append, RELIABLE)
        sub(Bool, f"{base}/is_replying", lambda m: self.is_replying.append(m.data), LATCHED)
        sub(Float32, f"{base}/assistant/speak_probability",
            lambda m: self.probabilities.append(m.data), RELIABLE)
        sub(DiagnosticArray, "/diagnostics",
            lambda m: self.diagnostics.extend(s for s in m.status
                                              if s.name == f"{base}: audio interaction"), 10)
        self.stamp_ns = self.node.get_clock().now().nanoseconds
        self.first_stamp_ns = self.stamp_ns

    def info(self, rate=48000, channels=2, fmt="S16LE", coding="pcm"):
        msg = messages.audio_info(rate, channels, fmt)
        msg.coding_format = coding
        self.info_pub.publish(msg)

    def send(self, frames: np.ndarray, rate: int = 48000, piece_s: float = 0.1,
             stamp_step_s: float | None = None):
        step = int(rate * piece_s)
        for start in range(0, len(frames), step):
            piece = frames[start:start + step]
            self.send_bytes(piece.tobytes(), len(piece) / rate if stamp_step_s is None
                            else stamp_step_s)

    def send_bytes(self, data: bytes, advance_s: float = 0.0, stamp_ns: int | None = None):
        stamp = rclpy.time.Time(nanoseconds=stamp_ns if stamp_ns is not None
                                else self.stamp_ns).to_msg()
        self.audio_pub.publish(messages.audio_message(data, stamp, "mic"))
        self.stamp_ns += int(advance_s * 1e9)

    def values(self) -> dict[str, str]:
        return {kv.key: kv.value for kv in self.diagnostics[-1].values} if self.diagnostics \
            else {}

    def send_paced(self, executor, frames: np.ndarray, rate: int = 48000) -> None:
        """``frames`` in 0.1 s messages, each followed by 0.05 s of spinning (twice real time):
        a burst can overflow the socket of a best-effort reader in another process, and what
        overflows is lost."""
        step = rate // 10
        for first in range(0, len(frames), step):
            self.send(frames[first:first + step], rate=rate)
            spin_for(executor, 0.05)

    def until_heard(self, executor, rate: int = 48000, channels: int = 2,
                    timeout_s: float = 60.0) -> bool:
        """Silence until the node reports audio it processed: its best-effort subscription
        drops what arrives before it has matched this publisher in turn (another process)."""
        deadline = time.monotonic() + timeout_s
        while int(self.values().get("chunks", "0")) == 0:
            if time.monotonic() > deadline:
                return False
            self.send_paced(executor, np.zeros((rate * 2 // 5, channels), np.int16), rate)
        return True


def make_node(context, model_dir, **overrides) -> InteractionNode:
    params = dict(model=str(model_dir), device="cpu", temperature=0.0,
                  autostart=False, diagnostics_period_s=0.2)
    params.update(overrides)
    return InteractionNode(context=context, parameter_overrides=[
        Parameter(k, value=v) for k, v in params.items()])


@contextlib.contextmanager
def node_and_tester(context, model_dir, activate: bool = True, **overrides):
    """An interaction node (configured and activated unless ``activate`` is false), a tester
    node and an executor spinning both; everything is torn down afterwards.
    """
    node = make_node(context, model_dir, **overrides)
    tester = AudioTester(context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(tester.node)
    try:
        if activate:
            assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
            assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        yield node, tester, executor
    finally:
        node.on_shutdown(None)
        executor.shutdown()
        node.destroy_node()
        tester.node.destroy_node()


@pytest.fixture()
def running(ros_context, toy_model_dir):
    with node_and_tester(ros_context, toy_model_dir) as parts:
        yield parts


def test_48k_stereo_beep_gets_a_reply_with_stamps(running):
    node, tester, executor = running
    tester.info(48000, 2)
    spin_for(executor, 0.3)
    tester.send(beep_clip())
    assert spin_until(executor, lambda: tester.speech, 20)
    assert tester.speech[0] == "I hear a beep."
    assert spin_until(executor, lambda: any(r.final for r in tester.replies), 5)
    finals = [r for r in tester.replies if r.final]
    assert finals[0].final == "I hear a beep." and finals[0].confidence > 0.9
    assert finals[0].locale == "en_US"
    assert finals[0].header.frame_id == "mic"  # the microphone's frame, not a session name
    partials = [r.incremental for r in tester.replies if not r.final]
    assert partials and partials[-1] == "I hear a beep." and partials[0] == "I"
    # stamped at the end of the chunk that holds the beep (0.8-1.2 s), on the audio's clock
    stamp_ns = finals[0].header.stamp.sec * 10**9 + finals[0].header.stamp.nanosec
    assert stamp_ns - tester.first_stamp_ns == pytest.approx(1.2e9, abs=2e6)
    assert spin_until(executor, lambda: tester.is_replying[-2:] == [True, False], 5)
    # "generating a reply" has its own name; is_speaking belongs to the speech node (audio plays)
    topics = dict(tester.node.get_topic_names_and_types())
    assert topics["/audio_interaction/is_replying"] == ["std_msgs/msg/Bool"]
    assert "/audio_interaction/is_speaking" not in topics
    assert len(tester.probabilities) >= 3 and max(tester.probabilities) > 0.9


def test_each_session_has_its_own_topic_beside_the_merged_one(ros_context, toy_model_dir):
    """Two reply sessions merge on ~/reply.

    ~/<session>/<output> keeps each one apart (what a consumer that must not mix them, e.g. the
    speech node, subscribes to).
    """
    sessions = {"sessions": ["left", "right", "scribe"], "scribe.output": "transcript"}
    with node_and_tester(ros_context, toy_model_dir, **sessions) as (node, tester, executor):
        finals: dict[str, list[str]] = {}
        for topic in ("reply", "transcript", "left/reply", "right/reply", "scribe/transcript"):
            finals[topic] = []
            tester.node.create_subscription(
                LiveSpeech, f"/audio_interaction/{topic}",
                lambda m, t=topic: m.final and finals[t].append(m.final), RELIABLE)
        tester.info(48000, 2)
        spin_for(executor, 0.3)
        tester.send(beep_clip())
        assert spin_until(executor, lambda: all(finals.values()) and len(finals["reply"]) == 2,
                          20), finals
        spin_for(executor, 0.5)
        assert finals["left/reply"] == finals["right/reply"] == ["I hear a beep."]
        assert finals["reply"] == ["I hear a beep."] * 2
        assert finals["scribe/transcript"] == finals["transcript"] and \
            len(finals["transcript"]) == 1
        topics = dict(tester.node.get_topic_names_and_types())
        assert "/audio_interaction/scribe/reply" not in topics


def test_diagnostics_report_model_and_latency(running):
    node, tester, executor = running
    tester.info(16000, 1)
    spin_for(executor, 0.2)
    tester.send(beep_clip(16000, 1), rate=16000)
    assert spin_until(executor, lambda: tester.speech and
                      int(tester.values().get("chunks", "0")) >= 5)
    values = tester.values()
    assert values["device"] == "cpu" and values["model"].endswith("toy-model")
    assert float(values["decision_latency_p50_ms"]) > 0
    assert 0 < float(values["real_time_factor"]) < 1
    assert tester.diagnostics[-1].level == DiagnosticStatus.OK


def answers_a_beep(tester, executor) -> bool:
    before = len(tester.speech)
    tester.send(beep_clip())
    return spin_until(executor, lambda: len(tester.speech) > before, 20)


F32 = np.array([0.1, np.nan, np.inf, -0.2], dtype="<f4")


@pytest.mark.parametrize("inject, counter", [
    pytest.param(lambda t: (t.info(48000, 2, coding="opus"), t.send(beep_clip())),
                 "input_messages.unsupported_format", id="compressed"),  # mp3: test_audio_stacks
    pytest.param(lambda t: (t.info(48000, 2, fmt="S24LE"), t.send(beep_clip())),
                 "input_messages.unsupported_format", id="unknown-format"),
    pytest.param(lambda t: t.info(1000, 2), "input_messages.unsupported_format", id="absurd-rate"),
    pytest.param(lambda t: t.send_bytes(b""), "input_messages.empty_message", id="empty"),
    pytest.param(lambda t: t.send_bytes(b"\x01\x02\x03"), "input_messages.partial_frame",
                 id="odd-bytes"),
    pytest.param(lambda t: (t.info(16000, 1, fmt="F32LE"), t.send_bytes(F32.tobytes(), 0.0)),
                 "input_messages.nonfinite_samples", id="nan-inf"),
    pytest.param(lambda t: t.send_bytes(beep_clip()[:4800].tobytes(), 0.1,
                                        stamp_ns=t.stamp_ns - 5 * 10**9),
                 "input_messages.stamp_jump_back", id="stamp-back"),
    pytest.param(lambda t: (setattr(t, "stamp_ns", t.stamp_ns + 3 * 10**9),
                            t.send_bytes(beep_clip()[:4800].tobytes(), 0.1)),
                 "input_s.stamp_gap", id="stamp-gap"),
])
def test_bad_input_is_counted_and_the_node_keeps_answering(running, inject, counter):
    node, tester, executor = running
    tester.info(48000, 2)
    spin_for(executor, 0.2)
    tester.send(beep_clip()[:4800])  # establish the stream and its stamps
    inject(tester)
    assert spin_until(executor, lambda: counter in tester.values(), 10), tester.values()
    assert node.engine is not None  # still configured and active
    tester.info(48000, 2)  # a good format again (for the format cases)
    spin_for(executor, 0.2)
    assert answers_a_beep(tester, executor)


def test_no_audio_info_is_rejected_until_it_arrives(running):
    node, tester, executor = running
    tester.send(beep_clip())
    assert spin_until(executor, lambda: "input_messages.no_audio_info" in tester.values())
    assert not tester.speech
    tester.info(48000, 2)
    spin_for(executor, 0.2)
    assert answers_a_beep(tester, executor)


def test_huge_message_is_accepted_and_chunked(running):
    node, tester, executor = running
    tester.info(48000, 2)
    spin_for(executor, 0.2)
    clip = np.concatenate([beep_clip()] * 3)  # 8.4 s in one message
    tester.send_bytes(clip.tobytes(), len(clip) / 48000)
    assert spin_until(executor, lambda: len(tester.speech) >= 3, 30)
    assert tester.speech[:3] == ["I hear a beep."] * 3


def test_rate_change_mid_stream(running):
    node, tester, executor = running
    tester.info(48000, 2)
    spin_for(executor, 0.2)
    assert answers_a_beep(tester, executor)
    tester.info(22050, 1)
    spin_for(executor, 0.2)
    before = len(tester.speech)
    tester.send(beep_clip(22050, 1), rate=22050)
    assert spin_until(executor, lambda: len(tester.speech) > before, 20)


def test_robot_speaking_audio_is_ignored_and_counted(running):
    node, tester, executor = running
    tester.info(48000, 2)
    tester.speaking_pub.publish(Bool(data=True))
    spin_for(executor, 0.3)
    tester.send(beep_clip())
    assert spin_until(executor, lambda: float(
        tester.values().get("dropped_s.robot_speaking", 0)) >= 2.5)
    assert not tester.speech
    tester.speaking_pub.publish(Bool(data=False))
    spin_for(executor, 0.8)  # past speaking_tail_s
    assert answers_a_beep(tester, executor)


def test_set_listening_service_pauses_and_resumes(running, ros_context):
    from std_srvs.srv import SetBool

    node, tester, executor = running
    client = tester.node.create_client(SetBool, "/audio_interaction/set_listening")
    assert client.wait_for_service(timeout_sec=5)
    future = client.call_async(SetBool.Request(data=False))
    assert spin_until(executor, future.done)
    assert future.result().success and node.get_parameter("listening").value is False
    tester.info(48000, 2)
    spin_for(executor, 0.2)
    tester.send(beep_clip())
    assert spin_until(executor, lambda: "dropped_s.listening_disabled" in tester.values())
    assert not tester.speech
    future = client.call_async(SetBool.Request(data=True))
    assert spin_until(executor, future.done)
    assert answers_a_beep(tester, executor)


def test_reset_service_restarts_the_session(running):
    from std_srvs.srv import Trigger

    node, tester, executor = running
    tester.info(48000, 2)
    spin_for(executor, 0.2)
    assert answers_a_beep(tester, executor)
    session = node.engine.session("assistant")
    assert spin_until(executor, lambda: node.engine.backlog_s < 0.4 and not node.engine.busy)
    before = session.chunk_index
    assert before >= 3
    client = tester.node.create_client(Trigger, "/audio_interaction/assistant/reset")
    assert client.wait_for_service(timeout_sec=5)
    future = client.call_async(Trigger.Request())
    assert spin_until(executor, future.done) and future.result().success
    assert spin_until(executor, lambda: session.chunk_index < before, 5)


def test_parameters_are_validated_on_set(running):
    node, tester, executor = running
    results = node.set_parameters([Parameter("temperature", value=5.0)])
    assert not results[0].successful and "temperature" in results[0].reason
    results = node.set_parameters([Parameter("dtype", value="int8")])
    assert not results[0].successful and "one of" in results[0].reason
    results = node.set_parameters([Parameter("device", value="tpu")])
    assert not results[0].successful
    results = node.set_parameters([Parameter("assistant.output", value="nowhere")])
    assert not results[0].successful
    results = node.set_parameters([Parameter("temperature", value=0.7)])
    assert results[0].successful
    spin_until(executor, lambda: node.engine.session("assistant").config.sampling.temperature
               == 0.7, 5)  # applied on the engine thread
    tester.info(48000, 2)
    tester.send(beep_clip()[:19200])  # a chunk so the engine runs its commands
    assert spin_until(executor, lambda: node.engine.session("assistant").config.sampling
                      .temperature == 0.7, 5)


def test_missing_model_fails_configure_and_node_stays_up(ros_context, toy_model_dir, tmp_path):
    with node_and_tester(ros_context, toy_model_dir, activate=False,
                         model=str(tmp_path / "absent")) as (node, tester, executor):
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert spin_until(executor, lambda: tester.diagnostics, 5)
        status = tester.diagnostics[-1]
        assert status.level == DiagnosticStatus.ERROR and "absent" in status.message
        # fix the parameter and retry: the node was never down
        node.set_parameters([Parameter("model", value=str(toy_model_dir))])
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS


def test_lifecycle_cycles(ros_context, toy_model_dir):
    node = make_node(ros_context, toy_model_dir)
    try:
        for _ in range(3):
            assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
            assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
            assert node.engine is not None and not node.engine.paused  # served
            assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
            assert node.engine.paused  # backlog and commands wait for the next activate
            assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
            assert node.engine is None
    finally:
        node.on_shutdown(None)
        node.destroy_node()


def test_cuda_without_gpu_fails_or_falls_back(ros_context, toy_model_dir):
    node = make_node(ros_context, toy_model_dir, device="cuda")
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        node.set_parameters([Parameter("allow_cpu_fallback", value=True)])
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.engine.model.info.device == "cpu"
    finally:
        node.on_shutdown(None)
        node.destroy_node()


def test_overload_bounds_the_backlog_warns_and_recovers(ros_context, toy_model_dir, monkeypatch):
    """Compute slower than real time.

    The backlog stays at max_backlog_s, the oldest audio is dropped and counted, /diagnostics warns
    with the real-time factor; then load drops and the node catches up.
    """
    import time

    with node_and_tester(ros_context, toy_model_dir,
                         max_backlog_s=1.0) as (node, tester, executor):
        model = node.engine.model
        fast_encode = model.encode

        def slow_encode(mel):
            time.sleep(0.8)  # a chunk now costs twice its duration
            return fast_encode(mel)

        monkeypatch.setattr(model, "encode", slow_encode)
        tester.info(16000, 1)
        spin_for(executor, 0.2)
        silence = np.zeros((1600, 1), np.int16)
        peak_backlog = 0.0
        for _ in range(60):  # 6 s of audio in real time
            tester.send(silence, rate=16000)
            spin_for(executor, 0.1)
            peak_backlog = max(peak_backlog, node.engine.backlog_s)
        assert peak_backlog <= 1.0
        assert spin_until(executor, lambda: tester.diagnostics and
                          "slower than real time" in tester.diagnostics[-1].message, 10)
        assert tester.diagnostics[-1].level == DiagnosticStatus.WARN
        values = tester.values()
        assert float(values["real_time_factor"]) > 1.0
        assert float(values["dropped_s.backlog_overflow"]) > 1.0
        monkeypatch.setattr(model, "encode", fast_encode)  # load drops
        for _ in range(40):
            tester.send(silence, rate=16000)
            spin_for(executor, 0.1)
        assert spin_until(executor, lambda: node.engine.backlog_s < 0.4, 10)
        assert spin_until(executor, lambda: tester.diagnostics[-1].level == DiagnosticStatus.OK,
                          20)
        before = len(tester.speech)  # dropped audio moved the chunk grid: a longer beep
        clip = beep_clip(16000, 1, beep_s=0.8)
        for start in range(0, len(clip), 1600):  # in real time: a burst would overflow 1 s
            tester.send(clip[start:start + 1600], rate=16000)
            spin_for(executor, 0.1)
        assert spin_until(executor, lambda: len(tester.speech) > before, 20)


def test_typed_instruction_is_spoken_into_its_session_before_live_audio(
        ros_context, toy_model_dir):
    """<session>.instruction.

    Synthesized at 16 kHz and fed, pinned, before the first live chunk; setting it again while
    active replaces it, and re-activation does not repeat it: one instruction pinned, within its
    budget, however often.
    """
    instruction = "Please tell me when you hear a beep."
    with node_and_tester(ros_context, toy_model_dir,
                         **{"assistant.instruction": instruction}) as (node, tester, executor):
        session = node.engine.session("assistant")
        tester.info(16000, 1)
        spin_for(executor, 0.2)
        tester.send(np.zeros((6400, 1), np.int16), rate=16000)  # one live chunk
        assert spin_until(executor, lambda: any(not b.pinned for b in session._blocks), 20)
        blocks = session._blocks
        pinned = [b for b in blocks if b.pinned]
        assert len(pinned) >= 3  # about 2 s of speech: several 0.4 s chunks
        assert blocks[:len(pinned)] == pinned  # all before the live chunk
        assert not blocks[-1].pinned
        for text in ("Count the beeps.", "Tell me about every sound.", instruction):
            node.set_parameters([Parameter("assistant.instruction", value=text)])
            assert spin_until(executor, lambda: session.instruction_source == f"spoken {text!r}")
            assert sum(b.pinned for b in session._blocks) == len(session._instruction)
        again = list(session._instruction)
        for _ in range(3):
            chunks = session.chunk_index
            assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
            assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
            for _ in range(40):  # until the new subscription is matched and a chunk is heard
                tester.send(np.zeros((6400, 1), np.int16), rate=16000)
                if spin_until(executor, lambda: session.chunk_index > chunks, 0.5):
                    break
            assert session.chunk_index > chunks
        # the very same blocks: re-activation fed nothing again
        assert [b for b in session._blocks if b.pinned] == again == session._instruction
        assert all(a is b for a, b in zip(again, session._instruction))
        assert session.instruction_tokens <= session.instruction_budget
        assert session.context_tokens <= session.config.max_context_tokens
