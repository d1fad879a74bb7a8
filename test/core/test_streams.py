"""Several streams on one engine: one forward per tick for all, each stream on its own.

What a fleet server needs: every robot's due chunk shares the step (and gives what the robot
would get alone), one robot's flood overflows only its own backlog, one robot's failure resets
only its own sessions, a robot whose audio stops has nothing due, and every figure is per robot.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from audio_interaction_ros.core.audio import pad_to_chunks, read_audio_file
from audio_interaction_ros.core.engine import Engine, EngineConfig
from audio_interaction_ros.core.events import AudioDropped, Decision, EngineError, ReplyDone
from audio_interaction_ros.core.protocol import CHUNK_SAMPLES, KEEP_SILENCE, TEXT_BEGIN
from audio_interaction_ros.core.sampling import SamplingConfig
from audio_interaction_ros.core.session import ListenSession, SessionConfig

GREEDY = SamplingConfig(temperature=0.0)


@pytest.fixture(scope="module")
def clips(beep_wav, stereo_48k_wav, speech_wav):
    """Three different recordings (the beep and the stereo beeps make the toy reply)."""
    paths = {"beep": beep_wav, "mixed": stereo_48k_wav, "speech": speech_wav}
    return {name: pad_to_chunks(read_audio_file(path), CHUNK_SAMPLES)
            for name, path in paths.items()}


def sessions(model, *names: str) -> list[ListenSession]:
    return [ListenSession(model, SessionConfig(name=n, sampling=GREEDY)) for n in names]


def summary(events) -> dict:
    return {
        "decisions": [(e.session, e.chunk_index, e.speak, round(e.stream_time_s, 3))
                      for e in events if isinstance(e, Decision)],
        "p_speak": [e.p_speak for e in events if isinstance(e, Decision)],
        "replies": [(e.session, e.chunk_index, e.tokens, e.text) for e in events
                    if isinstance(e, ReplyDone)],
    }


class ForwardLog:
    """Wraps model.forward: rows of each forward, as (listen rows, reply rows)."""

    def __init__(self, model, monkeypatch, during=None) -> None:
        self.forwards: list[tuple[int, int]] = []
        original = model.forward

        def forward(rows):
            listen = sum(row.head == (KEEP_SILENCE, TEXT_BEGIN) for row in rows)
            self.forwards.append((listen, sum(row.head is None for row in rows)))
            if during is not None:
                during(listen)
            return original(rows)

        monkeypatch.setattr(model, "forward", forward)


def test_streams_share_each_forward_and_give_what_each_gives_alone(toy_model, clips,
                                                                  monkeypatch):
    alone = {}
    for name, clip in clips.items():
        events: list = []
        engine = Engine(toy_model, sessions(toy_model, "assistant", "reporter"),
                        EngineConfig(max_backlog_s=30), emit=events.append)
        engine.push(clip)
        engine.process_pending()
        alone[name] = summary(events)

    engine = Engine(toy_model)
    together = {name: [] for name in clips}
    for name in clips:  # same session names in every stream: events are routed by stream
        engine.add_stream(name, sessions(toy_model, "assistant", "reporter"),
                          EngineConfig(max_backlog_s=30), emit=together[name].append)
    log = ForwardLog(toy_model, monkeypatch)
    for name, clip in clips.items():
        engine.stream(name).push(clip)
    engine.process_pending()

    for name in clips:
        got, expected = summary(together[name]), alone[name]
        assert got["decisions"] == expected["decisions"], name
        assert got["replies"] == expected["replies"], name
        np.testing.assert_allclose(got["p_speak"], expected["p_speak"], rtol=0, atol=1e-4)
        assert engine.stream(name).stats().chunks == len(clips[name]) // CHUNK_SAMPLES
    assert max(listen for listen, _ in log.forwards) == 6  # 3 streams x 2 sessions, 1 forward
    assert any(listen and reply for listen, reply in log.forwards)  # replies beside listening
    assert any(alone[n]["replies"] for n in clips)
    stats = engine.batch_stats()
    assert stats.streams == 3 and stats.rows_max == 6 and stats.forwards == len(log.forwards)


def test_a_flooding_stream_drops_only_its_own_audio(toy_model, clips, monkeypatch):
    """An injected slowdown, on a virtual clock: every forward that decides chunks takes 0.2 s
    of audio time (reply-only forwards count as instant). The steady streams send real-time
    audio (the engine is twice as fast as they need), the flooder sends 5 s per 0.4 s. Only the
    flooder's backlog overflows; every stream's pushed audio is decided or counted as dropped;
    a stream whose audio stops has nothing due."""
    config = EngineConfig(max_backlog_s=4.0)
    engine = Engine(toy_model)
    events = {name: [] for name in ("steady", "stopping", "flood")}
    for name in events:
        engine.add_stream(name, sessions(toy_model, "assistant"), config,
                          emit=events[name].append)
    source = {"steady": np.tile(clips["beep"], 4),  # replies now and then: its audio queues
              "stopping": np.tile(clips["speech"], 2), "flood": np.tile(clips["mixed"], 40)}
    per_forward = {"steady": CHUNK_SAMPLES // 2, "stopping": CHUNK_SAMPLES // 2,
                   "flood": 5 * CHUNK_SAMPLES}  # samples arriving per deciding forward
    pushed = dict.fromkeys(source, 0)
    listen_forwards = {"n": 0}

    def arrive(listen_rows: int) -> None:
        if not listen_rows:
            return
        listen_forwards["n"] += 1
        for name, count in per_forward.items():
            if name == "stopping" and listen_forwards["n"] > 12:
                continue  # this robot's audio stops
            piece = source[name][pushed[name]:pushed[name] + count]
            engine.stream(name).push(piece)
            pushed[name] += len(piece)

    ForwardLog(toy_model, monkeypatch, during=arrive)
    for name in source:
        arrive_first = source[name][:CHUNK_SAMPLES]
        engine.stream(name).push(arrive_first)
        pushed[name] += CHUNK_SAMPLES
    engine.process_pending()

    stats = {name: engine.stream(name).stats() for name in source}
    assert stats["steady"].dropped_s == {} and stats["stopping"].dropped_s == {}
    assert stats["flood"].dropped_s["backlog_overflow"] > 10.0
    for name in source:
        decided = len([e for e in events[name] if isinstance(e, Decision)])
        dropped = sum(e.samples for e in events[name] if isinstance(e, AudioDropped))
        left = pushed[name] % CHUNK_SAMPLES  # a partial chunk waits for the rest
        assert decided * CHUNK_SAMPLES + dropped + left == pushed[name], name
        assert stats[name].chunks == decided and stats[name].errors == 0
    assert pushed["stopping"] == CHUNK_SAMPLES * 7
    assert pushed["steady"] == len(source["steady"])  # all of it came, all of it was heard
    assert any(isinstance(e, ReplyDone) for e in events["steady"])  # it replied meanwhile


def test_one_streams_failure_resets_only_that_stream(toy_model, clips, monkeypatch):
    engine = Engine(toy_model)
    events = {name: [] for name in ("ok", "broken")}
    for name in events:
        engine.add_stream(name, sessions(toy_model, "assistant"), emit=events[name].append)
    broken = engine.stream("broken").session("assistant")
    original = broken.listen_row
    calls = {"n": 0}

    def fails_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated failure of this robot's session")
        return original(*args, **kwargs)

    monkeypatch.setattr(broken, "listen_row", fails_once)
    for name in events:
        engine.stream(name).push(clips["beep"])
    engine.process_pending()
    chunks = len(clips["beep"]) // CHUNK_SAMPLES
    ok, bad = engine.stream("ok").stats(), engine.stream("broken").stats()
    assert ok.errors == 0 and ok.chunks == chunks and ok.dropped_s == {}
    assert bad.errors == 1 and bad.chunks == chunks - 1
    assert bad.dropped_s == {"step_failed": pytest.approx(0.4)}
    assert "simulated failure" in bad.last_error
    assert not any(isinstance(e, EngineError) for e in events["ok"])
    assert [e.text for e in events["ok"] if isinstance(e, ReplyDone)] == ["I hear a beep."]


def test_streams_added_and_removed_while_the_engine_runs(toy_model, clips):
    engine = Engine(toy_model)
    with pytest.raises(RuntimeError, match="without sessions"):
        engine.push(clips["beep"])
    events: list = []
    engine.start()
    try:
        robot = engine.add_stream("robot1", sessions(toy_model, "assistant"),
                                  emit=events.append)
        with pytest.raises(ValueError, match="exists"):
            engine.add_stream("robot1", sessions(toy_model, "assistant"))
        robot.push(clips["beep"])
        deadline = time.monotonic() + 30
        while robot.stats().chunks < len(clips["beep"]) // CHUNK_SAMPLES \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        engine.remove_stream("robot1")
        assert engine.stream_names == []
        seen = len(events)
        robot.push(clips["beep"])  # a removed stream's audio is no longer taken
        time.sleep(0.3)
        assert len(events) == seen
    finally:
        assert engine.stop()
    assert [e.text for e in events if isinstance(e, ReplyDone)] == ["I hear a beep."]
