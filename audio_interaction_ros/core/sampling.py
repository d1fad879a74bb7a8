"""Token choice from logits, in the order the authors' ``sample()`` applies it. No rclpy here.

top-k filter -> argmax if temperature <= 0 -> divide by temperature -> top-p (smallest set whose
probability exceeds top_p, always keeping the best) -> multinomial draw.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingConfig:
    """Decoding settings; the defaults follow the model card (temperature 0.3, top-k 3)."""

    temperature: float = 0.3
    top_k: int = 3  # 0 = no top-k filter
    top_p: float = 1.0  # 1.0 = no nucleus filter
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1


def sample(logits: torch.Tensor, config: SamplingConfig,
           generator: torch.Generator | None = None) -> int:
    """Index chosen from 1-D ``logits``; greedy picks the first index among equal maxima."""
    if config.greedy:
        return int(torch.argmax(logits))
    logits = logits.float()
    if 0 < config.top_k < logits.numel():
        kth = torch.topk(logits, config.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    logits = logits / config.temperature
    if config.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        remove = cumulative > config.top_p
        remove[1:] = remove[:-1].clone()  # keep the token that crosses top_p
        remove[0] = False
        logits = logits.masked_fill(torch.zeros_like(remove).scatter(0, order, remove),
                                    float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))
