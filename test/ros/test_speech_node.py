"""The speech node in-process: replies become speech audio on a topic and in a WAV file,
is_speaking brackets the audio, streamed replies are spoken before they end, bad parameters and
voices are refused with a reason and the node stays up."""
from __future__ import annotations

import itertools
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import rclpy
import soundfile
from audio_common_msgs.msg import AudioDataStamped, AudioInfo
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from hri_msgs.msg import LiveSpeech
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from std_msgs.msg import Bool, Header, String

from audio_interaction_ros.ros import messages
from audio_interaction_ros.ros.qos import LATCHED, TEXT as RELIABLE
from audio_interaction_ros.ros.interaction_node import InteractionNode
from audio_interaction_ros.ros.speech_node import SpeechNode

from ..conftest import child_env
from .conftest import spin_until

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng is not installed (the fallback voice)")

SENTENCE = "The weather is nice today, so let us go for a walk in the park."


def stamp_ns(header: Header) -> int:
    return header.stamp.sec * 10**9 + header.stamp.nanosec


class SpeechTester:
    """Publishes reply text like the interaction node and records, in order, what comes back."""

    def __init__(self, context):
        self.node = rclpy.create_node("speech_tester", context=context)
        self.speech_pub = self.node.create_publisher(String, "speech", RELIABLE)
        self.reply_pub = self.node.create_publisher(LiveSpeech, "reply", RELIABLE)
        self.order = itertools.count()
        self.events: list[tuple[int, str]] = []  # (sequence number, what happened)
        self.audio: list[AudioDataStamped] = []
        self.audio_seq: list[int] = []
        self.info: list[AudioInfo] = []
        self.speaking: list[bool] = []
        self.diagnostics: list[DiagnosticStatus] = []
        sub = self.node.create_subscription
        sub(AudioDataStamped, "/speech/speech_audio", self._on_audio, RELIABLE)
        sub(AudioInfo, "/speech/speech_audio_info", self.info.append, LATCHED)
        sub(Bool, "/speech/is_speaking", self._on_speaking, LATCHED)
        sub(DiagnosticArray, "/diagnostics",
            lambda m: self.diagnostics.extend(s for s in m.status if s.name.endswith(": speech")),
            10)

    def _on_audio(self, msg: AudioDataStamped) -> None:
        self.audio.append(msg)
        self.audio_seq.append(next(self.order))

    def _on_speaking(self, msg: Bool) -> None:
        self.speaking.append(msg.data)
        self.events.append((next(self.order), f"speaking={msg.data}"))

    def reply(self, incremental: str = "", final: str = "") -> LiveSpeech:
        msg = LiveSpeech(header=Header(stamp=self.node.get_clock().now().to_msg()),
                         incremental=incremental, final=final)
        self.reply_pub.publish(msg)
        self.events.append((next(self.order), "final sent" if final else "incremental sent"))
        return msg

    def samples(self) -> np.ndarray:
        return np.frombuffer(b"".join(bytes(m.audio.data) for m in self.audio), dtype="<i2")

    def values(self) -> dict[str, str]:
        return {kv.key: kv.value for kv in self.diagnostics[-1].values} if self.diagnostics \
            else {}


def make_node(context, cli_args: list[str] | None = None, **overrides) -> SpeechNode:
    params = dict(autostart=False, diagnostics_period_s=0.2, threads=1)
    params.update(overrides)
    return SpeechNode(context=context, cli_args=cli_args, parameter_overrides=[
        Parameter(k, value=v) for k, v in params.items()])


@pytest.fixture()
def rig(ros_context):
    """(make(**params) -> node, tester, executor); everything is torn down afterwards."""
    tester = SpeechTester(ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(tester.node)
    nodes = []

    def make(cli_args: list[str] | None = None, **params) -> SpeechNode:
        node = make_node(ros_context, cli_args, **params)
        executor.add_node(node)
        nodes.append(node)
        return node

    yield make, tester, executor
    for node in nodes:
        node.on_shutdown(None)
    executor.shutdown()
    for node in nodes:
        node.destroy_node()
    tester.node.destroy_node()


def start(node: SpeechNode) -> None:
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS


def test_a_reply_on_speech_is_spoken_into_the_topic_and_the_wav(rig, tmp_path):
    make, tester, executor = rig
    wav = tmp_path / "spoken.wav"
    node = make(input="speech", wav_path=str(wav))
    start(node)
    assert spin_until(executor, lambda: tester.info and tester.speaking == [False])
    tester.speech_pub.publish(String(data=SENTENCE))
    assert spin_until(executor, lambda: tester.speaking == [False, True, False], 30)
    rate_hz = tester.info[-1].sample_rate
    assert (rate_hz, tester.info[-1].channels, tester.info[-1].sample_format) == \
        (22050, 1, "S16LE")
    samples = tester.samples()
    seconds_per_char = len(samples) / rate_hz / len(SENTENCE)
    assert 0.04 < seconds_per_char < 0.2, seconds_per_char
    level = samples.astype(np.float64) / 32768
    assert 0.01 < np.sqrt(np.mean(level ** 2)) < 0.5
    assert np.mean(np.abs(samples) >= 32767) < 1e-3
    assert max(len(m.audio.data) for m in tester.audio) == 2 * 2205  # 100 ms pieces
    stamps = [stamp_ns(m.header) for m in tester.audio]
    assert stamps == sorted(stamps)  # each piece stamped when it is due to play
    assert spin_until(executor, lambda: tester.values().get("utterances") == "1")
    assert tester.values()["backend"] in ("piper", "espeak")
    assert float(tester.values()["text_to_first_audio_p50_ms"]) > 0
    node.on_shutdown(None)  # closes the WAV file
    written, wav_rate = soundfile.read(wav, dtype="int16")
    assert wav_rate == rate_hz and soundfile.info(wav).subtype == "PCM_16"
    np.testing.assert_array_equal(written, samples)


def test_streamed_reply_is_spoken_before_its_final_arrives(rig):
    make, tester, executor = rig
    node = make(input="reply")
    start(node)
    assert spin_until(executor, lambda: tester.speaking == [False])
    text = ""
    for token in ["Hello", " there", ".", " I", " am", " the", " robot"]:
        text += token
        tester.reply(incremental=text)
    # "Hello there." is complete once " I" follows it: speech must start without the final
    assert spin_until(executor, lambda: tester.audio, 30), "no audio before the final"
    final = tester.reply(final=text + ".")
    first_audio = min(tester.audio_seq)
    final_seq = next(seq for seq, what in tester.events if what == "final sent")
    assert first_audio < final_seq
    assert stamp_ns(tester.audio[0].header) <= stamp_ns(final.header)  # due to play before
    assert spin_until(executor, lambda: tester.speaking == [False, True, False], 30)
    assert spin_until(executor, lambda: tester.values().get("utterances") == "1")
    values = tester.values()
    assert values["sentences"] == "2"  # "Hello there." once, then "I am the robot."
    assert values["dropped_sentences"] == "0" and values["errors"] == "0"


def test_text_flood_drops_the_oldest_and_counts(rig):
    make, tester, executor = rig
    node = make(input="speech", backend="espeak", queue_size=2)
    start(node)
    for i in range(30):
        tester.speech_pub.publish(String(data=f"Message {i}."))
    assert spin_until(executor, lambda: int(tester.values().get("dropped_sentences", "0")) > 0)
    assert any(s.level == DiagnosticStatus.WARN for s in tester.diagnostics)


def test_bad_parameters_are_refused_with_a_reason(rig):
    make, tester, executor = rig
    node = make(backend="espeak")
    for name, value in [("length_scale", 0.0), ("volume", -1.0), ("backend", "festival"),
                        ("input", "both"), ("chunk_ms", 0), ("sample_rate", 96000)]:
        result = node.set_parameters([Parameter(name, value=value)])[0]
        assert not result.successful and name in result.reason, (name, result.reason)
    start(node)
    assert node.set_parameters([Parameter("volume", value=0.5)])[0].successful
    assert node.voice.options.volume == 0.5  # applies from the next sentence


def test_unknown_voice_fails_configure_and_can_be_retried(rig):
    make, tester, executor = rig
    node = make(voice="xx-no-such-voice")
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert spin_until(executor, lambda: tester.diagnostics and
                      "xx-no-such-voice" in tester.diagnostics[-1].message)
    assert tester.diagnostics[-1].level == DiagnosticStatus.ERROR
    assert node.set_parameters([Parameter("voice", value="")])[0].successful
    start(node)
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    start(node)  # configure/cleanup cycles leave nothing behind


def test_play_locally_without_an_output_device_fails_cleanly(rig):
    pyaudio = pytest.importorskip("pyaudio", reason="PyAudio is not installed")
    pa = pyaudio.PyAudio()
    outputs = sum(pa.get_device_info_by_index(i)["maxOutputChannels"] > 0
                  for i in range(pa.get_device_count()))
    pa.terminate()
    if outputs:
        pytest.skip("this machine has an audio output device")
    make, tester, executor = rig
    node = make(backend="espeak", play_locally=True)
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert spin_until(executor, lambda: tester.diagnostics and
                      "no audio output device" in tester.diagnostics[-1].message)


def test_a_reply_whose_final_was_lost_is_closed_when_the_next_begins(rig):
    make, tester, executor = rig
    node = make(input="reply", backend="espeak")
    start(node)
    tester.reply(incremental="Hello there. How")  # its publisher died before the final
    tester.reply(incremental="Good morning. All")
    tester.reply(final="Good morning. All good.")
    assert spin_until(executor, lambda: tester.values().get("utterances") == "2", 30)
    assert tester.values()["sentences"] == "3"  # Hello there. / Good morning. / All good.


def test_self_hearing_wiring_mutes_the_microphone_while_the_robot_speaks(rig, toy_model_dir):
    """interaction reply -> speech node -> is_speaking -> interaction robot_speaking.

    The robot's own synthesized reply is played back into the microphone topic (as a speaker
    next to the microphone would): it triggers no reply (the toy model answers any speech with
    "Someone is speaking."), while a beep after the tail is answered again."""
    make, tester, executor = rig
    speech = make(input="reply", backend="espeak", sample_rate=16000,
                  cli_args=["--ros-args", "-r", "reply:=/audio_interaction/reply"])
    ears = InteractionNode(context=tester.node.context, cli_args=[
        "--ros-args", "-r", "robot_speaking:=/speech/is_speaking"], parameter_overrides=[
        Parameter(k, value=v) for k, v in dict(model=str(toy_model_dir), device="cpu",
                                               temperature=0.0, autostart=False,
                                               speaking_tail_s=0.5,
                                               diagnostics_period_s=0.2).items()])
    executor.add_node(ears)
    replies: list[str] = []
    tester.node.create_subscription(String, "/audio_interaction/speech",
                                    lambda m: replies.append(m.data), RELIABLE)
    try:
        start(speech)
        assert ears.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert ears.trigger_activate() == TransitionCallbackReturn.SUCCESS
        mic = tester.node.create_publisher(AudioDataStamped, "audio", RELIABLE)
        tester.node.create_publisher(AudioInfo, "audio_info", LATCHED).publish(
            messages.audio_info(16000, 1))
        dropped = []
        tester.node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: dropped.extend(
            float(kv.value) for s in m.status if "audio interaction" in s.name
            for kv in s.values if kv.key == "dropped_s.robot_speaking"), 10)
        assert spin_until(executor, lambda: tester.speaking == [False] and
                          mic.get_subscription_count() > 0)
        t = np.arange(6400) / 16000
        beep = (0.5 * np.sin(2 * np.pi * 1000 * t) * 32767).astype("<i2")
        clip = np.concatenate([np.zeros(12800, "<i2"), beep, np.zeros(25600, "<i2")])
        stamp_ns = tester.node.get_clock().now().nanoseconds

        def send(samples: np.ndarray) -> None:
            nonlocal stamp_ns
            for start_at in range(0, len(samples), 1600):  # 0.1 s messages
                piece = samples[start_at:start_at + 1600]
                stamp = rclpy.time.Time(nanoseconds=stamp_ns).to_msg()
                mic.publish(messages.audio_message(piece, stamp, "mic"))
                stamp_ns += len(piece) * 62_500

        send(clip)
        assert spin_until(executor, lambda: replies == ["I hear a beep."], 30)
        assert spin_until(executor, lambda: True in tester.speaking, 30)
        # the speaker's sound reaches the microphone while the robot speaks
        fed = 0
        while tester.speaking[-1] and spin_until(executor, lambda: len(tester.audio) > fed, 5):
            for msg in tester.audio[fed:]:
                send(np.frombuffer(bytes(msg.audio.data), dtype="<i2"))
            fed = len(tester.audio)
        assert fed > 5 and len(tester.samples()) / 16000 > 1.0  # it really said something
        assert spin_until(executor, lambda: tester.speaking[-1] is False, 30)
        assert spin_until(executor, lambda: dropped and dropped[-1] >= 1.0, 10)
        send(np.zeros(16000, "<i2"))  # past the tail; nothing was answered meanwhile
        assert spin_until(executor, lambda: ears.engine.backlog_s < 0.4, 10)
        assert replies == ["I hear a beep."]
        send(clip)  # the robot is quiet again: a beep is answered
        assert spin_until(executor, lambda: len(replies) == 2, 30)
        assert replies[1] == "I hear a beep."
    finally:
        ears.on_shutdown(None)
        executor.remove_node(ears)
        ears.destroy_node()


def test_speech_node_process_stops_on_sigint_with_a_valid_wav(ros_context, tmp_path):
    wav, log = tmp_path / "said.wav", tmp_path / "speech.log"
    env = child_env(PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "audio_interaction_ros.ros.speech_node",
                             "--ros-args", "-p", "input:=speech", "-p", "backend:=espeak",
                             "-p", f"wav_path:={wav}"],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    tester = SpeechTester(ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(tester.node)
    try:
        assert spin_until(executor, lambda: tester.speaking == [False], 60), log.read_text()
        tester.speech_pub.publish(String(data="Goodbye."))
        assert spin_until(executor, lambda: tester.speaking == [False, True, False], 30)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        tester.node.destroy_node()
    assert code == 0 and "Traceback" not in log.read_text(), log.read_text()
    written, _ = soundfile.read(wav, dtype="int16")
    np.testing.assert_array_equal(written, tester.samples())
