"""Shared fixtures: the tiny trained checkpoint and its golden outputs from ../shared/fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AUDIO_INTERACTION_SHARED", REPO.parent / "shared"))
FIXTURE = SHARED / "fixtures" / "tiny-beep"
AUDIO_DIR = SHARED / "audio"


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a child process that imports this checkout: the repository goes first
    on PYTHONPATH, and what was there (a distribution's /opt/ros/...) stays."""
    paths = [str(REPO), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p), **extra)


def _require(path: Path) -> Path:
    if not path.exists():
        message = (f"{path} is missing: the tests need the shared fixtures beside the repository "
                   "(../shared) or AUDIO_INTERACTION_SHARED pointing at them")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    return _require(FIXTURE)


@pytest.fixture(scope="session")
def tiny_model(fixture_dir):
    """The fixture checkpoint loaded once, fp32 on CPU (the golden_fp32 reference precision)."""
    from audio_interaction_ros.core.model import AudioInteractionModel

    return AudioInteractionModel.load(fixture_dir / "ckpt", device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def one_torch_thread():
    """For modules that run the 64-wide models: their matrices gain nothing from threads, and a
    second OpenMP thread on a busy 2-core machine makes every step several times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def audio_dir() -> Path:
    return _require(AUDIO_DIR)


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
