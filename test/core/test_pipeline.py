"""The pipeline: samples in, events out, in both front-end modes; one step over every session."""
from __future__ import annotations

import numpy as np
import pytest

from audio_interaction_ros.core.audio import pad_to_chunks, read_audio_file
from audio_interaction_ros.core.events import Decision, ReplyDone
from audio_interaction_ros.core.features import StreamingFrontEnd, reference_features
from audio_interaction_ros.core.pipeline import Pipeline, file_segments
from audio_interaction_ros.core.protocol import CHUNK_SAMPLES
from audio_interaction_ros.core.sampling import SamplingConfig
from audio_interaction_ros.core.session import ListenSession, SessionConfig

GREEDY = SamplingConfig(temperature=0.0)


@pytest.fixture(scope="module")
def beep(beep_wav):
    audio = read_audio_file(beep_wav)  # beep at chunk 2
    return pad_to_chunks(audio, CHUNK_SAMPLES)


def session(model, name: str = "assistant") -> ListenSession:
    return ListenSession(model, SessionConfig(name=name, sampling=GREEDY))


def p_speaks(events) -> list[float]:
    return [e.p_speak for e in events if isinstance(e, Decision)]


@pytest.mark.parametrize("frontend", ["streaming", "reference"])
def test_process_equals_front_end_encoder_and_session_by_hand(toy_model, beep, frontend):
    """What the runner and the engine used to write out themselves, in either mode."""
    pipeline = Pipeline(toy_model, [session(toy_model)], frontend=frontend)
    results = list(pipeline.process(beep))
    assert [r.index for r in results] == list(range(len(beep) // CHUNK_SAMPLES))
    if frontend == "streaming":
        front = StreamingFrontEnd()
        rows = [toy_model.encode(front.push(c))[0] for c in beep.reshape(-1, CHUNK_SAMPLES)]
    else:
        rows = toy_model.encode(reference_features(beep))
    alone = session(toy_model)
    expected = [alone.listen(r) for r in rows]
    for result, events in zip(results, expected):
        assert p_speaks(result.events) == pytest.approx(p_speaks(events), rel=1e-5, abs=1e-6)
    assert [r.replies for r in results] == [int(k == 2) for k in range(len(results))]
    assert [e.text for r in results for e in r.events if isinstance(e, ReplyDone)] == \
        ["I hear a beep."]


def test_streaming_state_carries_across_calls(toy_model, beep):
    """Chunk by chunk or all at once: the same stream for the streaming front end."""
    whole = Pipeline(toy_model, [session(toy_model)])
    pieces = Pipeline(toy_model, [session(toy_model)])
    at_once = [e for r in whole.process(beep) for e in r.events]
    one_by_one = [e for c in beep.reshape(-1, CHUNK_SAMPLES) for r in pieces.process(c)
                  for e in r.events]
    assert p_speaks(at_once) == pytest.approx(p_speaks(one_by_one), rel=1e-5, abs=1e-6)


def test_step_runs_every_session_once_in_order(toy_model, beep):
    seen = []
    pipeline = Pipeline(toy_model, [session(toy_model, "a"), session(toy_model, "b")],
                        frontend="reference")
    rows = pipeline.encode(beep).rows
    report = pipeline.step(rows[2], stream_time_s=7.0, emit=seen.append)
    assert report.events == seen
    decisions = [e for e in report.events if isinstance(e, Decision)]
    assert [(d.session, d.stream_time_s) for d in decisions] == [("a", 7.0), ("b", 7.0)]
    assert report.replies == 2 and report.listen_s > 0 and report.reply_s > 0


def test_timing_and_stream_time_of_process(toy_model, beep):
    pipeline = Pipeline(toy_model, [session(toy_model)])
    results = list(pipeline.process(beep, start_s=10.0))
    times = [e.stream_time_s for r in results for e in r.events if isinstance(e, Decision)]
    assert times == pytest.approx([10.0 + 0.4 * (k + 1) for k in range(len(results))])
    assert all(r.timing.frontend_s > 0 and r.timing.encoder_s > 0 for r in results)


def test_instruction_encoding_leaves_the_stream_alone(toy_model, beep):
    pipeline = Pipeline(toy_model, [session(toy_model)])
    fresh = Pipeline(toy_model, [session(toy_model)])
    rows = pipeline.encode_recording(beep[:-100])  # padded to whole chunks
    assert tuple(rows.shape[:2]) == (len(beep) // CHUNK_SAMPLES, 10)
    assert (pipeline.encode(beep).rows == fresh.encode(beep).rows).all()


def test_bad_input_is_refused(toy_model):
    with pytest.raises(ValueError, match="frontend"):
        Pipeline(toy_model, [], frontend="offline")
    with pytest.raises(ValueError, match="unique"):
        Pipeline(toy_model, [session(toy_model), session(toy_model)])
    with pytest.raises(ValueError, match="whole chunks"):
        Pipeline(toy_model, []).encode(np.zeros(CHUNK_SAMPLES + 1, np.float32))


def test_file_segments_add_separate_trailing_silence():
    clips = [np.ones(100, np.float32), np.ones(CHUNK_SAMPLES, np.float32)]
    got = [(i, name, len(s)) for i, name, s in file_segments(clips, 1.0)]
    assert got == [(0, "audio", CHUNK_SAMPLES), (0, "trailing_silence", 3 * CHUNK_SAMPLES),
                   (1, "audio", CHUNK_SAMPLES), (1, "trailing_silence", 3 * CHUNK_SAMPLES)]
    assert [name for _, name, _ in file_segments(clips, 0)] == ["audio", "audio"]
