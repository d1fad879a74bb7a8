"""Parity with the authors' reference inference on the tiny-beep fixture (greedy, CPU, fp32).

Tokens alone prove little on this toy (its margins are wide), so every case also checks the mel,
the encoder output, the order and positions of every forward, and the top-5 logits.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from audio_interaction_ros.core.audio import pad_to_chunks, read_audio_file
from audio_interaction_ros.core.events import Decision, ReplyDone
from audio_interaction_ros.core.features import StreamingFrontEnd, reference_features
from audio_interaction_ros.core.protocol import CHUNK_SAMPLES, KEEP_SILENCE, TEXT_BEGIN
from audio_interaction_ros.core.sampling import SamplingConfig
from audio_interaction_ros.core.session import ListenSession, SessionConfig

from .test_batch import Lane, tick

CASES = ["silence", "beep", "mixed", "speech", "sample", "long", "multi_beep_speech"]
TRAILING_SAMPLES = 3 * CHUNK_SAMPLES  # 1.0 s of zeros padded to whole chunks
MEL_TOL = 1e-4
ENC_TOL = 1e-4
LOGIT_TOL_FP32 = 1e-4


def load_case(fixture_dir, case: str, golden: str = "golden_fp32"):
    root = fixture_dir / golden / case
    result = json.loads((root / "result.json").read_text())
    calls = json.loads((root / "calls.json").read_text())["calls"]
    return result, calls


def case_files(fixture_dir, result) -> list:
    return [fixture_dir / "golden" / case_dir_rel(p) for p in result["inputs"]]


def case_dir_rel(path: str) -> str:
    return "inputs/" + path.rsplit("/", 1)[-1]


def segments(fixture_dir, result):
    """(audio of each step) exactly as the reference fed them: file, then 3 chunks of zeros."""
    for path in case_files(fixture_dir, result):
        yield pad_to_chunks(read_audio_file(path), CHUNK_SAMPLES)
        yield np.zeros(TRAILING_SAMPLES, dtype=np.float32)


class Recorder:
    """Wraps model.forward to keep (first cache position, length, logits) of every row. A
    listen row computes only the KEEP_SILENCE/TEXT_BEGIN logits: kept as {id: logit}."""

    def __init__(self, model, monkeypatch):
        self.calls: list[tuple[int, int, torch.Tensor | dict[int, float]]] = []
        self.by_cache: dict[int, list] = {}  # the same, per session cache (batched runs)
        original = model.forward

        def forward(rows):
            starts = [row.cache.length for row in rows]
            out = original(rows)
            for row, start, logits in zip(rows, starts, out):
                kept = logits.clone() if row.head is None else \
                    {t: float(v) for t, v in zip(row.head, logits)}
                self.calls.append((start, row.embeds.shape[0], kept))
                self.by_cache.setdefault(id(row.cache), []).append(self.calls[-1])
            return out

        monkeypatch.setattr(model, "forward", forward)


def check_logits(logits, golden, tol: float) -> None:
    """The golden argmax and top-5 values; a listen row is checked on the two ids it has (the
    decision's: the golden top 5 always holds both)."""
    if isinstance(logits, dict):
        assert max(logits, key=logits.get) == golden["argmax"], golden["i"]
        top = dict((t, v) for t, v in golden["top5"])
        assert set(logits) <= set(top), golden["i"]
        for token, value in logits.items():
            assert abs(value - top[token]) <= tol, (golden["i"], token)
        return
    assert int(torch.argmax(logits)) == golden["argmax"], golden["i"]
    for token, value in golden["top5"]:
        assert abs(float(logits[token]) - value) <= tol, (golden["i"], token)


def turns_and_decisions(events) -> tuple[list[list[int]], list[Decision]]:
    turns, decisions = [], []
    for event in events:
        if isinstance(event, Decision):
            decisions.append(event)
            if not event.speak:
                turns.append([KEEP_SILENCE])
        elif isinstance(event, ReplyDone):
            turns.append(list(event.tokens))
    return turns, decisions


def run_session(model, steps_features, rope: str):
    session = ListenSession(model, SessionConfig(sampling=SamplingConfig(temperature=0.0),
                                                 rope_positions=rope))
    events = [e for features in steps_features for rows in features for e in session.listen(rows)]
    return (session, *turns_and_decisions(events))


def check_case(session, events, calls, result, golden_calls) -> None:
    """One session's turns, forwards (positions, lengths, logits) and p_speak against a case."""
    turns, decisions = turns_and_decisions(events)
    assert turns == result["turns"]
    assert session.cached_tokens == result["last_position_used"]
    assert session.rebuilds == 0
    assert len(calls) == len(golden_calls)
    for (start, length, logits), golden in zip(calls, golden_calls):
        assert [start, start + length - 1] == golden["pos_in"], golden["i"]
        assert length == len(golden["ids_in"])
        check_logits(logits, golden, LOGIT_TOL_FP32)

    # p_speak: softmax over the two listening logits, checked on every listening call
    listening = [c for c in golden_calls if c["ids_in"][-1] == 151602]
    assert len(listening) == len(decisions)
    for call, decision in zip(listening, decisions):
        top = dict((t, v) for t, v in call["top5"])
        expected = float(torch.softmax(torch.tensor([top[KEEP_SILENCE], top[TEXT_BEGIN]],
                                                    dtype=torch.float64), 0)[1])
        assert decision.p_speak == pytest.approx(expected, rel=1e-3, abs=1e-7)


@pytest.mark.parametrize("case", CASES)
def test_reference_mode_matches_golden(case, tiny_model, fixture_dir, monkeypatch):
    result, golden_calls = load_case(fixture_dir, case)
    recorder = Recorder(tiny_model, monkeypatch)
    features = []
    for k, samples in enumerate(segments(fixture_dir, result)):
        mel = reference_features(samples)
        enc = tiny_model.encode(mel)
        mel_file = fixture_dir / "golden" / case / f"mel_{k}.npy"
        if mel_file.exists():
            np.testing.assert_allclose(mel.numpy(), np.load(mel_file), atol=MEL_TOL, rtol=0)
        enc_file = fixture_dir / "golden" / case / f"enc_{k}.npy"
        if enc_file.exists():
            np.testing.assert_allclose(enc.numpy(), np.load(enc_file), atol=ENC_TOL, rtol=0)
        features.append(enc)
    session = ListenSession(tiny_model, SessionConfig(sampling=SamplingConfig(temperature=0.0),
                                                      rope_positions="reference"))
    events = [e for enc in features for rows in enc for e in session.listen(rows)]
    check_case(session, events, recorder.calls, result, golden_calls)


def test_golden_cases_batched_together(tiny_model, fixture_dir, monkeypatch):
    """All seven cases as rows of shared forwards: different lengths, replies at different
    chunks beside listening rows, rows dropping out as their audio ends. Every row gives its
    case's golden tokens, positions and logits."""
    lanes, cases = [], []
    for case in CASES:
        result, golden_calls = load_case(fixture_dir, case)
        feats = [tiny_model.encode(reference_features(s)) for s in segments(fixture_dir, result)]
        session = ListenSession(tiny_model, SessionConfig(
            name=case, sampling=SamplingConfig(temperature=0.0), rope_positions="reference"))
        lanes.append(Lane(session, [rows for enc in feats for rows in enc]))
        cases.append((result, golden_calls))
    recorder = Recorder(tiny_model, monkeypatch)
    sizes = []
    while due := [lane for lane in lanes if lane.due]:
        sizes.append(len(due))
        tick(tiny_model, due)
    assert max(sizes) == len(CASES)
    for lane, (result, golden_calls) in zip(lanes, cases):
        check_case(lane.session, lane.events, recorder.by_cache[id(lane.session._cache)],
                   result, golden_calls)


def test_fp16_golden_logits_within_tolerance(tiny_model, fixture_dir, monkeypatch):
    """The fp16 reference run (golden/) differs from fp32 by rounding only: within 2e-2."""
    result, golden_calls = load_case(fixture_dir, "mixed", golden="golden")
    recorder = Recorder(tiny_model, monkeypatch)
    feats = [tiny_model.encode(reference_features(s)) for s in segments(fixture_dir, result)]
    run_session(tiny_model, feats, rope="reference")
    assert len(recorder.calls) == len(golden_calls)
    for (_, _, logits), golden in zip(recorder.calls, golden_calls):
        check_logits(logits, golden, 2e-2)


def test_exact_positions_differ_past_2048(tiny_model, fixture_dir, monkeypatch):
    """The float16 position quirk matters: exact positions move logits past position 2048."""
    result, golden_calls = load_case(fixture_dir, "long")
    recorder = Recorder(tiny_model, monkeypatch)
    feats = [tiny_model.encode(reference_features(s)) for s in segments(fixture_dir, result)]
    _, turns, _ = run_session(tiny_model, feats, rope="exact")
    assert turns == result["turns"]  # the toy's margins are wide
    worst = max(abs(float(logits[t]) - v)
                for (start, _, logits), g in zip(recorder.calls, golden_calls)
                if start > 2048 for t, v in g["top5"] if not isinstance(logits, dict) or
                t in logits)
    assert worst > 1e-2


def streaming_features(model, fixture_dir, result) -> list[torch.Tensor]:
    """Encoder rows of each step from the causal front end, one chunk at a time."""
    front = StreamingFrontEnd()
    feats = []
    for samples in segments(fixture_dir, result):
        mels = [front.push(chunk) for chunk in samples.reshape(-1, CHUNK_SAMPLES)]
        feats.append(model.encode(torch.cat(mels, dim=1)))
    return feats


@pytest.mark.parametrize("case", CASES)
def test_streaming_mode_replies_on_same_chunks(case, tiny_model, fixture_dir):
    """The causal front end (what the ROS node runs) answers on the same chunks, same words."""
    result, _ = load_case(fixture_dir, case)
    feats = streaming_features(tiny_model, fixture_dir, result)
    _, turns, _ = run_session(tiny_model, feats, rope="exact")
    assert turns == result["turns"]
