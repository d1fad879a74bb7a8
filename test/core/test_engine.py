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
def beep(beep_wav):
    return read_audio_file(beep_wav)  # 2.3 s, beep at 0.8-1.2 s


def test_any_piece_sizes_give_whole_chunks_in_order(toy_model, beep):
    events_a, events_b = [], []
    a = make_engine(toy_model, events_a)
    a.push(beep)
    a.process_pending()
    b = make_engine(toy_model, events_b)
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


def test_overflow_drops_oldest_and_reports(toy_model, beep):
    events = []
    engine = make_engine(toy_model, events, max_backlog_s=1.2)
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


def test_audio_arriving_during_a_reply_is_consumed_afterwards(toy_model, beep, monkeypatch):
    """Replies block the engine thread; pushed audio waits and nothing is lost."""
    events = []
    engine = make_engine(toy_model, events, max_backlog_s=30)
    session = engine.session("assistant")
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


def test_a_failing_step_is_reported_and_the_engine_goes_on(toy_model, beep, monkeypatch):
    events = []
    engine = make_engine(toy_model, events)
    calls = {"n": 0}
    original = toy_model.encode

    def flaky(mel):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("CUDA error: simulated")
        return original(mel)

    monkeypatch.setattr(toy_model, "encode", flaky)
    engine.push(beep)
    engine.process_pending()
    errors = [e for e in events if isinstance(e, EngineError)]
    assert len(errors) == 1 and "simulated" in errors[0].message
    assert [e.reason for e in events if isinstance(e, AudioDropped)] == ["step_failed"]
    assert len([e for e in events if isinstance(e, Decision)]) == len(beep) // CHUNK_SAMPLES - 1
    stats = engine.stats()
    assert stats.errors == 1 and stats.dropped_s["step_failed"] == pytest.approx(0.4)


def test_commands_run_between_chunks_and_reset_sessions(toy_model, beep):
    events = []
    engine = make_engine(toy_model, events)
    engine.push(beep)
    engine.process_pending()
    assert engine.session("assistant").chunk_index == 5
    engine.reset_session("assistant")
    with pytest.raises(KeyError):
        engine.reset_session("nobody")
    engine.push(np.zeros(CHUNK_SAMPLES, np.float32))
    engine.process_pending()
    assert [e.chunk_index for e in events if isinstance(e, Decision)][-1] == 0


def test_stats_report_latency_and_real_time_factor(toy_model, beep):
    engine = make_engine(toy_model, [])
    engine.push(beep)
    engine.process_pending()
    stats = engine.stats()
    assert 0 < stats.decision_p50_ms <= stats.decision_p95_ms
    assert stats.real_time_factor > 0
    timings = engine.recent_timings()
    assert len(timings) == 5 and all(t.encoder_s > 0 and t.listen_s > 0 for t in timings)
    assert sum(t.reply_s > 0 for t in timings) == 1


def test_duplicate_session_names_rejected(toy_model):
    sessions = [ListenSession(toy_model), ListenSession(toy_model)]
    with pytest.raises(ValueError, match="unique"):
        Engine(toy_model, sessions)


def test_backlog_must_hold_a_chunk():
    with pytest.raises(ValueError, match="max_backlog_s"):
        EngineConfig(max_backlog_s=0.1)


def test_injected_instruction_reaches_only_its_session_before_live_audio(toy_model, beep):
    events = []
    sessions = [ListenSession(toy_model, SessionConfig(name=n, sampling=GREEDY))
                for n in ("assistant", "reporter")]
    engine = Engine(toy_model, sessions, emit=events.append)
    engine.push(np.zeros(CHUNK_SAMPLES, np.float32))
    engine.instruct_audio("reporter", beep, source="beep")  # queued before the live chunk
    engine.process_pending()
    order = [(e.session, e.chunk_index) for e in events if isinstance(e, Decision)]
    assert order == [("reporter", k) for k in range(6)] + [("assistant", 0), ("reporter", 6)]
    assert sessions[1].history_blocks == 7
    assert sum(b.pinned for b in sessions[1]._blocks) == 6
    assert [e.session for e in events if isinstance(e, ReplyDone)] == ["reporter"]


def test_text_turn_is_fed_with_the_next_chunk(toy_model):
    events = []
    session = ListenSession(toy_model, SessionConfig(sampling=GREEDY))
    engine = Engine(toy_model, [session], emit=events.append)
    engine.push(np.zeros(CHUNK_SAMPLES, np.float32))
    engine.process_pending()
    before = session.cached_tokens
    engine.instruct_text("assistant", "hear")
    engine.push(np.zeros(CHUNK_SAMPLES, np.float32))
    engine.process_pending()
    turn = len(toy_model.encode_text("hear")) + 3
    assert session.cached_tokens == before + turn + 13
    with pytest.raises(ValueError, match="needs some text"):
        engine.instruct_text("assistant", " ")
    engine.instruct_text("assistant", "beep " * 1000)  # too long: refused on the engine thread
    engine.process_pending()
    errors = [e.message for e in events if isinstance(e, EngineError)]
    assert len(errors) == 1 and errors[0].startswith("instruction rejected: session assistant: "
                                                     "text turn of ")
    assert errors[0].endswith("tokens is longer than the 512 an instruction may pin")
    assert session.instruction_source == "hear" and session.chunk_index == 2  # not reset


def test_reinstructing_and_reactivating_keep_one_instruction_within_bound(toy_model, beep):
    """100 new instructions and 20 stop/start cycles re-giving the same one (what the node does
    on every activation): one instruction pinned, the context within its bound throughout."""
    events = []
    config = SessionConfig(sampling=GREEDY, max_context_tokens=600, keep_context_tokens=400,
                           max_reply_tokens=64)
    session = ListenSession(toy_model, config)
    engine = Engine(toy_model, [session], emit=events.append)
    live = np.zeros(CHUNK_SAMPLES, np.float32)
    clips = [beep[:CHUNK_SAMPLES], beep[CHUNK_SAMPLES:CHUNK_SAMPLES * 4]]  # 1 and 3 chunks
    peak = 0
    for k in range(100):
        if k % 10 == 9:
            engine.instruct_text("assistant", f"count to {k}")
            engine.push(live)
        else:
            engine.instruct_audio("assistant", clips[k % 2], source=f"instruction {k}")
        engine.process_pending()
        peak = max(peak, session.context_tokens)
    assert session.instruction_source == "count to 99"
    decisions = len([e for e in events if isinstance(e, Decision)])
    for cycle in range(20):
        engine.start()
        engine.instruct_audio("assistant", clips[1], source="the robot's task")
        engine.push(live)
        deadline = time.monotonic() + 20
        while engine.stats().chunks < 10 + cycle + 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine.stop()
        peak = max(peak, session.context_tokens)
    pinned = [b for b in session._blocks if b.pinned]
    assert len(pinned) == 3 and session.instruction_source == "the robot's task"
    assert sum(len(b.ids) for b in pinned) == session.instruction_tokens
    assert session.instruction_tokens <= session.instruction_budget
    assert peak <= config.max_context_tokens
    assert not [e for e in events if isinstance(e, EngineError)]
    # the task was heard once (3 chunks), then only the 20 live chunks
    assert len([e for e in events if isinstance(e, Decision)]) == decisions + 3 + 20


def test_out_of_gpu_memory_on_a_step_is_survived(toy_model, beep, monkeypatch):
    """A CUDA OOM in one chunk: counted, reported, sessions reset, the next chunks go on."""
    import torch

    events = []
    engine = make_engine(toy_model, events)
    original = toy_model.encode
    calls = {"n": 0}

    def oom_once(mel):
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(mel)

    monkeypatch.setattr(toy_model, "encode", oom_once)
    engine.push(beep)
    engine.process_pending()
    errors = [e.message for e in events if isinstance(e, EngineError)]
    assert len(errors) == 1 and "out of GPU memory" in errors[0]
    assert len([e for e in events if isinstance(e, Decision)]) == 4


def test_a_command_failing_half_way_is_recovered_and_live_audio_answered(toy_model, beep,
                                                                         monkeypatch):
    """Out of GPU memory in the middle of hearing a new instruction: the half-fed instruction
    left an audio slot unfed, which used to kill the engine on the next chunk. Now: reported,
    sessions reset with the previous instruction kept, the next chunks answered."""
    import torch

    events = []
    engine = make_engine(toy_model, events)
    session = engine.session("assistant")
    engine.instruct_audio("assistant", beep[:2 * CHUNK_SAMPLES], source="old")
    engine.process_pending()
    original = toy_model.forward
    calls = {"n": 0}

    def oom_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return original(*args, **kwargs)

    monkeypatch.setattr(toy_model, "forward", oom_on_second)
    engine.instruct_audio("assistant", beep[:3 * CHUNK_SAMPLES], source="new")
    engine.push(beep)
    engine.process_pending()
    errors = [e.message for e in events if isinstance(e, EngineError)]
    assert len(errors) == 1 and errors[0].startswith("command failed: out of GPU memory")
    assert "sessions were reset (instructions kept)" in errors[0]
    assert session.instruction_source == "old"
    assert [b.pinned for b in session._blocks[:3]] == [True, True, False]
    assert [e.text for e in events if isinstance(e, ReplyDone)] == ["I hear a beep."]
    assert engine.stats().errors == 1


def test_no_exception_ends_the_engine_thread(toy_model, beep, monkeypatch):
    """Exception types nobody expects (a bug in a step, a transport that raises) are reported
    as EngineError and the thread keeps listening."""
    events = []

    def emit(event):
        if isinstance(event, ReplyDone) and not any(isinstance(e, ReplyDone) for e in events):
            events.append(event)
            raise TypeError("transport bug")  # the first reply's publishing fails
        events.append(event)

    session = ListenSession(toy_model, SessionConfig(sampling=GREEDY))
    engine = Engine(toy_model, [session], emit=emit)
    original = session.listen_row
    calls = {"n": 0}

    def buggy_listen_row(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyError("a bug")
        return original(*args, **kwargs)

    monkeypatch.setattr(session, "listen_row", buggy_listen_row)
    engine.start()
    try:
        engine.push(beep)  # chunk 0 fails (KeyError); the reply to chunk 2 fails to publish
        engine.push(beep)  # the same again: answered
        deadline = time.monotonic() + 30
        while engine.stats().chunks < 9 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert engine._thread.is_alive()
    finally:
        assert engine.stop()
    errors = [e.message for e in events if isinstance(e, EngineError)]
    assert len(errors) == 2
    assert errors[0].startswith("chunk failed: KeyError: 'a bug'")
    assert errors[1].startswith("chunk failed: TypeError: transport bug")
    assert [e.text for e in events if isinstance(e, ReplyDone)] == ["I hear a beep."] * 2
    assert engine.stats().chunks == 2 * len(beep) // CHUNK_SAMPLES - 2  # all but the 2 failed
