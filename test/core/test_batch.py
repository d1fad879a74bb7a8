"""Batched steps: a row of a batch gives what its session gives alone (fixture, CPU, fp32).

Rows differ in every way the engine meets: context length (one past 2048 positions with the
reference's float16 RoPE positions), a context rebuild during the batch, a reply in progress
while others listen, a freshly reset session, a first block of 58 tokens beside 13-token blocks
and 1-token reply steps.
"""
from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch

from audio_interaction_ros.core.audio import pad_to_chunks, read_audio_file
from audio_interaction_ros.core.events import ContextRebuilt, Decision, ReplyDone
from audio_interaction_ros.core.features import reference_features
from audio_interaction_ros.core.protocol import CHUNK_SAMPLES, KEEP_SILENCE, TEXT_BEGIN
from audio_interaction_ros.core.rows import Row
from audio_interaction_ros.core.sampling import SamplingConfig
from audio_interaction_ros.core.session import ListenSession, SessionConfig
from audio_interaction_ros.core.step import ListenRequest, forward_step

GREEDY = SamplingConfig(temperature=0.0)
P_SPEAK_TOL = 1e-4


class Lane:
    """One session fed from its own queue of chunk rows; keeps the events it caused."""

    def __init__(self, session: ListenSession, chunks) -> None:
        self.session = session
        self.queue = deque(chunks)
        self.events: list = []

    @property
    def due(self) -> bool:
        return self.session.speaking or bool(self.queue)


def tick(model, lanes: list[Lane]) -> None:
    """ONE forward for every due lane.

    The next reply token of a speaking session, the next chunk of the others (what the engine does
    for the streams it serves).
    """
    by_name = {lane.session.name: lane for lane in lanes}
    listens = [ListenRequest(lane.session, lane.queue.popleft()) for lane in lanes
               if lane.due and not lane.session.speaking]
    replying = [lane.session for lane in lanes if lane.session.speaking]
    step = forward_step(model, listens, replying,
                        lambda session, event: by_name[session.name].events.append(event))
    step.raise_first()


def ignore(session, event) -> None:
    """A report that drops events (set-up steps)."""


def run_together(model, lanes: list[Lane]) -> None:
    while due := [lane for lane in lanes if lane.due]:
        tick(model, due)


def run_alone(model, lanes: list[Lane]) -> None:
    for lane in lanes:
        while lane.due:
            tick(model, [lane])


@pytest.fixture(scope="module")
def rows(toy_model, beep_wav):
    audio = pad_to_chunks(read_audio_file(beep_wav), CHUNK_SAMPLES)
    beep = toy_model.encode(reference_features(audio))  # the beep is in chunk 2
    silence = toy_model.encode(reference_features(np.zeros(CHUNK_SAMPLES, np.float32)))[0]
    return beep, silence


def build_lanes(model, rows, sampling: SamplingConfig) -> list[Lane]:
    """Four sessions in four different states, each with its own chunks to come."""
    beep, silence = rows
    long = ListenSession(model, SessionConfig(name="long", sampling=sampling,
                                              rope_positions="reference"))
    for k in range(170):  # > 2048 positions: float16-rounded RoPE positions
        long.listen(beep[2] if k == 60 else silence)
    assert long.context_tokens > 2100
    rebuild = ListenSession(model, SessionConfig(
        name="rebuild", sampling=sampling, max_context_tokens=300, keep_context_tokens=200,
        max_reply_tokens=32))
    while rebuild.context_tokens + 2 * 13 <= 300:  # rebuilds within the first two chunks
        rebuild.listen(silence)
    mid = ListenSession(model, SessionConfig(name="mid", sampling=sampling))
    for chunk in (silence, silence):
        mid.listen(chunk)
    forward_step(model, [ListenRequest(mid, beep[2])], [], ignore).raise_first()
    assert mid.speaking
    for _ in range(2):  # stop in the middle of the reply
        forward_step(model, [], [mid], ignore).raise_first()
    assert mid.speaking
    fresh = ListenSession(model, SessionConfig(name="fresh", sampling=sampling))
    for chunk in (silence, beep[2], silence):
        fresh.listen(chunk)
    fresh.reset()
    return [Lane(long, [silence, beep[2], silence, silence, silence]),
            Lane(rebuild, [silence, silence, silence, beep[2], silence]),
            Lane(mid, [silence, silence, beep[2], silence]),
            Lane(fresh, list(beep))]


def summary(events) -> dict:
    return {
        "decisions": [(e.chunk_index, e.speak) for e in events if isinstance(e, Decision)],
        "p_speak": [e.p_speak for e in events if isinstance(e, Decision)],
        "replies": [(e.tokens, e.text, e.truncated) for e in events if isinstance(e, ReplyDone)],
        "rebuilds": [(e.tokens_before, e.tokens_after, e.blocks_dropped) for e in events
                     if isinstance(e, ContextRebuilt)],
    }


class RowCounter:
    """Wraps model.forward to record the make-up of every forward: (listen rows, reply rows)."""

    def __init__(self, model, monkeypatch) -> None:
        self.forwards: list[tuple[int, int]] = []
        original = model.forward

        def forward(rows: list[Row]):
            listen = sum(row.head == (KEEP_SILENCE, TEXT_BEGIN) for row in rows)
            self.forwards.append((listen, sum(row.head is None for row in rows)))
            return original(rows)

        monkeypatch.setattr(model, "forward", forward)


@pytest.mark.parametrize("sampling", [GREEDY, SamplingConfig(temperature=0.3, top_k=3, seed=7)],
                         ids=["greedy", "sampled"])
def test_each_row_of_a_batch_gives_what_its_session_gives_alone(toy_model, rows, sampling,
                                                                monkeypatch):
    alone = build_lanes(toy_model, rows, sampling)
    together = build_lanes(toy_model, rows, sampling)
    run_alone(toy_model, alone)
    counter = RowCounter(toy_model, monkeypatch)
    run_together(toy_model, together)

    assert max(listen + reply for listen, reply in counter.forwards) == 4
    assert any(listen and reply for listen, reply in counter.forwards)  # mixed forwards
    for a, b in zip(alone, together):
        expected, got = summary(a.events), summary(b.events)
        assert got["decisions"] == expected["decisions"], a.session.name
        assert got["replies"] == expected["replies"], a.session.name
        assert got["rebuilds"] == expected["rebuilds"], a.session.name
        np.testing.assert_allclose(got["p_speak"], expected["p_speak"], rtol=0,
                                   atol=P_SPEAK_TOL)
        assert b.session.cached_tokens == a.session.cached_tokens
    names = {lane.session.name: summary(lane.events) for lane in together}
    assert names["rebuild"]["rebuilds"]  # the states the test is about were really reached
    assert names["mid"]["replies"] and names["fresh"]["decisions"][0][0] == 0
    assert any(speak for _, speak in names["fresh"]["decisions"])


def test_rows_of_different_lengths_and_heads_match_one_row_forwards(toy_model):
    """The model layer alone.

    58-, 13- and 1-token rows on caches of 0, 300 and 1000 positions; full head, the two decision
    columns, and no head (a rebuild).
    """
    generator = torch.Generator().manual_seed(0)
    ids = [torch.randint(0, 5000, (n,), generator=generator).tolist() for n in (1000, 300)]

    def caches():
        made = [toy_model.new_cache() for _ in range(3)]
        for cache, prefix in zip(made[1:], ids):
            toy_model.forward([Row(toy_model.embed(prefix), cache,
                                   torch.arange(len(prefix)), ())])
        return made

    def rows_for(made):
        wanted = [(58, None), (13, (KEEP_SILENCE, TEXT_BEGIN)), (1, None)]
        return [Row(toy_model.embed(list(range(100, 100 + q))), cache,
                    torch.arange(cache.length, cache.length + q), head)
                for cache, (q, head) in zip(made, wanted)]

    batched = toy_model.forward(rows_for(caches()))
    single = [toy_model.forward([row])[0] for row in rows_for(caches())]
    for got, expected in zip(batched, single):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
    pair = batched[1]
    assert pair.shape == (2,)
    row = rows_for(caches())[1]
    row.head = None
    whole = toy_model.forward([row])[0]  # the same row with the whole vocabulary
    torch.testing.assert_close(whole[[KEEP_SILENCE, TEXT_BEGIN]], pair, rtol=0, atol=1e-4)
    cache = row.cache
    empty = toy_model.forward([Row(toy_model.embed([5]), cache, torch.tensor([cache.length]),
                                   ())])
    assert empty[0].numel() == 0 and cache.length == 1000 + 13 + 1


def test_both_attention_kernels_give_the_same_rows(toy_model, monkeypatch):
    """Multi-token rows use eager attention on CPU and SDPA elsewhere: the same logits."""
    from audio_interaction_ros.core import rows as rows_module

    def logits():
        generator = torch.Generator().manual_seed(1)
        made = []
        for n in (700, 40):
            cache = toy_model.new_cache()
            ids = torch.randint(0, 5000, (n,), generator=generator).tolist()
            toy_model.forward([Row(toy_model.embed(ids), cache, torch.arange(n), ())])
            made.append(Row(toy_model.embed(list(range(200, 213))), cache,
                            torch.arange(n, n + 13), None))
        return toy_model.forward(made)

    eager = logits()
    monkeypatch.setattr(rows_module, "_eager_for", lambda query: False)
    for got, expected in zip(logits(), eager):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


def test_a_session_appears_once_per_step(toy_model, rows):
    session = ListenSession(toy_model, SessionConfig(sampling=GREEDY))
    with pytest.raises(ValueError, match="only one row"):
        forward_step(toy_model, [ListenRequest(session, rows[1]),
                                 ListenRequest(session, rows[1])], [], ignore)


def test_kv_cache_grows_by_doubling_within_its_bound(toy_model):
    cache = toy_model.new_cache(max_tokens=1000)
    cache.reserve(10)
    assert cache.capacity == 256
    cache.reserve(300)
    assert cache.capacity == 512
    cache.reserve(900)
    assert cache.capacity == 1000  # never past the session's bound
    with pytest.raises(ValueError, match="at most 1000"):
        cache.reserve(1001)
    cache.clear()
    assert cache.length == 0 and cache.capacity == 1000  # buffers kept for the next fill
