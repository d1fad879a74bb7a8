"""Joint training of the tiny audio encoder and LM on synthetic streams (about a minute).

Both are trained together from scratch: there is no pretrained tiny encoder to freeze (the
authors froze their encoder only because it came pretrained from Qwen2.5-Omni), and a random
frozen tower would leave the tiny LM to untangle beeps from speech on its own. The loss is exactly
the full-vocabulary cross-entropy of the exported model: the ~150k ids the toy never uses keep
zero ``lm_head`` rows, i.e. logit 0 each, so together they enter the softmax as one extra class
with logit log(count). Training therefore pushes every wanted token well above 0, which is what
greedy decoding over the real vocabulary needs.
"""
from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from .batches import Batcher, collate
from .data import StreamMaker
from .examples import make_pool
from .layout import Vocabulary
from .networks import ToyLM, build_encoder, encode_chunks
from .spec import LM, RECIPE, TrainRecipe
from .tokenizer import ToyTokenizer

HEAD_LR_SCALE = 5.0
# Throw-away linear probes (not exported) that make the facts behind each answer explicit early:
# on each chunk's mean encoder row "speech here", "beep here"; on the LM state at every decision
# "speech here", "speech in the previous chunk", "beep here". They give every chunk a training
# signal, where the answers alone give one per utterance, and make training converge reliably.
AUX_WEIGHT = 0.5
# Stream lengths in chunks (share of the pool, range). Long histories are built by concatenation.
LENGTH_TIERS = ((0.8, (6, 19)), (0.2, (24, 57)))


@dataclass
class Trained:
    """What the export needs: both networks and the id maps of the compact vocabulary."""

    encoder: torch.nn.Module
    lm: ToyLM
    vocab: Vocabulary
    tokenizer: ToyTokenizer
    final_loss: float
    seconds: float


def _loss(encoder, lm: ToyLM, probes: torch.nn.ModuleList, batch: dict,
          bucket: float) -> tuple[torch.Tensor, float]:
    rows = encode_chunks(encoder, batch["mel"])
    audio = rows.reshape(-1, LM.n_embd)
    aux = F.binary_cross_entropy_with_logits(probes[0](rows.mean(dim=1)), batch["content"])
    embeds = lm.body.embed_tokens(batch["ids"]).index_put(batch["slots"], audio)
    hidden = lm.hidden(embeds, batch["positions"])
    aux = aux + F.binary_cross_entropy_with_logits(probes[1](hidden[batch["decisions"]]),
                                                   batch["facts"])
    logits = lm.head(hidden[batch["labels"]])
    logits = torch.cat([logits, torch.full_like(logits[:, :1], bucket)], dim=1)
    losses = F.cross_entropy(logits, batch["targets"], reduction="none")
    weights = batch["weights"]
    accuracy = float((logits.argmax(dim=1) == batch["targets"]).float().mean())
    return (losses * weights).sum() / weights.sum() + AUX_WEIGHT * aux, accuracy


def _chunk_counts(rng: np.random.Generator, count: int) -> list[int]:
    counts = []
    for share, (low, high) in LENGTH_TIERS:
        counts.extend(int(n) for n in rng.integers(low, high, size=round(share * count)))
    return counts


def train(utterances: list[np.ndarray], recipe: TrainRecipe = RECIPE,
          log: Callable[[str], None] = print) -> Trained:
    """Generate the data, train both networks, return them on CPU in eval mode.

    Curriculum: short streams first (the sounds and the reply texts are learned in a couple of
    hundred steps), then every other step one long history of streams back to back, so that
    minutes of context (up to the session's 4096 tokens) do not change the answers.
    torch's thread count is restored afterwards (the caller may be a node or a test run).
    """
    with torch_threads(torch.get_num_threads()):
        return _train(utterances, recipe, log)


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run with ``count`` torch threads, then restore the caller's setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train(utterances: list[np.ndarray], recipe: TrainRecipe,
           log: Callable[[str], None]) -> Trained:
    started = time.perf_counter()
    # Feature extraction is thousands of tiny STFTs: threads only add overhead.
    torch.set_num_threads(1)
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    tokenizer = ToyTokenizer()
    vocab = Vocabulary.build(tokenizer)
    in_map = {t: i for i, t in enumerate(vocab.inputs)}
    out_map = {t: i for i, t in enumerate(vocab.outputs)}
    bucket = math.log(LM.padded_vocab_size - len(vocab.outputs))

    pool = make_pool(StreamMaker(rng, utterances), vocab, rng,
                     _chunk_counts(rng, recipe.n_streams))
    chunks = sum(e.mel.shape[0] for e in pool)
    log(f"  data: {len(pool)} streams, {chunks} chunks ({chunks * 0.4 / 60:.1f} min of audio), "
        f"{len(utterances)} espeak-ng utterances, {time.perf_counter() - started:.1f} s")

    torch.set_num_threads(recipe.threads)
    encoder = build_encoder().train()
    lm = ToyLM(len(vocab.inputs), len(vocab.outputs)).train()
    probes = torch.nn.ModuleList([torch.nn.Linear(LM.n_embd, 2), torch.nn.Linear(LM.n_embd, 3)])
    params = list(encoder.parameters()) + list(lm.parameters()) + list(probes.parameters())
    # The head's rows must reach logits well above log(151k) ~ 12 (the unused ids' bucket):
    # a larger step for them shortens the start of training where everything predicts "other".
    head = {id(p) for p in lm.head.parameters()}
    groups = [{"params": [p for p in params if id(p) not in head], "scale": 1.0},
              {"params": list(lm.head.parameters()), "scale": HEAD_LR_SCALE}]
    optimizer = torch.optim.AdamW(groups, lr=recipe.lr, betas=(0.9, 0.98), weight_decay=0.0)
    batcher = Batcher(pool, recipe.tokens_per_batch, rng)
    long_from = int(recipe.long_from * recipe.steps)
    recent: list[float] = []
    for step in range(recipe.steps):
        warm = min(1.0, (step + 1) / recipe.warmup_steps)
        decay = 0.1 + 0.45 * (1 + math.cos(math.pi * step / max(1, recipe.steps - 1)))
        for group in optimizer.param_groups:
            group["lr"] = group["scale"] * recipe.lr * warm * decay
        if step >= long_from and (step - long_from) % 2 == 0:
            examples = batcher.long(vocab, int(rng.integers(*recipe.long_tokens)))
        else:
            examples = batcher.next()
        loss, accuracy = _loss(encoder, lm, probes, collate(examples, in_map, out_map), bucket)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        recent = (recent + [float(loss.detach())])[-20:]
        if (step + 1) % 80 == 0 or step + 1 == recipe.steps:
            log(f"  step {step + 1}/{recipe.steps}: loss {np.mean(recent):.4f} (incl. probes), "
                f"token accuracy {accuracy:.3f}, {time.perf_counter() - started:.1f} s")
    return Trained(encoder.eval(), lm.eval(), vocab, tokenizer, float(np.mean(recent)),
                   time.perf_counter() - started)
