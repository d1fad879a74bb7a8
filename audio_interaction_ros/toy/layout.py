"""Training sequences in the exact online layout the session runs (PROTOCOL.md §3.2-3.6).

prefix = [ONLINE, ENGLISH, TEXT_BEGIN, TEXT_BEGIN] + BPE(system prompt) + [TEXT_END]; then per
0.4 s chunk [AUDIO_BEGIN, PAD x10, ASSISTANT] (the chunk's 10 encoder rows go over the PADs)
followed by the answer: KEEP_SILENCE, or TEXT_BEGIN, emotion, text ids, TEXT_END. Only the tokens
the session samples are supervised: the one after ASSISTANT and, in a reply, each next token up
to TEXT_END. Positions run on without a break, as in ``ListenSession``; an optional gap after the
prefix stands in for a long history heard before the stream (RoPE only sees distances).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..core.protocol import (AUDIO_SLOT_OFFSET, ENGLISH, KEEP_SILENCE, LISTEN_BLOCK_IDS, ONLINE,
                             SYSTEM_PROMPT, TEXT_BEGIN, TEXT_END)
from .data import BEEP, IGNORE, SPEECH
from .spec import BEEP_REPLY, NORMAL, SPEECH_REPLY, SURPRISE
from .tokenizer import ToyTokenizer

NO_LOSS = -100


@dataclass(frozen=True)
class Vocabulary:
    """The real ids the toy uses: inputs it embeds and outputs its head can score."""

    prefix: tuple[int, ...]
    replies: dict[int, tuple[int, ...]]  # label -> [TEXT_BEGIN, emotion, text..., TEXT_END]

    @classmethod
    def build(cls, tokenizer: ToyTokenizer) -> "Vocabulary":
        prefix = (ONLINE, ENGLISH, TEXT_BEGIN, TEXT_BEGIN, *tokenizer.encode(SYSTEM_PROMPT),
                  TEXT_END)
        replies = {BEEP: (TEXT_BEGIN, SURPRISE, *tokenizer.encode(BEEP_REPLY), TEXT_END),
                   SPEECH: (TEXT_BEGIN, NORMAL, *tokenizer.encode(SPEECH_REPLY), TEXT_END)}
        return cls(prefix, replies)

    @property
    def outputs(self) -> tuple[int, ...]:
        """Ids the model may ever produce; every other id keeps a zero lm_head row."""
        ids = {KEEP_SILENCE} | {t for reply in self.replies.values() for t in reply}
        return tuple(sorted(ids))

    @property
    def inputs(self) -> tuple[int, ...]:
        """Ids the model is ever fed; every other id keeps a zero embedding row."""
        return tuple(sorted(set(self.prefix) | set(LISTEN_BLOCK_IDS) | set(self.outputs)))


@dataclass
class Sequence:
    """One stream as tokens: ids, where each chunk's audio rows go, and next-token targets."""

    ids: list[int]
    audio_slots: list[int]  # index of the first PAD of chunk k
    targets: list[int]  # real id expected next at each index, or NO_LOSS
    positions: list[int]


def build_sequence(vocab: Vocabulary, labels: list[int], gap: int = 0) -> Sequence:
    """Token layout of a stream whose chunk k must be answered as ``labels[k]``."""
    ids = list(vocab.prefix)
    targets = [NO_LOSS] * len(ids)
    slots = []
    for label in labels:
        slots.append(len(ids) + AUDIO_SLOT_OFFSET)
        answer = vocab.replies.get(label, (KEEP_SILENCE,))
        ids.extend(LISTEN_BLOCK_IDS)
        targets.extend([NO_LOSS] * (len(LISTEN_BLOCK_IDS) - 1))
        targets.append(NO_LOSS if label == IGNORE else answer[0])
        ids.extend(answer)
        targets.extend(answer[1:])
        targets.append(NO_LOSS)  # after KEEP_SILENCE/TEXT_END comes AUDIO_BEGIN: never sampled
    prefix = len(vocab.prefix)
    positions = list(range(prefix)) + list(range(prefix + gap, len(ids) + gap))
    return Sequence(ids, slots, targets, positions)
