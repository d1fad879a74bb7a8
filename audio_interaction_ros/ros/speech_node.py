"""The speech node: what the robot should say (text) becomes audio (a topic, a speaker, a WAV).

configure: open the voice (piper or espeak-ng; FAILURE with the reason, the node stays up), the
optional local speaker and WAV file, and the publishers. activate: subscribe to ``speech`` or
``reply`` and start the speaker's threads. Callbacks only cut text into sentences and queue them;
a worker thread synthesizes, another publishes the audio paced in real time (a little ahead), so
the executor never waits for synthesis. ``~/is_speaking`` is true from the first audio of an
utterance until its audio has played out: wire it to the interaction node's ``robot_speaking``.
"""
from __future__ import annotations

import sys
import threading
import time

import numpy as np
import soundfile
from audio_common_msgs.msg import AudioDataStamped, AudioInfo
from diagnostic_msgs.msg import DiagnosticArray
from hri_msgs.msg import LiveSpeech
from numpy.typing import NDArray
from rclpy.duration import Duration
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from std_msgs.msg import Bool, String

from ..voice.local_output import LocalOutput
from ..voice.sentences import SentenceSplitter, sentences
from ..voice.speaker import Speaker
from ..voice.tts import Voice, VoiceConfig, VoiceOptions, open_voice
from .lifecycle import ManagedNodeMixin
from . import messages, params, qos, runtime
from .portaudio import quiet_portaudio

ACK_WAIT_S = 1.0  # on shutdown, how long the last is_speaking may take to reach its subscribers


# ---------------------------------------------------------------------------------- node
class SpeechNode(ManagedNodeMixin, LifecycleNode):
    """Lifecycle node turning reply text into speech audio."""

    PARAMS = params.SPEECH

    def __init__(self, node_name: str = "speech", **kwargs) -> None:
        self._voice: Voice | None = None
        self._speaker: Speaker | None = None
        self._local: LocalOutput | None = None
        self._wav: soundfile.SoundFile | None = None
        self._wav_lock = threading.Lock()
        self._pubs: dict[str, object] = {}
        self._subs: list = []
        self._splitter: SentenceSplitter | None = None  # the reply being streamed
        self._revisions = 0
        self._speaking = False
        self._frame_id = ""
        self._load_error = ""
        self._seen_reasons: set[str] = set()
        self._last_totals: dict[str, int] = {}
        super().__init__(node_name, **kwargs)
        self._declare_parameters()
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics",
                                                      qos.PERIODIC)
        self._diagnostics_timer = self.create_timer(
            self._param("diagnostics_period_s"), self._publish_diagnostics)

    @property
    def voice(self) -> Voice | None:
        """The voice (None unless configured); for tests and benchmarks."""
        return self._voice

    def _apply_parameters(self, changes) -> None:
        values = {change.name: change.value for change in changes}
        voice = self._voice
        if voice is not None and values.keys() & {"length_scale", "volume"}:
            # the next sentence is spoken with the new options (one object swapped at once)
            voice.options = VoiceOptions(
                length_scale=values.get("length_scale", voice.options.length_scale),
                volume=values.get("volume", voice.options.volume))

    # ---------------------------------------------------------------- lifecycle
    @property
    def speaking(self) -> bool:
        """True while queued speech has not played out (what ~/is_speaking last said)."""
        return self._speaking

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """SUCCESS -> inactive with the voice loaded; FAILURE -> unconfigured, reason logged."""
        rate_hz = self._param("sample_rate")
        try:
            self._voice = open_voice(VoiceConfig(
                backend=self._param("backend"), voice=self._param("voice"),
                sample_rate_hz=rate_hz, threads=self._param("threads"),
                options=VoiceOptions(self._param("length_scale"), self._param("volume"))))
            if self._param("play_locally"):
                quiet_portaudio(self.get_logger().debug)
                self._local = LocalOutput(self._param("output_device"), rate_hz)
            if self._param("wav_path"):
                self._wav = self._open_wav(self._param("wav_path"), rate_hz)
        except (ValueError, OSError, RuntimeError) as exc:
            self._close_outputs()
            self._load_error = str(exc)
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self._load_error = ""
        self._frame_id = self._param("frame_id")
        make = self.create_lifecycle_publisher
        self._pubs = {"audio": make(AudioDataStamped, "~/speech_audio", qos.AUDIO_RELIABLE),
                      "info": make(AudioInfo, "~/speech_audio_info", qos.LATCHED),
                      "is_speaking": make(Bool, "~/is_speaking", qos.LATCHED)}
        self._speaker = Speaker(self._voice, self._param("chunk_ms") / 1000.0,
                                self._param("publish_ahead_s"), self._param("queue_size"),
                                emit=self._emit, speaking=self._publish_speaking,
                                on_error=lambda m: self._log_once("synthesis", m))
        fallback = self._voice.fallback_reason
        self.get_logger().info(f"speaking with the {self._voice.describe()}"
                               + (f" (piper not used: {fallback})" if fallback else ""))
        return TransitionCallbackReturn.SUCCESS

    @staticmethod
    def _open_wav(path: str, rate_hz: int) -> soundfile.SoundFile:
        try:
            return soundfile.SoundFile(path, "w", samplerate=rate_hz, channels=1,
                                       subtype="PCM_16", format="WAV")
        except (RuntimeError, OSError) as exc:  # libsndfile reports as RuntimeError
            raise ValueError(f"wav_path {path!r} cannot be written: {exc}") from exc

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe and start the speaker; publishers switch on in super()."""
        if self._param("input") == "speech":
            self._subs = [self.create_subscription(String, "speech", self._on_speech, qos.TEXT)]
        else:
            self._subs = [self.create_subscription(LiveSpeech, "reply", self._on_reply,
                                                   qos.TEXT)]
        result = super().on_activate(state)
        self._pubs["info"].publish(messages.audio_info(self._voice.sample_rate_hz, 1))
        self._publish_speaking(False)
        self._speaker.start()
        return result

    def _teardown_active(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        self._splitter = None
        if self._speaker is not None and not self._speaker.stop(timeout_s=10.0):
            self.get_logger().warning("speech threads did not stop within 10 s (a long "
                                      "sentence still being synthesized?)")
        if self._speaking and "is_speaking" in self._pubs and self.context.ok():
            # a listener muted by is_speaking (the interaction node's robot_speaking) must hear
            # that the robot stopped, also when this node is shut down mid-sentence
            self._publish_speaking(False)
            self._pubs["is_speaking"].wait_for_all_acked(Duration(seconds=ACK_WAIT_S))

    def _teardown_configured(self) -> None:
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs = {}
        self._speaker = None
        self._close_outputs()

    def _close_outputs(self) -> None:
        if self._local is not None:
            self._local.close()
            self._local = None
        with self._wav_lock:
            if self._wav is not None:
                self._wav.close()
                self._wav = None
        if self._voice is not None:
            self._voice.close()
            self._voice = None

    # ---------------------------------------------------------------- inputs (executor)
    def _on_speech(self, msg: String) -> None:
        speaker = self._speaker
        if speaker is not None:
            speaker.say("speech", list(sentences([msg.data])), time.monotonic(), end=True)

    def _on_reply(self, msg: LiveSpeech) -> None:
        speaker, received_s = self._speaker, time.monotonic()
        if speaker is None or not (msg.final or msg.incremental):
            return
        # One reply stream per topic. Several reply sessions of the interaction node merge on
        # its ~/reply: then remap reply to one session's ~/<session>/reply (README).
        key = "reply"
        splitter = self._splitter = self._splitter or SentenceSplitter()
        if splitter.starts_anew(msg.final or msg.incremental):
            speaker.say(key, [], received_s, end=True)  # the last one's final never came
            splitter = self._splitter = SentenceSplitter()
        before = splitter.revisions
        if msg.final:
            texts = splitter.finish(msg.final)
            self._splitter = None
        else:
            texts = splitter.update(msg.incremental)
        if splitter.revisions > before:
            self._revisions += 1
            self._log_once("revised", "a reply's incremental text was revised; what was "
                           "already spoken stays spoken")
        if texts or msg.final:
            speaker.say(key, texts, received_s, end=bool(msg.final))

    # ---------------------------------------------------------------- outputs (speaker thread)
    def _emit(self, pcm: NDArray[np.int16], due_s: float) -> None:
        ahead = Duration(nanoseconds=max(0, int((due_s - time.monotonic()) * 1e9)))
        stamp = (self.get_clock().now() + ahead).to_msg()  # when the piece is due to play
        pub = self._pubs.get("audio")
        if pub is not None:
            pub.publish(messages.audio_message(pcm, stamp, self._frame_id))
        with self._wav_lock:
            if self._wav is not None:
                self._wav.write(pcm)
                self._wav.flush()  # the header stays valid even if the process is killed
        if self._local is not None:
            self._local.write(pcm)

    def _publish_speaking(self, speaking: bool) -> None:
        self._speaking = speaking
        pub = self._pubs.get("is_speaking")
        if pub is not None:
            pub.publish(Bool(data=speaking))

    def _publish_diagnostics(self) -> None:
        stamp = self.get_clock().now().to_msg()
        name = f"{self.get_fully_qualified_name()}: speech"
        voice, speaker = self._voice, self._speaker
        if voice is None or speaker is None:
            message = f"configure failed: {self._load_error}" if self._load_error else \
                "not configured"
            self._diagnostics_pub.publish(messages.diagnostics(
                stamp, name, "", "ERROR", message,
                {"voice": self._param("voice"), "backend": self._param("backend")}))
            return
        stats = speaker.stats()
        latency_ms = np.asarray(stats.first_audio_latency_s) * 1000.0
        p50, p95 = (np.percentile(latency_ms, [50, 95]) if len(latency_ms) else (0.0, 0.0))
        values = {
            "backend": voice.backend, "voice": voice.name,
            "sample_rate_hz": str(voice.sample_rate_hz), "speaking": str(self._speaking),
            "utterances": str(stats.utterances), "sentences": str(stats.sentences),
            "audio_s": f"{stats.audio_s:.2f}", "queue_depth": str(stats.queue_depth),
            "dropped_sentences": str(stats.dropped), "errors": str(stats.errors),
            "revised_replies": str(self._revisions),
            "synthesis_real_time_factor":
                f"{stats.synthesis_s / stats.audio_s:.3f}" if stats.audio_s else "0.000",
            "text_to_first_audio_p50_ms": f"{p50:.1f}",
            "text_to_first_audio_p95_ms": f"{p95:.1f}",
        }
        if self._local is not None:
            values["local_output_overflow_s"] = \
                f"{self._local.overflow_bytes / 2 / voice.sample_rate_hz:.2f}"
        totals = {"dropped": stats.dropped, "errors": stats.errors}
        worse = self._worsened(totals)
        if "errors" in worse:
            level, message = "WARN", stats.last_error
        elif worse:
            level, message = "WARN", "text came faster than speech: oldest sentences dropped"
        else:
            level, message = "OK", "speaking" if self._speaking else "silent"
        self._diagnostics_pub.publish(messages.diagnostics(stamp, name, voice.backend, level,
                                                           message, values))


def main(args: list[str] | None = None) -> int:
    """Entry point: ``ros2 run audio_interaction_ros speech_node``."""
    return runtime.run(SpeechNode, "speech_node", args)


if __name__ == "__main__":
    sys.exit(main())
