"""The listen/speak state machine: detokenisation, reset, reply cap, context window."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from audio_interaction_ros.core.audio import pad_to_chunks, read_audio_file
from audio_interaction_ros.core.events import ContextRebuilt, Decision, ReplyDelta, ReplyDone
from audio_interaction_ros.core.features import StreamingFrontEnd, reference_features
from audio_interaction_ros.core.protocol import CHUNK_SAMPLES, KEEP_SILENCE, TEXT_BEGIN, TEXT_END
from audio_interaction_ros.core.sampling import SamplingConfig
from audio_interaction_ros.core.session import (INSTRUCTION_CHUNK_TOKENS, InstructionRejected,
                                                ListenSession, SessionConfig, TextStream)

GREEDY = SamplingConfig(temperature=0.0)


@pytest.fixture(scope="module")
def beep_rows(toy_model, beep_wav):
    audio = pad_to_chunks(read_audio_file(beep_wav), CHUNK_SAMPLES)
    return toy_model.encode(reference_features(audio))  # beep at chunk 2


@pytest.fixture(scope="module")
def silence_rows(toy_model):
    return toy_model.encode(reference_features(np.zeros(CHUNK_SAMPLES, np.float32)))[0]


def turns_of(events) -> list[list[int]]:
    turns = []
    for event in events:
        if isinstance(event, Decision) and not event.speak:
            turns.append([KEEP_SILENCE])
        elif isinstance(event, ReplyDone):
            turns.append(list(event.tokens))
    return turns


def test_text_stream_holds_back_incomplete_characters():
    table = {1: b"h", 2: b"\xc3", 3: b"\xa9", 4: b"!"}

    def decode(ids):
        return b"".join(table[i] for i in ids).decode("utf-8", errors="replace")

    stream = TextStream(decode)
    assert [stream.push(i) for i in (1, 2, 3, 4)] == ["h", "", "é", "!"]
    assert stream.text == "hé!"
    assert stream.finish() == ""


def test_reply_events_stream_then_finish(toy_model, beep_rows):
    session = ListenSession(toy_model, SessionConfig(sampling=GREEDY))
    seen = []
    events = []
    for rows in beep_rows:
        events += session.listen(rows, emit=seen.append)
    assert seen == events
    done = [e for e in events if isinstance(e, ReplyDone)]
    assert len(done) == 1 and done[0].chunk_index == 2
    assert done[0].text == "I hear a beep." and done[0].emotion == "surprise"
    assert done[0].tokens[0] == TEXT_BEGIN and done[0].tokens[-1] == TEXT_END
    deltas = [e.text for e in events if isinstance(e, ReplyDelta)]
    assert len(deltas) > 1 and "".join(deltas) == done[0].text
    assert not done[0].truncated and done[0].p_speak > 0.99
    assert done[0].first_text_s <= done[0].total_s


def test_reset_then_replay_equals_fresh(toy_model, beep_rows):
    session = ListenSession(toy_model, SessionConfig(sampling=GREEDY))
    first = [turns_of(session.listen(r)) for r in beep_rows]
    session.reset()
    again = [turns_of(session.listen(r)) for r in beep_rows]
    fresh = ListenSession(toy_model, SessionConfig(sampling=GREEDY))
    assert again == first == [turns_of(fresh.listen(r)) for r in beep_rows]
    assert session.cached_tokens == fresh.cached_tokens


def test_seeded_sampling_is_reproducible(toy_model, beep_rows):
    config = SessionConfig(sampling=SamplingConfig(temperature=1.0, top_k=0, seed=5))
    runs = []
    for _ in range(2):
        session = ListenSession(toy_model, config)
        runs.append([turns_of(session.listen(r)) for r in beep_rows])
    assert runs[0] == runs[1]


def test_reply_cap_truncates_and_closes_the_turn(toy_model, beep_rows, silence_rows):
    session = ListenSession(toy_model, SessionConfig(sampling=GREEDY, max_reply_tokens=3))
    events = [e for r in beep_rows for e in session.listen(r)]
    done = [e for e in events if isinstance(e, ReplyDone)][0]
    assert done.truncated
    words = tuple(toy_model.encode_text("I hear"))  # 2 tokens
    assert done.tokens == (TEXT_BEGIN, 151617, *words, TEXT_END)  # emotion + 2 words, closed
    assert done.text == "I hear"
    # the stream goes on in the trained layout: silence stays silent
    after = session.listen(silence_rows)
    assert turns_of(after) == [[KEEP_SILENCE]]


def test_context_is_rebuilt_within_its_bound(toy_model, beep_rows, silence_rows):
    config = SessionConfig(sampling=GREEDY, max_context_tokens=400, keep_context_tokens=300,
                           max_reply_tokens=64)
    session = ListenSession(toy_model, config)
    rebuilt, replies, peak = [], [], 0
    for k in range(120):
        rows = beep_rows[2] if k % 20 == 2 else silence_rows
        for event in session.listen(rows):
            if isinstance(event, ContextRebuilt):
                rebuilt.append(event)
            elif isinstance(event, ReplyDone):
                replies.append(k)
        peak = max(peak, session.context_tokens)
    assert peak <= 400
    assert len(rebuilt) >= 4
    assert all(e.tokens_after <= 300 and e.blocks_dropped > 0 for e in rebuilt)
    assert replies == [k for k in range(120) if k % 20 == 2]  # behaviour survives rebuilds


def test_rebuilt_context_equals_a_fresh_session_on_the_kept_blocks(toy_model, beep_rows,
                                                                   silence_rows):
    """After a rebuild the logits are those of a session that heard only the kept chunks."""
    config = SessionConfig(sampling=GREEDY, max_context_tokens=200, keep_context_tokens=150,
                           max_reply_tokens=20)
    session = ListenSession(toy_model, config)
    history = [silence_rows] * 10 + [beep_rows[2]] + [silence_rows] * 3
    rebuilt_at = None
    for k, rows in enumerate(history):
        if any(isinstance(e, ContextRebuilt) for e in session.listen(rows)):
            rebuilt_at = k
            break
    assert rebuilt_at is not None
    kept_blocks = session.history_blocks  # includes the chunk just listened to
    replay = ListenSession(toy_model, config)
    for rows in history[rebuilt_at + 1 - kept_blocks:rebuilt_at + 1]:
        replay.listen(rows)
    assert replay.cached_tokens == session.cached_tokens
    probe = beep_rows[2]
    a = session.listen(probe)[0]
    b = replay.listen(probe)[0]
    assert a.p_speak == pytest.approx(b.p_speak, rel=1e-4, abs=1e-6)


def test_pinned_blocks_survive_rebuilds(toy_model, beep_rows, silence_rows):
    config = SessionConfig(sampling=GREEDY, max_context_tokens=300, keep_context_tokens=200,
                           max_reply_tokens=20)
    session = ListenSession(toy_model, config)
    session.instruct_audio(beep_rows[:2])
    for _ in range(60):
        session.listen(silence_rows)
    assert session.rebuilds >= 2
    pinned = [b for b in session._blocks if b.pinned]
    assert len(pinned) == 2
    assert session._blocks[0].pinned and session._blocks[1].pinned


def pinned_tokens(session) -> int:
    return sum(len(b.ids) for b in session._blocks if b.pinned)


def test_a_new_instruction_replaces_the_old_one(toy_model, beep_rows, silence_rows):
    """Spoken or typed, the newest instruction is the only pinned content, and the session
    then equals a fresh one that heard only it plus the live chunks since."""
    session = ListenSession(toy_model, SessionConfig(sampling=GREEDY))
    for rows in (beep_rows[:4], beep_rows[:2], beep_rows[2:5]):
        events = session.instruct_audio(rows, source="clip")
        session.listen(silence_rows)
    assert [b.pinned for b in session._blocks] == [False, False, True, True, True, False]
    reply = [e.tokens for e in events if isinstance(e, ReplyDone)]  # the beep is answered
    assert len(reply) == 1
    assert session.instruction_tokens == pinned_tokens(session) == 3 * 13 + len(reply[0]) - 1
    session.instruct_text("hear")
    session.listen(silence_rows)
    assert sum(b.pinned for b in session._blocks) == 1 and session.instruction_source == "hear"
    fresh = ListenSession(toy_model, SessionConfig(sampling=GREEDY))
    for rows in [silence_rows] * 3:
        fresh.listen(rows)
    fresh.instruct_text("hear")
    fresh.listen(silence_rows)
    assert fresh.context_tokens == session.context_tokens
    a, b = session.listen(beep_rows[2])[0], fresh.listen(beep_rows[2])[0]
    assert a.p_speak == pytest.approx(b.p_speak, rel=1e-4, abs=1e-6)
    session.clear_instruction()
    assert pinned_tokens(session) == 0 and session.instruction_source == ""


def test_instructions_are_bounded(toy_model, beep_rows, silence_rows):
    """Too long: rejected before anything changes; replies to an instruction are cut so the
    pinned total never passes the budget, and a rebuild still fits."""
    config = SessionConfig(sampling=GREEDY, max_context_tokens=400, keep_context_tokens=300,
                           max_reply_tokens=64)
    session = ListenSession(toy_model, config)
    budget = session.instruction_budget
    assert budget == 300 // 4
    session.instruct_audio(beep_rows[:2], source="first")
    before = list(session._blocks)
    fits = budget // INSTRUCTION_CHUNK_TOKENS
    with pytest.raises(InstructionRejected, match="more than the 75"):
        session.instruct_audio(beep_rows[[0] * (fits + 1)])
    with pytest.raises(InstructionRejected, match="longer than"):
        session.instruct_text("beep " * 100)
    assert session._blocks == before and session.instruction_source == "first"
    # the beep first, then as many chunks as fit: its reply must leave them their share
    rows = torch.cat([beep_rows[2:3], beep_rows[[0] * (fits - 1)]])
    events = session.instruct_audio(rows)
    done = [e for e in events if isinstance(e, ReplyDone)]
    assert len(done) == 1 and done[0].truncated
    assert session.instruction_tokens <= budget
    for _ in range(40):
        session.listen(silence_rows)
        assert session.context_tokens <= 400
    assert session.rebuilds >= 1 and pinned_tokens(session) == session.instruction_tokens


def test_reset_keeping_the_instruction_rebuilds_from_it(toy_model, beep_rows, silence_rows):
    """How the engine recovers: history gone, instruction kept, equal to a fresh session that
    was given the same instruction."""
    session = ListenSession(toy_model, SessionConfig(sampling=GREEDY))
    session.instruct_audio(beep_rows[:2], source="clip")
    for rows in beep_rows:
        session.listen(rows)
    session.reset(keep_instruction=True)
    assert session.instruction_source == "clip" and session.history_blocks == 2
    fresh = ListenSession(toy_model, SessionConfig(sampling=GREEDY))
    fresh.instruct_audio(beep_rows[:2])
    assert turns_of(session.listen(beep_rows[2])) == turns_of(fresh.listen(beep_rows[2]))
    assert session.cached_tokens == fresh.cached_tokens
    session.reset()
    assert session.history_blocks == 0 and session.instruction_source == ""


def test_wrong_shape_is_rejected(toy_model):
    session = ListenSession(toy_model)
    with pytest.raises(ValueError, match=r"\(10, 64\)"):
        session.listen(torch.zeros(9, 64))


@pytest.mark.parametrize("kwargs, match", [
    (dict(rope_positions="fp16"), "rope_positions"),
    (dict(max_reply_tokens=0), "max_reply_tokens"),
    (dict(keep_context_tokens=4090), "keep_context_tokens"),
    (dict(max_reply_tokens=2000), "must not exceed"),
])
def test_invalid_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SessionConfig(**kwargs)


@pytest.mark.slow
def test_ten_minute_stream_runs_within_its_context_bound(toy_model, long_wav):
    """1500 chunks (10 minutes) of audio through one session with the default window:
    the reference would have crashed after about 2 minutes."""
    audio = read_audio_file(long_wav)  # 120 s
    stream = np.concatenate([audio] * 6)[: 1500 * CHUNK_SAMPLES]
    stream = pad_to_chunks(stream, CHUNK_SAMPLES)
    front = StreamingFrontEnd()
    session = ListenSession(toy_model, SessionConfig(sampling=GREEDY))
    peak, replies, rebuilds = 0, 0, 0
    for chunk in stream.reshape(-1, CHUNK_SAMPLES):
        for event in session.listen(toy_model.encode(front.push(chunk))[0]):
            replies += isinstance(event, ReplyDone)
            rebuilds += isinstance(event, ContextRebuilt)
        peak = max(peak, session.context_tokens)
    assert session.chunk_index == 1500
    assert peak <= session.config.max_context_tokens
    assert rebuilds >= 5
    assert replies >= 5 * 15  # the long clip draws 20 replies per pass; context cuts cost few
