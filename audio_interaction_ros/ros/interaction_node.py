"""The interaction node: ROS wiring around the core engine (a thin lifecycle adapter).

configure: read parameters, load the model (FAILURE with the reason; the node stays up), create
publishers. activate: subscribe to audio, start the engine thread, give the sessions their
instructions. Callbacks only convert and enqueue; the engine thread runs the model and publishes
what it reports. The listen/speak loop itself is in core/session.py.
"""
from __future__ import annotations

import sys
import threading
import time
from collections import Counter

import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from hri_msgs.msg import LiveSpeech
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from std_msgs.msg import Bool, Float32, String
from std_srvs.srv import SetBool, Trigger

from ..core.audio import read_audio_file
from ..core.checkpoint import CheckpointError
from ..core.engine import Engine, EngineConfig, Stream
from ..core.events import (AudioDropped, ContextRebuilt, Decision, EngineError, Event,
                           ReplyDelta, ReplyDone)
from ..core.ingest import AudioIngest
from ..core.model import AudioInteractionModel
from ..core.sampling import SamplingConfig
from ..core.session import ListenSession, SessionConfig
from ..core.protocol import SAMPLE_RATE_HZ
from ..voice.tts import ESPEAK_BASE_WPM, Voice, VoiceConfig, VoiceOptions, open_voice
from .audio_input import AudioInput, Variant, detect_variant, to_piece
from .hri_output import HriVoice
from .lifecycle import ManagedNodeMixin
from .model_host import ModelHost, ModelRequest
from . import messages, params, qos, runtime


STOP_WAIT_S = 30.0  # deactivate waits this long for a reply in progress to end


class InteractionNode(ManagedNodeMixin, LifecycleNode):
    """Lifecycle node running the Audio-Interaction model on an audio topic."""

    PARAMS = params.INTERACTION

    def __init__(self, node_name: str = "audio_interaction", *,
                 models: ModelHost | None = None, **kwargs) -> None:
        """Build the node; ``models`` is where configure gets the model.

        fleet_node passes one host to every robot's node so that they share it (default: a host of
        this node's own).
        """
        self._models = models or ModelHost()
        self._shared: Engine | None = None  # the host's engine; this node is one stream of it
        self._engine: Stream | None = None
        self._model: AudioInteractionModel | None = None
        self._ingest: AudioIngest | None = None
        self._out_pubs: dict[str, object] = {}
        self._probability_pubs: dict[str, object] = {}
        self._session_pubs: dict[str, object] = {}
        self._audio_frame_id = ""  # the microphone's frame, from the audio messages
        self._audio_subs: list = []
        self._input: AudioInput | None = None
        self._variant: Variant | None = None
        self._hri: HriVoice | None = None
        self._outputs: dict[str, str] = {}
        self._state_lock = threading.Lock()
        self._robot_speaking_until = 0.0
        self._robot_speaking = False
        self._reply_text: dict[str, str] = {}
        self._seen_reasons: set[str] = set()
        self._load_error = ""
        self._event_counts: Counter[str] = Counter()
        self._last_totals: dict[str, float] = {}
        self._audio_origin_s: float | None = None
        self._instruction_voice: Voice | None = None
        super().__init__(node_name, **kwargs)
        self._session_names = self._declare_parameters()
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics",
                                                      qos.PERIODIC)
        self._diagnostics_timer = self.create_timer(
            self._param("diagnostics_period_s"), self._publish_diagnostics)
        self.create_service(SetBool, "~/set_listening", self._on_set_listening)
        for name in self._session_names:
            self.create_service(Trigger, f"~/{name}/reset",
                                lambda req, res, n=name: self._on_reset(n, res))

    @property
    def engine(self) -> Stream | None:
        """Return the running engine, or None unless configured; for bringup and tests."""
        return self._engine

    # ---------------------------------------------------------------- parameters
    def _apply_parameters(self, changes) -> None:
        if self._engine is not None:  # dynamic changes that need the engine
            for change in changes:
                key = change.name.rsplit(".", 1)
                if len(key) == 2 and key[0] in self._session_names and key[1].startswith(
                        "instruction"):
                    self._later(lambda n=key[0]: self._instruct(n))
                elif change.name in ("temperature", "top_k", "top_p", "seed"):
                    self._later(self._apply_sampling)
                elif change.name == "channel_index" and self._ingest is not None:
                    self._ingest.channel_index = change.value
                elif change.name == "gap_tolerance_s" and self._ingest is not None:
                    self._ingest.gap_tolerance_s = change.value
                elif change.name in ("tts_voice", "tts_backend"):
                    self._later(self._reopen_instruction_voice)

    def _later(self, action) -> None:
        """Run ``action`` after the parameter update is stored (one-shot timer)."""
        timer = None

        def fire():
            timer.cancel()
            self.destroy_timer(timer)
            action()

        timer = self.create_timer(0.0, fire)

    def _sampling(self) -> SamplingConfig:
        seed = self._param("seed")
        return SamplingConfig(temperature=self._param("temperature"), top_k=self._param("top_k"),
                              top_p=self._param("top_p"), seed=None if seed < 0 else seed)

    def _apply_sampling(self) -> None:
        engine = self._engine
        if engine is None:
            return
        try:
            sampling = self._sampling()
        except ValueError as exc:
            self.get_logger().error(f"sampling settings not applied: {exc}")
            return
        for name in self._session_names:
            engine.call_soon(lambda n=name: engine.session(n).set_sampling(sampling))

    def _session_config(self, name: str) -> SessionConfig:
        return SessionConfig(name=name, sampling=self._sampling(),
                             max_reply_tokens=self._param("max_reply_tokens"),
                             rope_positions=self._param("rope_positions"),
                             max_context_tokens=self._param("max_context_tokens"),
                             keep_context_tokens=self._param("keep_context_tokens"))

    # ---------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """SUCCESS -> inactive with the model loaded; FAILURE -> unconfigured, reason logged."""
        try:
            configs = [self._session_config(n) for n in self._session_names]
            engine_config = EngineConfig(max_backlog_s=self._param("max_backlog_s"),
                                         floor_window_s=self._param("floor_window_s"))
            self._shared, loaded = self._models.acquire(self._model_request(), self._load_model)
            self._model = self._shared.model
            sessions = [ListenSession(self._model, c) for c in configs]
            self._instruction_voice = self._open_instruction_voice()
            self._variant = detect_variant()
            self._engine = self._shared.add_stream(self.get_fully_qualified_name(), sessions,
                                                   engine_config, emit=self._on_event)
            self._engine.pause()  # no audio, commands or replies of this node until activate
        except (CheckpointError, ValueError, RuntimeError, OSError, ImportError) as exc:
            self._load_error = str(exc)
            self._release_model()
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self._load_error = ""
        self._ingest = AudioIngest(self._param("channel_index"), self._param("gap_tolerance_s"))
        self._outputs = {n: self._param(f"{n}.output") for n in self._session_names}
        make = self.create_lifecycle_publisher
        self._out_pubs = {
            "speech": make(String, "~/speech", qos.TEXT),
            "reply": make(LiveSpeech, "~/reply", qos.TEXT),
            "transcript": make(LiveSpeech, "~/transcript", qos.TEXT),
            "sound_events": make(LiveSpeech, "~/sound_events", qos.TEXT),
            # true while the model generates a reply (not while audio plays: that is the
            # speech node's is_speaking)
            "is_replying": make(Bool, "~/is_replying", qos.LATCHED),
        }
        self._probability_pubs = {n: make(Float32, f"~/{n}/speak_probability", qos.PERIODIC)
                                  for n in self._session_names}
        # the session is said by the topic, not in the message: ~/reply etc. merge the sessions
        # of one output kind, ~/<session>/<output> carries that session's messages alone
        self._session_pubs = {n: make(LiveSpeech, f"~/{n}/{self._outputs[n]}", qos.TEXT)
                              for n in self._session_names}
        self._hri = self._open_hri_voice()
        info = self._model.info
        how = "loaded on" if loaded else \
            f"shared with {self._models.users(self._shared) - 1} other node(s), on"
        self.get_logger().info(
            f"model {info.source} {how} {info.device} ({info.dtype}: {info.dtype_reason}; "
            f"{info.n_layers} layers, width {info.width}; quantization {info.quantization}, "
            f"{info.weight_bytes / 1e9:.2f} GB of weights; compiled {info.compiled}: "
            f"{info.compile_reason}); sessions: {', '.join(self._session_names)}")
        return TransitionCallbackReturn.SUCCESS

    def _model_request(self) -> ModelRequest:
        return ModelRequest(model=self._param("model"), device=self._param("device"),
                            dtype=self._param("dtype"), cache_dir=self._param("hf_cache_dir"))

    def _release_model(self) -> None:
        """Leave the shared engine (this node's stream first).

        The host frees the model once no node uses it.
        """
        shared, stream = self._shared, self._engine
        self._shared, self._engine, self._model = None, None, None
        if shared is None:
            return
        if stream is not None and stream.name in shared.stream_names:
            shared.remove_stream(stream.name)
        if not self._models.release(shared):
            self.get_logger().warning("engine thread did not stop within 30 s (long reply?)")

    def _open_hri_voice(self) -> HriVoice | None:
        """Open the ros4hri voice (hri_voice_id), fed by the transcript sessions."""
        voice_id = self._param("hri_voice_id")
        if not voice_id:
            return None
        sessions = [n for n, output in self._outputs.items() if output == "transcript"]
        if not sessions:
            self.get_logger().warning(
                f"hri_voice_id {voice_id!r}: no session has output 'transcript', so "
                f"/humans/voices/{voice_id}/speech stays silent (a reply is the robot's answer, "
                "not what the human said)")
        return HriVoice(self, voice_id, sessions, lambda: self._param("locale"))

    def _open_instruction_voice(self) -> Voice:
        """Open the voice that speaks typed instructions into the stream, at the model's 16 kHz.

        160 words a minute on espeak-ng (what the toy model learnt from).
        """
        return open_voice(VoiceConfig(
            backend=self._param("tts_backend"), voice=self._param("tts_voice"),
            sample_rate_hz=SAMPLE_RATE_HZ, threads=1,
            options=VoiceOptions(length_scale=ESPEAK_BASE_WPM / 160)))

    def _reopen_instruction_voice(self) -> None:
        if self._engine is None:
            return
        try:
            self._instruction_voice = self._open_instruction_voice()
        except ValueError as exc:
            self.get_logger().error(f"instruction voice not changed: {exc}")

    def _load_model(self) -> AudioInteractionModel:
        if self._param("cpu_threads") > 0:
            torch.set_num_threads(self._param("cpu_threads"))
        kwargs = dict(model=self._param("model"), dtype=self._param("dtype"),
                      cache_dir=self._param("hf_cache_dir") or None,
                      quantization=self._param("quantization"), compile=self._param("compile"))
        device = self._param("device")
        try:
            return AudioInteractionModel.load(device=device, **kwargs)
        except (ValueError, RuntimeError) as exc:
            gpu_problem = "CUDA" in str(exc) or "GPU" in str(exc)
            if not (gpu_problem and self._param("allow_cpu_fallback")) or device == "cpu":
                raise
            self.get_logger().warning(f"{exc}; falling back to the CPU (allow_cpu_fallback)")
            return AudioInteractionModel.load(device="cpu", **kwargs)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe and start the engine; publishers switch on in super()."""
        audio_qos = qos.AUDIO_RELIABLE if self._param("audio_reliable") else \
            qos.AUDIO_BEST_EFFORT
        self._input = AudioInput(self, self._variant, self._param("audio_type"), self._on_audio,
                                 self._on_audio_info, audio_qos, qos.LATCHED)
        self._input.open()
        self.get_logger().info(f"audio input: {self._input.describe()} "
                               f"(audio_type {self._param('audio_type')})")
        self._audio_subs = [
            self.create_subscription(Bool, "robot_speaking", self._on_robot_speaking,
                                     qos.LATCHED),
        ]
        result = super().on_activate(state)
        if self._hri is not None:
            self._hri.on_activate()
        for name in self._session_names:
            self._instruct(name)
        self._engine.resume()
        self._out_pubs["is_replying"].publish(Bool(data=False))
        return result

    def _teardown_active(self) -> None:
        if self._input is not None:
            self._input.close()
            self._input = None
        for sub in self._audio_subs:
            self.destroy_subscription(sub)
        self._audio_subs = []
        stream = self._engine
        if stream is None:
            return
        stream.pause()  # the chunk in progress ends, replies included; the backlog waits
        deadline = time.monotonic() + STOP_WAIT_S
        while stream.busy and time.monotonic() < deadline:
            time.sleep(0.01)
        if stream.busy:
            self.get_logger().warning(f"a reply was still going on after {STOP_WAIT_S:.0f} s")

    def _teardown_configured(self) -> None:
        for pub in [*self._out_pubs.values(), *self._probability_pubs.values(),
                    *self._session_pubs.values()]:
            self.destroy_publisher(pub)
        self._out_pubs, self._probability_pubs, self._session_pubs = {}, {}, {}
        if self._hri is not None:
            self._hri.close()
            self._hri = None
        self._ingest = None
        self._release_model()
        if self._instruction_voice is not None:
            self._instruction_voice.close()
            self._instruction_voice = None

    # ---------------------------------------------------------------- inputs
    def _on_audio_info(self, msg) -> None:
        """ros-drivers' AudioInfo topic: the format of the audio that follows."""
        fmt = messages.pcm_format(msg)
        with self._state_lock:
            ingest = self._ingest
            changed = ingest is not None and fmt != ingest.format  # drivers repeat it (5 s)
            reason = ingest.set_format(fmt) if ingest is not None else None
        if reason:
            self._log_once("unsupported_format", f"audio_info rejected: {reason}")
        elif changed:
            self.get_logger().info(f"audio: {fmt.sample_rate_hz} Hz, {fmt.channels} channel(s), "
                                   f"{fmt.sample_format}, {fmt.coding_format or 'pcm'}")

    def _on_audio(self, msg) -> None:
        """Take an audio message of the installed variant, stamped or not (ros/audio_input.py)."""
        engine, ingest, variant = self._engine, self._ingest, self._variant
        if engine is None or ingest is None or variant is None:
            return
        piece = to_piece(variant, msg)
        # only a message without a header is stamped on arrival; a zero header stamp stays
        # unchecked, as before (a publisher that leaves it empty)
        arrival_s = self.get_clock().now().nanoseconds * 1e-9 if piece.stamp_s is None else None
        with self._state_lock:
            converted = (ingest.refuse("unsupported_format", f"audio rejected: {piece.refused}")
                         if piece.refused else
                         ingest.convert(piece.payload, piece.stamp_s, piece.fmt, arrival_s))
        for reason, detail in converted.notes:
            self._log_once(reason, detail)
        if converted.format_changed is not None:
            fmt = converted.format_changed
            self.get_logger().info(f"audio: {fmt.sample_rate_hz} Hz, {fmt.channels} channel(s), "
                                   f"{fmt.sample_format} (carried by the messages)")
        samples = converted.samples
        if samples is None:
            return
        self._audio_frame_id = piece.frame_id
        if self._audio_origin_s is None and converted.stamp_s:
            # the audio clock's zero on the publisher's clock (or the arrival clock of unstamped
            # audio): replies are stamped with the end of the chunk that triggered them, on the
            # time base of the audio itself
            self._audio_origin_s = converted.stamp_s
        if not self._param("listening"):
            engine.count_dropped(len(samples), "listening_disabled")
        elif self._param("ignore_while_speaking") and self._self_hearing():
            engine.count_dropped(len(samples), "robot_speaking")
        else:
            engine.push(samples)

    def _self_hearing(self) -> bool:
        return self._robot_speaking or time.monotonic() < self._robot_speaking_until

    def _on_robot_speaking(self, msg: Bool) -> None:
        if self._robot_speaking and not msg.data:
            self._robot_speaking_until = time.monotonic() + self._param("speaking_tail_s")
        self._robot_speaking = bool(msg.data)

    def _instruct(self, name: str) -> None:
        """Give session ``name`` its instruction (audio file, spoken text or text turn).

        It replaces the previous one, and the same one again (re-activation) is not repeated.
        """
        if self._engine is None:
            return
        audio_file = self._param(f"{name}.instruction_audio")
        text = self._param(f"{name}.instruction").strip()
        try:
            if audio_file:
                self._engine.instruct_audio(name, read_audio_file(audio_file),
                                            source=f"audio file {audio_file}")
            elif text and self._param(f"{name}.instruction_mode") == "text_turn":
                self._engine.instruct_text(name, text)
            elif text:
                self._engine.instruct_audio(name, self._instruction_voice.synthesize(text)[0],
                                            source=f"spoken {text!r}")
            else:
                self._engine.clear_instruction(name)
                return
        except ValueError as exc:
            self.get_logger().error(f"session {name}: instruction not given: {exc}")
            return
        self.get_logger().info(f"session {name}: instruction queued "
                               f"({audio_file or repr(text)})")

    # ---------------------------------------------------------------- services
    def _on_set_listening(self, request: SetBool.Request,
                          response: SetBool.Response) -> SetBool.Response:
        self.set_parameters([Parameter("listening", value=request.data)])
        if not request.data and self._engine is not None:
            self._engine.drop_backlog("listening_disabled")
        response.success = True
        response.message = "listening" if request.data else "not listening (audio discarded)"
        return response

    def _on_reset(self, name: str, response: Trigger.Response) -> Trigger.Response:
        if self._engine is None:
            response.success, response.message = False, "not configured"
            return response
        self._engine.reset_session(name)
        self._later(lambda: self._instruct(name))
        response.success, response.message = True, f"session {name} reset"
        return response

    # ---------------------------------------------------------------- outputs (engine thread)
    def _on_event(self, event: Event) -> None:
        """Handle every event, on the engine thread; publishing is thread-safe in rclpy."""
        self._event_counts[type(event).__name__] += 1
        try:
            self._publish_event(event)
        except Exception as exc:  # a transport failure must not stop the engine thread
            self._log_once("publish_failed", f"publishing failed: {exc}")

    def _publish_event(self, event: Event) -> None:
        if not self._out_pubs:
            return
        stamp = self._audio_stamp(getattr(event, "stream_time_s", None))
        locale = self._param("locale")
        if self._hri is not None:
            self._hri.on_event(event, stamp)
        if isinstance(event, Decision):
            self._probability_pubs[event.session].publish(Float32(data=event.p_speak))
            if event.speak:
                self._reply_text[event.session] = ""
                self._out_pubs["is_replying"].publish(Bool(data=True))
        elif isinstance(event, ReplyDelta):
            text = self._reply_text.get(event.session, "") + event.text
            self._reply_text[event.session] = text
            self._publish_live_speech(event.session, messages.live_speech(
                stamp, self._audio_frame_id, incremental=text, locale=locale))
        elif isinstance(event, ReplyDone):
            output = self._outputs.get(event.session, "reply")
            self._publish_live_speech(event.session, messages.live_speech(
                stamp, self._audio_frame_id, final=event.text, confidence=event.p_speak,
                locale=locale))
            if output == "reply":
                self._out_pubs["speech"].publish(String(data=event.text))
            self._publish_replying_ended()
            if event.truncated:
                self._log_once("reply_truncated", f"session {event.session}: reply cut at "
                               f"max_reply_tokens ({self._param('max_reply_tokens')})")
        elif isinstance(event, AudioDropped):
            self._log_once(f"dropped_{event.reason}", f"dropped {event.seconds:.2f} s of audio: "
                           f"{event.reason}")
        elif isinstance(event, ContextRebuilt):
            self.get_logger().debug(f"session {event.session}: context {event.tokens_before} -> "
                                    f"{event.tokens_after} tokens")
        elif isinstance(event, EngineError):
            self.get_logger().error(event.message, throttle_duration_sec=5.0)
            self._publish_replying_ended()  # a failure may have abandoned a reply

    def _publish_replying_ended(self) -> None:
        """Publish False on ``~/is_replying`` once no session is replying.

        Sessions reply together (batched), so one reply's end is not the end of replying (engine
        thread).
        """
        engine = self._engine
        if engine is None or not any(engine.session(n).speaking for n in engine.session_names):
            self._out_pubs["is_replying"].publish(Bool(data=False))

    def _audio_stamp(self, stream_time_s: float | None):
        """Header stamp for an event: the audio time it refers to, or now."""
        origin, ingest = self._audio_origin_s, self._ingest
        if origin is None or stream_time_s is None:
            return self.get_clock().now().to_msg()
        gaps = ingest.seconds.get("stamp_gap", 0.0) if ingest is not None else 0.0
        return rclpy.time.Time(nanoseconds=int((origin + gaps + stream_time_s) * 1e9)).to_msg()

    def _publish_live_speech(self, session: str, msg: LiveSpeech) -> None:
        """On the output kind's topic (all sessions of that kind) and the session's own.

        The header's frame_id is the microphone's (the audio's frame_id), as a perception result.
        """
        self._out_pubs[self._outputs.get(session, "reply")].publish(msg)
        self._session_pubs[session].publish(msg)

    def _publish_diagnostics(self) -> None:
        stamp = self.get_clock().now().to_msg()
        name = f"{self.get_fully_qualified_name()}: audio interaction"
        engine, model, ingest = self._engine, self._model, self._ingest
        if engine is None or model is None:
            message = f"no model loaded: {self._load_error}" if self._load_error else \
                "not configured"
            self._diagnostics_pub.publish(messages.diagnostics(
                stamp, name, "", "ERROR", message, {"model": self._param("model")}))
            return
        stats = engine.stats()
        audio_input = self._input
        switched = audio_input.refresh() if audio_input is not None else None
        if switched:
            self.get_logger().info(switched)
        values = {
            "model": model.info.source, "device": model.info.device, "dtype": model.info.dtype,
            "audio_input": audio_input.describe() if audio_input is not None else "inactive",
            "quantization": model.info.quantization,
            "weight_mb": f"{model.info.weight_bytes / 2**20:.0f}",
            "compiled": str(model.info.compiled),
            "listening": str(self._param("listening")),
            "real_time_factor": f"{stats.real_time_factor:.3f}",
            "decision_latency_p50_ms": f"{stats.decision_p50_ms:.1f}",
            "decision_latency_p95_ms": f"{stats.decision_p95_ms:.1f}",
            "backlog_s": f"{stats.backlog_s:.2f}", "chunks": str(stats.chunks),
            "replies": str(stats.replies), "errors": str(stats.errors),
        }
        for reason, seconds in sorted(stats.dropped_s.items()):
            values[f"dropped_s.{reason}"] = f"{seconds:.2f}"
        if ingest is not None:
            for reason, count in sorted(ingest.counts.items()):
                values[f"input_messages.{reason}"] = str(count)
            for reason, seconds in sorted(ingest.seconds.items()):
                values[f"input_s.{reason}"] = f"{seconds:.2f}"
        # WARN only for what got worse during the last period; the totals stay in the values
        totals = {"lost_s": sum(s for r, s in stats.dropped_s.items()
                                if r in ("backlog_overflow", "step_failed")),
                  "rejected": sum(ingest.counts.values()) if ingest else 0,
                  "errors": stats.errors}
        worse = self._worsened(totals)
        if stats.real_time_factor > 1.0:
            level, message = "WARN", f"slower than real time (RTF {stats.real_time_factor:.2f})"
        elif "errors" in worse:
            level, message = "WARN", f"step failed: {stats.last_error}"
        elif worse:
            level, message = "WARN", "audio was dropped or rejected (see values)"
        else:
            level, message = "OK", "listening" if self._param("listening") else "paused"
        self._diagnostics_pub.publish(messages.diagnostics(stamp, name, model.info.device, level,
                                                           message, values))


def main(args: list[str] | None = None) -> int:
    """Entry point: ``ros2 run audio_interaction_ros interaction_node``."""
    return runtime.run(InteractionNode, "interaction_node", args)


if __name__ == "__main__":
    sys.exit(main())
