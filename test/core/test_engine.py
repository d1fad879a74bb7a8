"""The engine: chunking of any-length input, the bounded backlog, catching up after replies."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from audio_interaction_ros.core.audio import read_audio_file
from audio_interaction_ros.core.engine import Engine, EngineConfig, SampleFifo
from audio_interaction_ros.core.events import AudioDropped, Decision, EngineError, ReplyDone
from audio_interaction_ros.core.protocol import CHUNK_SAMPLES
from audio_interaction_ros.core.sampling import SamplingConfig
from audio_interaction_ros.core.session import ListenSession, SessionConfig

GREEDY = SamplingConfig(temperature=0.0)


def test_fifo_keeps_order_and_drops_oldest():
    fifo = SampleFifo(max_samples=10)
    assert fifo.push(np.arange(4, dtype=np.float32)) == 0
    assert fifo.push(np.arange(4, 12, dtype=np.float32)) == 2  # 0 and 1 dropped
    np.testing.assert_array_equal(fifo.take(3), [2, 3, 4])
    assert fifo.take(8) is None
    np.testing.assert_array_equal(fifo.take(7), [5, 6, 7, 8, 9, 10, 11])
    assert fifo.push(np.arange(25, dtype=np.float32)) == 15  # one huge piece
    np.testing.assert_array_equal(fifo.take(10), np.arange(15, 25))
    assert fifo.size == 0


def make_engine(model, events, **config):
    session = ListenSession(model, SessionConfig(sampling=GREEDY))
    return Engine(model, [session], EngineConfig(**config), emit=events.append)


@pytest.fixture(scope="module")
def beep(fixture_dir):
    return read_audio_file(fixture_dir / "golden/inputs/beep.wav")  # 2.3 s, beep at 0.8-1.2 s


def test_any_piece_sizes_give_whole_chunks_in_order(tiny_model, beep):
    events_a, events_b = [], []
    a = make_engine(tiny_model, events_a)
    a.push(beep)
    a.process_pending()
    b = make_engine(tiny_model, events_b)
    rng = np.random.default_rng(0)
    start = 0
    while start < len(beep):
        size = int(rng.integers(1, 3000))
        b.push(beep[start:start + size])
        b.process_pending()
        start += size
    decisions = lambda evs: [(e.chunk_index, e.speak) for e in evs if isinstance(e, Decision)]
    assert decisions(events_a) == decisions(events_b)
    assert len(decisions(events_a)) == len(beep) // CHUNK_SAMPLES  # partial chunk waits
    assert [e.text for e in events_a if isinstance(e, ReplyDone)] == ["I hear a beep."]
    assert a.backlog_s == pytest.approx((len(beep) % CHUNK_SAMPLES) / 16000)


def test_overflow_drops_oldest_and_reports(tiny_model, beep):
    events = []
    engine = make_engine(tiny_model, events, max_backlog_s=1.2)
    silence = np.zeros(5 * CHUNK_SAMPLES, dtype=np.float32)
    engine.push(silence)  # 2.0 s into a 1.2 s backlog: the first 0.8 s go
    engine.process_pending()
    drops = [e for e in events if isinstance(e, AudioDropped)]
    assert [(d.samples, d.reason) for d in drops] == [(2 * CHUNK_SAMPLES, "backlog_overflow")]
    decisions = [e for e in events if isinstance(e, Decision)]
    assert len(decisions) == 3
    # the audio clock counts dropped audio: the kept chunks end at 1.2, 1.6, 2.0 s
    assert [round(d.stream_time_s, 2) for d in decisions] == [1.2, 1.6, 2.0]
    stats = engine.stats()
    assert stats.dropped_s == {"backlog_overflow": pytest.approx(0.8)}
    assert stats.chunks == 3


def test_audio_arriving_during_a_reply_is_consumed_afterwards(tiny_model, beep, monkeypatch):
    """Replies block the engine thread; pushed audio waits and nothing is lost."""
    events = []
    engine = make_engine(tiny_model, events, max_backlog_s=30)
    session = engine._sessions["assistant"]
    original = session.reply_row
    speaking = threading.Event()

    def slow_reply_row(*args, **kwargs):
        if not speaking.is_set():
            speaking.set()
            time.sleep(0.5)  # a reply that takes longer than a chunk
        return original(*args, **kwargs)

    monkeypatch.setattr(session, "reply_row", slow_reply_row)
    engine.start()
    try:
        for start in range(0, len(beep), 1600):  # 0.1 s pieces, faster than real time
            engine.push(beep[start:start + 1600])
        assert speaking.wait(10)
        for _ in range(20):  # 2 s more audio while the reply is being generated
            engine.push(np.zeros(1600, dtype=np.float32))
        deadline = time.monotonic() + 20
        while engine.stats().chunks < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        assert engine.stop()
    decisions = [e.chunk_index for e in events if isinstance(e, Decision)]
    assert decisions == list(range(10))  # (2.3 s + 2 s) = 10 whole chunks, in order
    assert not [e for e in events if isinstance(e, AudioDropped)]
    assert engine.stats().replies == 1


def test_a_failing_step_is_reported_and_the_engine_goes_on(tiny_model, beep, monkeypatch):
    events = []
    engine = make_engine(tiny_model, events)
    calls = {"n": 0}
    original = tiny_model.encode

    def flaky(mel):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("CUDA error: simulated")
        return original(mel)

    monkeypatch.setattr(tiny_model, "encode", flaky)
    engine.push(beep)
    engine.process_pending()
    errors = [e for e in events if isinstance(e, EngineError)]
    assert len(errors) == 1 and "simulated" in errors[0].message
    assert [e.reason for e in events if isinstance(e, AudioDropped)] == ["step_failed"]
    assert len([e for e in events if isinstance(e, Decision)]) == len(beep) // CHUNK_SAMPLES - 1
    stats = engine.stats()
    assert stats.errors == 1 and stats.dropped_s["step_failed"] == pytest.approx(0.4)


def test_commands_run_between_chunks_and_reset_sessions(tiny_model, beep):
    events = []
    engine = make_engine(tiny_model, events)
    engine.push(beep)
    engine.process_pending()
    assert engine._sessions["assistant"].chunk_index == 5
    engine.reset_session("assistant")
    with pytest.raises(KeyError):
        engine.reset_session("nobody")
    engine.push(np.zeros(CHUNK_SAMPLES, np.float32))
    engine.process_pending()
    assert [e.chunk_index for e in events if isinstance(e, Decision)][-1] == 0


def test_stats_report_latency_and_real_time_factor(tiny_model, beep):
    engine = make_engine(tiny_model, [])
    engine.push(beep)
    engine.process_pending()
    stats = engine.stats()
    assert 0 < stats.decision_p50_ms <= stats.decision_p95_ms
    assert stats.real_time_factor > 0
    timings = engine.recent_timings()
    assert len(timings) == 5 and all(t.encoder_s > 0 and t.listen_s > 0 for t in timings)
    assert sum(t.reply_s > 0 for t in timings) == 1


def test_duplicate_session_names_rejected(tiny_model):
    sessions = [ListenSession(tiny_model), ListenSession(tiny_model)]
    with pytest.raises(ValueError, match="unique"):
        Engine(tiny_model, sessions)


def test_backlog_must_hold_a_chunk():
    with pytest.raises(ValueError, match="max_backlog_s"):
        EngineConfig(max_backlog_s=0.1)


def test_injected_instruction_reaches_only_its_session_before_live_audio(tiny_model, beep):
    events = []
    sessions = [ListenSession(tiny_model, SessionConfig(name=n, sampling=GREEDY))
                for n in ("assistant", "reporter")]
    engine = Engine(tiny_model, sessions, emit=events.append)
    engine.push(np.zeros(CHUNK_SAMPLES, np.float32))
    engine.inject_audio("reporter", beep)  # queued before the live chunk is taken
    engine.process_pending()
    order = [(e.session, e.chunk_index) for e in events if isinstance(e, Decision)]
    assert order == [("reporter", k) for k in range(6)] + [("assistant", 0), ("reporter", 6)]
    assert sessions[1].history_blocks == 7
    assert sum(b.pinned for b in sessions[1]._blocks) == 6
    assert [e.session for e in events if isinstance(e, ReplyDone)] == ["reporter"]


def test_text_turn_is_fed_with_the_next_chunk(tiny_model):
    events = []
    session = ListenSession(tiny_model, SessionConfig(sampling=GREEDY))
    engine = Engine(tiny_model, [session], emit=events.append)
    engine.push(np.zeros(CHUNK_SAMPLES, np.float32))
    engine.process_pending()
    before = session.cached_tokens
    engine.add_text_turn("assistant", "hear")
    engine.push(np.zeros(CHUNK_SAMPLES, np.float32))
    engine.process_pending()
    turn = len(tiny_model.encode_text("hear")) + 3
    assert session.cached_tokens == before + turn + 13
    engine.add_text_turn("assistant", "")
    engine.process_pending()
    assert [e.message for e in events if isinstance(e, EngineError)] == \
        ["command failed: a text turn needs some text"]


def test_out_of_gpu_memory_on_a_step_is_survived(tiny_model, beep, monkeypatch):
    """A CUDA OOM in one chunk: counted, reported, sessions reset, the next chunks go on."""
    import torch

    events = []
    engine = make_engine(tiny_model, events)
    original = tiny_model.encode
    calls = {"n": 0}

    def oom_once(mel):
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(mel)

    monkeypatch.setattr(tiny_model, "encode", oom_once)
    engine.push(beep)
    engine.process_pending()
    errors = [e.message for e in events if isinstance(e, EngineError)]
    assert len(errors) == 1 and "out of GPU memory" in errors[0]
    assert len([e for e in events if isinstance(e, Decision)]) == 4
