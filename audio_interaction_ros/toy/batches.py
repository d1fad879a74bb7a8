"""Batches for toy training: similar lengths under a token budget, long histories on demand.

A batch is padded on the right (causal attention never looks at the padding) and carries, besides
ids and positions, where each chunk's 10 encoder rows go, which positions are supervised with
which target, and the per-chunk facts the auxiliary probes learn from (see ``train``).
"""
from __future__ import annotations

import numpy as np
import torch

from ..core.protocol import AUDIO_TOKENS_PER_CHUNK, KEEP_SILENCE, PAD
from .examples import Example, concatenate
from .layout import NO_LOSS, Sequence, Vocabulary

SPEAK_WEIGHT = 3.0  # the rare "start speaking" decisions count this much more than silence


class Batcher:
    """Fixed batches of similar length under a token budget, in a new order every epoch."""

    def __init__(self, pool: list[Example], tokens: int, rng: np.random.Generator) -> None:
        order = sorted(range(len(pool)), key=lambda i: len(pool[i].sequence.ids))
        self.pool = pool
        self.batches: list[list[int]] = []
        current: list[int] = []
        for index in order:
            length = len(pool[index].sequence.ids)
            if current and (len(current) + 1) * length > tokens:
                self.batches.append(current)
                current = []
            current.append(index)
        if current:
            self.batches.append(current)
        self.rng = rng
        self._queue: list[int] = []

    def next(self) -> list[Example]:
        if not self._queue:
            self._queue = list(self.rng.permutation(len(self.batches)))
        return [self.pool[i] for i in self.batches[self._queue.pop()]]

    def long(self, vocab: Vocabulary, tokens: int) -> list[Example]:
        """One example of about ``tokens`` tokens: random streams back to back."""
        parts: list[Example] = []
        total = len(vocab.prefix)
        while total < tokens:
            part = self.pool[int(self.rng.integers(len(self.pool)))]
            parts.append(part)
            total += len(part.sequence.ids) - len(vocab.prefix)
        return [concatenate(parts, vocab)]


def collate(examples: list[Example], in_map: dict[int, int],
            out_map: dict[int, int]) -> dict[str, torch.Tensor]:
    length = max(len(e.sequence.ids) for e in examples)
    pad = in_map[PAD]
    ids = torch.full((len(examples), length), pad, dtype=torch.long)
    positions = torch.zeros((len(examples), length), dtype=torch.long)
    slot_b, slot_t, label_b, label_t, label_y, weight = [], [], [], [], [], []
    decision_b, decision_t, facts = [], [], []
    for b, example in enumerate(examples):
        seq = example.sequence
        n = len(seq.ids)
        ids[b, :n] = torch.tensor([in_map[t] for t in seq.ids])
        positions[b, :n] = torch.tensor(seq.positions)
        positions[b, n:] = torch.arange(seq.positions[-1] + 1, seq.positions[-1] + 1 + length - n)
        for slot in seq.audio_slots:
            slot_b.extend([b] * AUDIO_TOKENS_PER_CHUNK)
            slot_t.extend(range(slot, slot + AUDIO_TOKENS_PER_CHUNK))
        decisions = decision_indices(seq)
        decision_b.extend([b] * len(seq.audio_slots))
        decision_t.extend(slot + AUDIO_TOKENS_PER_CHUNK for slot in seq.audio_slots)
        previous_speech = torch.cat([torch.zeros(1), example.content[:-1, 0]])
        facts.append(torch.stack([example.content[:, 0], previous_speech,
                                  example.content[:, 1]], dim=1))
        for t, target in enumerate(seq.targets):
            if target == NO_LOSS:
                continue
            label_b.append(b)
            label_t.append(t)
            label_y.append(out_map[target])
            speak = t in decisions and target != KEEP_SILENCE
            weight.append(SPEAK_WEIGHT if speak else 1.0)
    return {"ids": ids, "positions": positions,
            "mel": torch.cat([e.mel for e in examples]).float(),
            "content": torch.cat([e.content for e in examples]),
            "decisions": (torch.tensor(decision_b), torch.tensor(decision_t)),
            "facts": torch.cat(facts),
            "slots": (torch.tensor(slot_b), torch.tensor(slot_t)),
            "labels": (torch.tensor(label_b), torch.tensor(label_t)),
            "targets": torch.tensor(label_y), "weights": torch.tensor(weight)}


def decision_indices(seq: Sequence) -> set[int]:
    """Return the indices of the ASSISTANT tokens (where the listen/speak decision is read)."""
    return {slot + AUDIO_TOKENS_PER_CHUNK for slot in seq.audio_slots}
