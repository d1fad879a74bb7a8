"""compile: which setting compiles, and a compiled model that never recompiles on a live stream."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from audio_interaction_ros.core.audio import read_audio_file
from audio_interaction_ros.core.compilation import (AUTO_MIN_WEIGHT_BYTES, CompiledUnit, graphs,
                                                    resolve_compile, warm_up)
from audio_interaction_ros.core.engine import Engine, EngineConfig
from audio_interaction_ros.core.events import ContextRebuilt, Decision, EngineError, ReplyDone
from audio_interaction_ros.core.model import AudioInteractionModel
from audio_interaction_ros.core.protocol import CHUNK_SAMPLES, SAMPLE_RATE_HZ
from audio_interaction_ros.core.sampling import SamplingConfig
from audio_interaction_ros.core.session import ListenSession, SessionConfig
from audio_interaction_ros.toy.check import beep_clip

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
BIG = AUTO_MIN_WEIGHT_BYTES * 4


@pytest.mark.parametrize("mode, device, dtype, scheme, size, expected", [
    ("false", CPU, torch.bfloat16, "none", BIG, False),
    ("true", CPU, torch.float32, "int4", 1000, True),
    ("auto", CPU, torch.bfloat16, "none", BIG, True),
    ("auto", CPU, torch.bfloat16, "none", 1000, False),  # the toy models
    ("auto", CPU, torch.bfloat16, "int8", BIG, False),
    ("auto", CPU, torch.float32, "none", BIG, False),
    ("auto", CUDA, torch.bfloat16, "none", BIG, False),  # not measured here
])
def test_which_setting_compiles(mode, device, dtype, scheme, size, expected):
    enabled, reason = resolve_compile(mode, device, dtype, scheme, size)
    assert enabled == expected and reason


def test_unknown_compile_setting_is_a_clear_error(toy_model_dir):
    with pytest.raises(ValueError, match="'yes' is not one of auto, true, false"):
        AudioInteractionModel.load(toy_model_dir, device="cpu", compile="yes")


def test_every_unit_gets_its_graph_past_dynamos_limit(monkeypatch):
    """Units of one class share a code object; past dynamo's per-function limit they would run
    eagerly without a word. Warm-up makes room, also for graphs compiled before it."""
    import torch._dynamo.config as dynamo_config

    monkeypatch.setattr(dynamo_config, "recompile_limit", 1)
    units = [CompiledUnit(torch.nn.Sequential(torch.nn.Linear(32, 16))) for _ in range(3)]
    x = torch.randn(5, 32)
    with torch.inference_mode():
        want = [unit.block(x) for unit in units]
    result = warm_up(units, torch.float32, CPU, rows=2)
    assert result.units == result.graphs == 3
    for unit, expected in zip(units, want):
        torch.testing.assert_close(unit(x), expected)


def ten_minutes(speech_wav) -> np.ndarray:
    """1500 chunks: every 30 s a beep (the models answer it: one-row decode steps), speech
    and quiet noise; the context passes 4096 tokens several times (rebuilds: long prefills)."""
    rng = np.random.default_rng(0)
    speech = read_audio_file(speech_wav)
    period = np.zeros(30 * SAMPLE_RATE_HZ, dtype=np.float32)
    period[:len(beep_clip())] += beep_clip()
    period[4 * SAMPLE_RATE_HZ:4 * SAMPLE_RATE_HZ + len(speech)] += speech
    audio = np.concatenate([period] * 20)
    return audio + rng.normal(0, 0.003, len(audio)).astype(np.float32)


def stream(model, audio: np.ndarray) -> list:
    events: list = []
    session = ListenSession(model, SessionConfig(sampling=SamplingConfig(temperature=0.0),
                                                 max_reply_tokens=16))
    engine = Engine(model, [session], EngineConfig(max_backlog_s=2.0), emit=events.append)
    for chunk in audio.reshape(-1, CHUNK_SAMPLES):
        engine.push(chunk)
        engine.process_pending()
    return events


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def compiled(trained_checkpoint):
    model = AudioInteractionModel.load(trained_checkpoint, device="cpu", dtype="float32",
                                       compile="true")
    return model, graphs()


def test_compiled_units_replace_the_mlps_and_decide_like_eager(compiled, trained_model,
                                                               speech_wav):
    model, _ = compiled
    assert model.info.compiled and "4 units, 4 graphs" in model.info.compile_reason
    units = [m for m in model.lm.modules() if isinstance(m, CompiledUnit)]
    assert len(units) == model.info.n_layers
    clip = np.concatenate([beep_clip(), read_audio_file(speech_wav), beep_clip()])
    clip = np.concatenate([clip, np.zeros(-len(clip) % CHUNK_SAMPLES, np.float32)])
    want, got = stream(trained_model, clip), stream(model, clip)
    assert [(e.speak, round(e.p_speak, 3)) for e in got if isinstance(e, Decision)] == \
        [(e.speak, round(e.p_speak, 3)) for e in want if isinstance(e, Decision)]
    replies = [e.text for e in got if isinstance(e, ReplyDone)]
    assert replies == [e.text for e in want if isinstance(e, ReplyDone)]
    assert replies.count("I hear a beep.") == 2  # one-row decode steps ran compiled


@pytest.mark.slow
def test_compiled_model_streams_ten_minutes_without_a_recompile(compiled, speech_wav):
    """Warm-up compiled every unit once; 13-row listens, 1-row replies and 2000-row context
    rebuilds must all run on those graphs (dynamo's counter would grow otherwise, or a step
    would fail: the units' eager weights were discarded when they were packed)."""
    model, after_warm_up = compiled
    audio = ten_minutes(speech_wav)
    assert len(audio) // CHUNK_SAMPLES == 1500
    events = stream(model, audio)
    assert graphs() == after_warm_up
    assert not [e for e in events if isinstance(e, EngineError)]
    assert sum(isinstance(e, Decision) for e in events) == 1500
    kinds = {type(e) for e in events}
    assert {ReplyDone, ContextRebuilt} <= kinds
