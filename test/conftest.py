"""Shared fixtures.

The project's own (no ../shared needed): ``toy_model_dir`` / ``toy_model``, the toy checkpoint
(built once into build/toy-model, then cached), and clips it reacts to in a known way
(``beep_wav``, ``speech_wav``, ``stereo_48k_wav``, ``stereo_48k_mp3``, ``long_wav``). Every test
that only needs *a* model or *some* audio uses these.

From ../shared (or $AUDIO_INTERACTION_SHARED): ``fixture_dir`` / ``tiny_model``, the checkpoint
the reference goldens were made with, and ``audio_dir``, real recordings. Without them those tests
skip with the reason; with ``AUDIO_INTERACTION_STRICT=1`` (set by .ci/run) they fail instead.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

try:
    import av as _PYAV
except ImportError:  # a hand-made environment; requirements.txt has it
    _PYAV = None

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AUDIO_INTERACTION_SHARED", REPO.parent / "shared"))
FIXTURE = SHARED / "fixtures" / "tiny-beep"
AUDIO_DIR = SHARED / "audio"
TOY_DIR = REPO / "build" / "toy-model"  # where `make toy` / `make demo` put it too
CLIPS_DIR = REPO / "build" / "clips"
STRICT = "AUDIO_INTERACTION_STRICT"


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a child process that imports this checkout.

    The repository goes first on PYTHONPATH, and what was there (a distribution's /opt/ros/...)
    stays.
    """
    paths = [str(REPO), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p), **extra)


def missing(message: str) -> None:
    """Skip the test for want of a prerequisite, with the reason.

    Fail instead under ``AUDIO_INTERACTION_STRICT=1`` (our CI, where everything must be there).
    """
    if os.environ.get(STRICT) == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _require(path: Path) -> Path:
    if not path.exists():
        missing(f"{path} is missing: this test needs the shared fixtures beside the repository "
                "(../shared) or AUDIO_INTERACTION_SHARED pointing at them")
    return path


def toy_checkpoint() -> Path:
    """Return the toy checkpoint directory, built first if it is not cached.

    A build takes about a minute; a second process asking at the same time waits for the first
    one's build (the builder holds a lock and renames a finished model into place).
    """
    from audio_interaction_ros.toy import ensure_toy_model

    return ensure_toy_model(TOY_DIR)


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    return _require(FIXTURE)


@pytest.fixture(scope="session")
def tiny_model(fixture_dir):
    """Load the fixture checkpoint once, fp32 on CPU (the golden_fp32 reference precision)."""
    from audio_interaction_ros.core.model import AudioInteractionModel

    return AudioInteractionModel.load(fixture_dir / "ckpt", device="cpu", dtype="float32")


@pytest.fixture(scope="session", params=["toy", "fixture"])
def trained_checkpoint(request) -> Path:
    """Return a trained checkpoint in the release layout: the toy, then the shared fixture.

    For what any trained model shows (loading, quantization, compilation): the toy runs in
    every clone; the fixture (the authors' layout, their training) where ../shared is, as in CI.
    """
    if request.param == "toy":
        return request.getfixturevalue("toy_model_dir")
    return request.getfixturevalue("fixture_dir") / "ckpt"


@pytest.fixture(scope="session")
def trained_model(trained_checkpoint):
    """``trained_checkpoint`` loaded once, fp32 on CPU: the unquantized, eager reference."""
    from audio_interaction_ros.core.model import AudioInteractionModel

    return AudioInteractionModel.load(trained_checkpoint, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def one_torch_thread():
    """For modules that run the 64-wide models.

    Their matrices gain nothing from threads, and a second OpenMP thread on a busy 2-core machine
    makes every step several times slower.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def audio_dir() -> Path:
    return _require(AUDIO_DIR)


@pytest.fixture(scope="session")
def toy_model_dir() -> Path:
    """Return the toy checkpoint (release layout).

    It knows "I hear a beep." and "Someone is speaking.".
    """
    return toy_checkpoint()


@pytest.fixture(scope="session")
def toy_model(toy_model_dir):
    """Load the toy checkpoint once, fp32 on CPU."""
    from audio_interaction_ros.core.model import AudioInteractionModel

    return AudioInteractionModel.load(toy_model_dir, device="cpu", dtype="float32")


def _clip(name: str) -> Path:
    from audio_interaction_ros.toy.clips import ClipUnavailable, ensure_clip

    try:
        return ensure_clip(CLIPS_DIR, name)
    except ClipUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def beep_wav() -> Path:
    """2.3 s, 16 kHz mono, a 1 kHz beep at 0.8-1.2 s (chunk 2), like the golden beep input."""
    return _clip("beep")


@pytest.fixture(scope="session")
def speech_wav() -> Path:
    """Return an espeak-ng sentence, 16 kHz mono, about 6 s with the silences (needs espeak-ng)."""
    return _clip("speech")


@pytest.fixture(scope="session")
def stereo_48k_wav() -> Path:
    """8 s, 48 kHz stereo PCM16: beeps on chunks 3 and 13 over faint noise (two replies)."""
    return _clip("beeps_48k_stereo")


@pytest.fixture(scope="session")
def stereo_48k_mp3() -> Path:
    """Return the same clip as MP3."""
    return _clip("beeps_48k_stereo_mp3")


@pytest.fixture(scope="session")
def long_wav() -> Path:
    """120 s, 16 kHz mono: beeps every 6 s over noise, other tones between (20 replies)."""
    return _clip("long")


@pytest.fixture()
def gpu_out_of_memory(monkeypatch):
    """Pretend a CUDA device exists and that moving any module onto it runs out of memory."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    original = torch.nn.Module.to

    def to(self, *args, **kwargs):
        if any(str(a).startswith("cuda") for a in args):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 6.00 GiB")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", to)


def mp3_packets(pcm, rate: int, bitrate: int = 32000) -> list[tuple[bytes, float]]:
    """MP3 as ros-drivers' audio_capture hands it out: lamemp3enc's buffers and their times.

    LAME at a constant ``bitrate`` (PyAV's libmp3lame), one buffer per MP3 frame, each with the
    time of the audio it encodes (seconds from the start; the encoder's priming is negative).
    ``pcm``: int16 mono.
    """
    import numpy as np

    av = _PYAV  # bound at import: tests that hide PyAV from the node still play MP3
    if av is None:
        pytest.skip("PyAV is not installed (pip install -r requirements.txt)")

    encoder = av.CodecContext.create("libmp3lame", "w")
    encoder.sample_rate, encoder.layout, encoder.format = rate, "mono", "s16p"
    encoder.bit_rate = bitrate
    encoder.open()
    packets = []
    for start in range(0, len(pcm), encoder.frame_size):
        piece = np.asarray(pcm[start:start + encoder.frame_size], np.int16)
        frame = av.AudioFrame.from_ndarray(piece[None, :], format="s16p", layout="mono")
        frame.sample_rate, frame.pts = rate, start
        packets += encoder.encode(frame)
    packets += encoder.encode(None)  # flush
    return [(bytes(packet), float(packet.pts * packet.time_base)) for packet in packets]
