"""Token choice: greedy tie-breaking, top-k/top-p filtering, seeded reproducibility."""
from __future__ import annotations

import pytest
import torch

from audio_interaction_ros.core.sampling import SamplingConfig, sample


def test_greedy_takes_first_of_equal_maxima():
    logits = torch.tensor([0.0, 3.0, 1.0, 3.0])
    assert sample(logits, SamplingConfig(temperature=0)) == 1
    assert sample(logits, SamplingConfig(temperature=1.0, top_k=1)) == 1


def test_top_k_limits_the_draw():
    logits = torch.tensor([5.0, 4.9, 4.8, 4.7, -1.0])
    gen = torch.Generator().manual_seed(0)
    picks = {sample(logits, SamplingConfig(temperature=2.0, top_k=2), gen) for _ in range(300)}
    assert picks == {0, 1}


def test_top_p_keeps_the_token_that_crosses_and_the_best():
    logits = torch.log(torch.tensor([0.6, 0.3, 0.1]))
    gen = torch.Generator().manual_seed(0)
    picks = {sample(logits, SamplingConfig(temperature=1.0, top_k=0, top_p=0.5), gen)
             for _ in range(200)}
    assert picks == {0}
    picks = {sample(logits, SamplingConfig(temperature=1.0, top_k=0, top_p=0.7), gen)
             for _ in range(400)}
    assert picks == {0, 1}


def test_seed_reproduces_draws():
    logits = torch.randn(50)
    config = SamplingConfig(temperature=1.0, top_k=0)
    a = [sample(logits, config, torch.Generator().manual_seed(7)) for _ in range(1)]
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert [sample(logits, config, g1) for _ in range(20)] == \
        [sample(logits, config, g2) for _ in range(20)]
    assert a


def test_draws_follow_the_distribution():
    logits = torch.log(torch.tensor([0.75, 0.25]))
    gen = torch.Generator().manual_seed(3)
    share = sum(sample(logits, SamplingConfig(temperature=1.0, top_k=0), gen)
                for _ in range(2000)) / 2000
    assert 0.2 < share < 0.3


@pytest.mark.parametrize("kwargs", [dict(temperature=-1), dict(top_k=-1), dict(top_p=0.0),
                                    dict(top_p=1.5)])
def test_invalid_settings_rejected(kwargs):
    with pytest.raises(ValueError):
        SamplingConfig(**kwargs)
