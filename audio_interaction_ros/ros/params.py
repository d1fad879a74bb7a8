"""The parameters of the package's nodes, declared once: name, default, description, constraints.

Both lifecycle nodes and fleet_node's own. Each lifecycle node's table is declared and validated
by ``lifecycle.ManagedNodeMixin``, and ``tools/write_config.py`` writes it into
``config/<node>.yaml`` (a test checks they agree), so a new parameter is added here and nowhere
else. Static parameters are read on configure; ``dynamic`` ones also apply while the node is
active.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..core.checkpoint import DEFAULT_REPO_ID
from ..voice.tts import BACKENDS, MAX_LENGTH_SCALE, MAX_VOLUME, MIN_LENGTH_SCALE


@dataclass(frozen=True)
class Param:
    """One ROS parameter and what values it accepts."""

    name: str
    default: Any
    description: str
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    dynamic: bool = False
    read_only: bool = False
    pattern: str = ""  # a string value must match it whole; ``pattern_text`` says how in words
    pattern_text: str = ""

    def check(self, value: Any) -> str | None:
        """None if ``value`` is acceptable, else the reason (for SetParametersResult)."""
        if self.choices and value not in self.choices:
            return f"{self.name} must be one of {', '.join(self.choices)}, got {value!r}"
        if self.low is not None and value < self.low:
            return f"{self.name} must be >= {self.low}, got {value}"
        if self.high is not None and value > self.high:
            return f"{self.name} must be <= {self.high}, got {value}"
        if self.pattern and not re.fullmatch(self.pattern, value):
            return f"{self.name} must be {self.pattern_text}, got {value!r}"
        return None


def descriptor(p: Param):
    """Return the ROS ParameterDescriptor of ``p``: description, choices, range, read-only."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    result = ParameterDescriptor(description=p.description, read_only=p.read_only)
    if p.choices:
        result.additional_constraints = "one of: " + ", ".join(p.choices)
    if not p.dynamic and not p.read_only:
        result.additional_constraints += " (applies on the next configure)"
    if isinstance(p.default, float) and p.low is not None and p.high is not None:
        result.floating_point_range = [FloatingPointRange(from_value=float(p.low),
                                                          to_value=float(p.high))]
    elif isinstance(p.default, int) and not isinstance(p.default, bool) and \
            p.low is not None and p.high is not None:
        result.integer_range = [IntegerRange(from_value=int(p.low), to_value=int(p.high))]
    return result


OUTPUTS = ("reply", "transcript", "sound_events")
INSTRUCTION_MODES = ("speech", "text_turn")

NODE_PARAMS: tuple[Param, ...] = (
    Param("model", DEFAULT_REPO_ID, "Checkpoint directory or Hugging Face repo id (downloaded "
          "once into the Hugging Face cache)."),
    Param("device", "auto", "auto, cpu, cuda or cuda:N (auto = cuda when present).",
          pattern=r"auto|cpu|cuda(:\d+)?", pattern_text="auto, cpu, cuda or cuda:N"),
    Param("dtype", "auto", "auto (bfloat16 on a GPU and on a CPU with native bf16: AMX, "
          "AVX512-BF16, ARM bf16; else float32 on CPU, float16 on older GPUs), bfloat16, "
          "float16, float32.", choices=("auto", "bfloat16", "float16", "float32")),
    Param("quantization", "none", "Weight-only quantization of the linear layers at load: none, "
          "int8 (per channel), int4 (groups of 128; CUDA needs compute capability 8.0+ and "
          "bfloat16). Fewer weight bytes per step: what bounds a Jetson; see README.",
          choices=("none", "int8", "int4")),
    Param("compile", "auto", "torch.compile the MLP blocks during configure: auto (where "
          "measured to pay: bfloat16 on a CPU, models over 1 GB), true, false.",
          choices=("auto", "true", "false")),
    Param("allow_cpu_fallback", False, "If the GPU cannot be used (absent, out of memory), load "
          "on the CPU instead of failing configure."),
    Param("cpu_threads", 0, "torch threads for CPU inference (0 = torch's default, one per "
          "core). 1 is often faster on a small or shared CPU: every operation otherwise waits "
          "for the busiest core.", low=0, high=256),
    Param("hf_cache_dir", "", "Hugging Face cache directory ('' = the default, HF_HOME)."),
    Param("temperature", 0.3, "Sampling temperature; 0 = greedy.", low=0.0, high=2.0,
          dynamic=True),
    Param("top_k", 3, "Keep the k most likely tokens (0 = off).", low=0, high=1000, dynamic=True),
    Param("top_p", 1.0, "Nucleus sampling mass (1.0 = off).", low=0.01, high=1.0, dynamic=True),
    Param("seed", -1, "Random seed for sampling (-1 = random).", low=-1, dynamic=True),
    Param("max_reply_tokens", 256, "Longest reply in tokens; longer replies are cut and "
          "reported as truncated.", low=1, high=1024),
    Param("rope_positions", "exact", "exact, or reference (float16-rounded like the authors' "
          "code).", choices=("exact", "reference")),
    Param("max_context_tokens", 4096, "Context length at which a session drops its oldest "
          "chunks (the model was trained on 4096).", low=512, high=32768),
    Param("keep_context_tokens", 2048, "Context kept after such a rebuild.", low=256,
          high=32000),
    Param("max_backlog_s", 10.0, "Audio queued while the model is busy; beyond this the oldest "
          "audio is dropped and counted.", low=0.4, high=600.0),
    Param("floor_window_s", 30.0, "Window of the running maximum that sets the mel floor.",
          low=0.4, high=3600.0),
    Param("channel_index", -1, "Input channel to use; -1 averages all channels.", low=-1,
          high=63, dynamic=True),
    Param("audio_reliable", False, "Subscribe to audio with RELIABLE QoS (default best effort, "
          "which matches both kinds of publisher)."),
    Param("audio_type", "auto", "Message type on the audio topic: stamped (ros-drivers "
          "AudioDataStamped, mgonzs13 AudioStamped), data (unstamped AudioData / Audio: stamped "
          "on arrival, gaps judged by sample count), auto (what the topic's publishers offer, "
          "else stamped). Which audio_common_msgs is installed is detected.",
          choices=("auto", "stamped", "data")),
    Param("hri_voice_id", "", "ros4hri (REP-155) voice id: transcript sessions' text on "
          "/humans/voices/<id>/speech, the id on /humans/voices/tracked, "
          "/humans/voices/<id>/is_speaking; '' = off (e.g. anonymous_speaker, as asr_vosk).",
          pattern=r"|[A-Za-z_][A-Za-z0-9_]*",  # '' or one ROS name token
          pattern_text="'' (off) or a ROS name token (letters, digits, '_', not starting with a "
                       "digit), e.g. anonymous_speaker"),
    Param("locale", "en_US", "Locale written into LiveSpeech messages (language_REGION, as "
          "hri_msgs documents it).", dynamic=True),
    Param("listening", True, "Process audio; false discards it (counted). Also set by the "
          "~/set_listening service.", dynamic=True),
    Param("ignore_while_speaking", True, "Discard (and count) microphone audio while the "
          "robot_speaking topic is true, so the robot does not answer itself.", dynamic=True),
    Param("speaking_tail_s", 0.5, "Keep ignoring audio this long after robot_speaking turns "
          "false (room echo).", low=0.0, high=10.0, dynamic=True),
    Param("gap_tolerance_s", 0.1, "Header stamp gaps larger than this are counted.", low=0.0,
          high=60.0, dynamic=True),
    Param("diagnostics_period_s", 1.0, "Period of /diagnostics.", low=0.1, high=60.0),
    Param("tts_backend", "espeak", "Voice backend for typed instructions: espeak (what the toy "
          "model learnt from), piper (neural), auto.", choices=("auto", "piper", "espeak"),
          dynamic=True),
    Param("tts_voice", "en-us", "Voice used to speak typed instructions (espeak-ng voice, or "
          "piper voice name / .onnx path; '' = the backend's default).", dynamic=True),
    Param("autostart", True, "Configure and activate on start (launch files that manage the "
          "lifecycle set false).", read_only=True),
    Param("sessions", ["assistant"], "Names of the sessions sharing the model; each has "
          "<name>.output, <name>.instruction, <name>.instruction_mode, <name>.instruction_audio.",
          read_only=True),
)

SESSION_PARAMS: tuple[Param, ...] = (
    Param("output", "reply", "reply: ~/speech + ~/reply; transcript: ~/transcript; "
          "sound_events: ~/sound_events. The same LiveSpeech messages also go to "
          "~/<session>/<output>, this session's alone.", choices=OUTPUTS),
    Param("instruction", "", "Task given to this session before live audio ('' = none), "
          "spoken into its stream; setting it while active re-instructs the session.",
          dynamic=True),
    Param("instruction_mode", "speech", "speech: synthesize with espeak-ng and feed as audio "
          "(as trained); text_turn: insert [USER, text] (untrained).",
          choices=INSTRUCTION_MODES, dynamic=True),
    Param("instruction_audio", "", "Audio file with a spoken instruction, fed as recorded "
          "(takes precedence over instruction).", dynamic=True),
)

SPEECH_PARAMS: tuple[Param, ...] = (
    Param("input", "reply", "What to speak: reply (hri_msgs/LiveSpeech; each sentence as soon "
          "as it is complete, before the reply ends) or speech (std_msgs/String, whole "
          "replies). Only that topic is subscribed, so nothing is said twice.",
          choices=("reply", "speech")),
    Param("backend", "auto", "piper (neural voice), espeak (espeak-ng), or auto (piper when "
          "it can load the voice, else espeak-ng).", choices=BACKENDS),
    Param("voice", "", "piper: an installed voice name (en_US-joe-medium) or a .onnx path; "
          "espeak: an espeak-ng voice (en-us); '' = the backend's default."),
    Param("length_scale", 1.0, "Speaking slowness: 1.0 = the voice's pace, 2.0 twice as slow "
          "(espeak-ng: 175 / length_scale words per minute).", low=MIN_LENGTH_SCALE,
          high=MAX_LENGTH_SCALE, dynamic=True),
    Param("volume", 1.0, "Gain on the voice (1.0 = as synthesized; clipped at full scale).",
          low=0.0, high=MAX_VOLUME, dynamic=True),
    Param("sample_rate", 22050, "Rate of speech_audio in Hz (the voice is resampled).",
          low=8000, high=48000),
    Param("chunk_ms", 100, "Audio per speech_audio message in milliseconds.", low=10,
          high=1000),
    Param("publish_ahead_s", 0.5, "Audio is published at most this far ahead of real time "
          "(the consumer's buffer); the first audio of an utterance goes out at once.",
          low=0.0, high=60.0),
    Param("queue_size", 20, "Sentences waiting for synthesis; beyond this the oldest is "
          "dropped and counted.", low=1, high=1000),
    Param("threads", 1, "onnxruntime threads for piper (0 = onnxruntime's default: every "
          "core, busy-waiting). One leaves the cores to the model; more lower the latency only "
          "where cores are idle.", low=0, high=64),
    Param("play_locally", False, "Also play the speech on a local output device (PyAudio)."),
    Param("output_device", "", "Output device for play_locally: index or name substring "
          "('' = the default output)."),
    Param("wav_path", "", "If set, everything spoken is also appended to this WAV file "
          "(written anew on each configure, closed on cleanup and shutdown)."),
    Param("frame_id", "speech", "Header frame_id of speech_audio (the frame of the robot's "
          "loudspeaker)."),
    Param("diagnostics_period_s", 1.0, "Period of /diagnostics.", low=0.1, high=60.0),
    Param("autostart", True, "Configure and activate on start (launch files that manage the "
          "lifecycle set false).", read_only=True),
)


@dataclass(frozen=True)
class ParamTable:
    """All parameters of one node.

    Its own, and (interaction node) one block per session, ``<session>.<name>``, for each name
    listed in the node parameter ``sessions``.
    """

    node: tuple[Param, ...]
    per_session: tuple[Param, ...] = ()

    def lookup(self, name: str) -> Param | None:
        """Return the Param of a node parameter or of a session parameter ``<session>.<key>``."""
        for p in self.node:
            if p.name == name:
                return p
        if "." in name:
            key = name.rsplit(".", 1)[-1]
            return next((p for p in self.per_session if p.name == key), None)
        return None


FLEET_PARAMS: tuple[Param, ...] = (
    Param("robots", ["robot1", "robot2"], "Namespaces of the robots this process serves; each "
          "gets an interaction node /<robot>/audio_interaction, and all share one model.",
          read_only=True),
    Param("diagnostics_period_s", 1.0, "Period of the fleet's /diagnostics status (the shared "
          "batched step: rows per forward, its cost); each robot's node has its own.",
          low=0.1, high=60.0, read_only=True),
)

INTERACTION = ParamTable(NODE_PARAMS, SESSION_PARAMS)
SPEECH = ParamTable(SPEECH_PARAMS)
FLEET = ParamTable(FLEET_PARAMS)
