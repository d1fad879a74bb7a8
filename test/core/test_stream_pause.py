"""A paused stream (its robot's node deactivated) is left alone by the engine: no chunk, no
command, while its backlog keeps what arrives; other streams go on; resumed, it continues where
it stopped. What a stopped single-stream engine did, for one robot of a fleet."""
from __future__ import annotations

import numpy as np

from audio_interaction_ros.core.engine import Engine
from audio_interaction_ros.core.protocol import CHUNK_SAMPLES
from audio_interaction_ros.core.sampling import SamplingConfig
from audio_interaction_ros.core.session import ListenSession, SessionConfig


def test_a_paused_stream_waits_and_the_others_go_on(toy_model):
    engine = Engine(toy_model)
    greedy = SamplingConfig(temperature=0.0)
    paused, steady = (engine.add_stream(name, [ListenSession(
        toy_model, SessionConfig(name="assistant", sampling=greedy))])
        for name in ("paused", "steady"))
    paused.pause()
    resets: list[str] = []
    paused.call_soon(lambda: resets.append("ran"))
    for stream in (paused, steady):
        stream.push(np.zeros(3 * CHUNK_SAMPLES, np.float32))
    assert engine.process_pending() == 3  # the steady stream's chunks only
    assert (paused.stats().chunks, steady.stats().chunks) == (0, 3)
    assert paused.backlog_s == 3 * CHUNK_SAMPLES / 16000 and resets == []
    paused.resume()
    assert engine.process_pending() == 3
    assert paused.stats().chunks == 3 and resets == ["ran"] and not paused.paused
