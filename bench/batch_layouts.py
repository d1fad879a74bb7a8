"""Which batch layout for rows of different context lengths: the measurement behind core/rows.py.

One 13-token listen step for N sessions whose contexts differ (default 300, 1500 and 3000 tokens),
four ways:

- ``packed`` (what the core does): the rows' new tokens concatenated into one sequence, every
  weight applied once to it; attention row by row against each row's own KV cache.
- ``padded_copy``: the textbook batch: every step the per-session caches are copied into one
  left-padded (N, heads, longest, dim) cache, the inputs are an (N, 13) batch and transformers
  builds the 4D mask from a padding mask and per-row ``position_ids``.
- ``padded_resident``: the same batch with the padded cache already in place (no copy): the
  lower bound of a batched cache that keeps every row on one shared timeline (ARCHITECTURE §3.5),
  whose rows all attend over the longest row's slots.
- ``sequential``: N one-row forwards (the engine before batching).

Also the LM head: all 151,936 rows vs only KEEP_SILENCE/TEXT_BEGIN (the listen decision), on the
packed layout. Caches hold random keys/values (cost depends on length, not on values) and are
rewound after each repetition. Not a test; writes JSON with the machine's load beside it.

    flock /tmp/heavy.lock .venv/bin/python bench/batch_layouts.py --model real --dtype bfloat16 \
        --threads 2 --json bench/results/batch_layouts_real_cpu_bfloat16.json
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from common import (add_model_args, load_model, machine_context, percentiles_ms, random_cache,
                    sync, write_report)
from audio_interaction_ros.core.model import AudioInteractionModel
from audio_interaction_ros.core.protocol import KEEP_SILENCE, LISTEN_BLOCK_IDS, TEXT_BEGIN
from audio_interaction_ros.core.rows import KVCache, Row

LISTEN_IDS = [KEEP_SILENCE, *LISTEN_BLOCK_IDS]  # last sampled token + one listening block
PAIR = (KEEP_SILENCE, TEXT_BEGIN)


def _rows(model: AudioInteractionModel, caches: list[KVCache],
          head: tuple[int, ...] | None = PAIR) -> list[Row]:
    embeds = model.embed(LISTEN_IDS)
    return [Row(embeds, c, torch.arange(c.length, c.length + len(LISTEN_IDS),
                                        device=model.device), head) for c in caches]


def _padded(model: AudioInteractionModel, caches: list[KVCache]):
    """(DynamicCache, padding mask) of the rows left-padded to the longest."""
    from transformers import DynamicCache

    longest = max(c.length for c in caches)
    batch = DynamicCache(config=model.lm.config)
    for layer in range(caches[0].n_layers):
        keys = torch.zeros((len(caches), caches[0].kv_heads, longest, caches[0].head_dim),
                           dtype=model.dtype, device=model.device)
        values = torch.zeros_like(keys)
        for i, cache in enumerate(caches):
            k, v = cache.layer(layer)
            keys[i, :, longest - cache.length:] = k[0]
            values[i, :, longest - cache.length:] = v[0]
        batch.update(keys, values, layer)
    mask = torch.zeros((len(caches), longest + len(LISTEN_IDS)), dtype=torch.long,
                       device=model.device)
    for i, cache in enumerate(caches):
        mask[i, longest - cache.length:] = 1
    return batch, mask


@torch.inference_mode()
def padded_forward(model: AudioInteractionModel, caches: list[KVCache], prepared=None
                   ) -> torch.Tensor:
    """Run the (N, 13) batch through transformers' own masking; return each row's listen pair."""
    batch, mask = prepared if prepared is not None else _padded(model, caches)
    embeds = model.embed(LISTEN_IDS).unsqueeze(0).expand(len(caches), -1, -1)
    positions = torch.stack([torch.arange(c.length, c.length + len(LISTEN_IDS),
                                          device=model.device) for c in caches])
    out = model.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                   cache=batch, use_cache=True, logits_to_keep=1)
    if prepared is not None:
        batch.crop(-len(LISTEN_IDS))
    return out.logits[:, -1, list(PAIR)].float()


def _time(fn, caches: list[KVCache], device: torch.device) -> float:
    lengths = [c.length for c in caches]
    sync(device)
    started = time.perf_counter()
    fn()
    sync(device)
    elapsed = time.perf_counter() - started
    for cache, length in zip(caches, lengths):
        cache.truncate(length)
    return elapsed


def measure(model: AudioInteractionModel, contexts: list[int], reps: int, warmup: int,
            seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    caches = [random_cache(model, n, generator=generator) for n in contexts]
    variants = {
        "packed": lambda: model.forward(_rows(model, caches)),
        "packed_full_head": lambda: model.forward(_rows(model, caches, None)),
        "padded_copy": lambda: padded_forward(model, caches),
        "sequential": lambda: [model.forward(_rows(model, [c])) for c in caches],
    }
    # correctness first: the layouts compute the same decision logits
    packed = torch.stack(variants["packed"]())
    for cache, n in zip(caches, contexts):
        cache.truncate(n)
    padded = padded_forward(model, caches)
    for cache, n in zip(caches, contexts):
        cache.truncate(n)
    resident = _padded(model, caches)
    variants["padded_resident"] = lambda: padded_forward(model, caches, resident)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for rep in range(warmup + reps):
        for name, fn in variants.items():
            elapsed = _time(fn, caches, model.device)
            if rep >= warmup:
                times[name].append(elapsed)
    return {"contexts": contexts, "reps": reps,
            "max_abs_diff_packed_vs_padded": float((packed - padded).abs().max()),
            "ms": {name: percentiles_ms(t) for name, t in times.items()},
            "ratio_to_packed_p50": {name: round(float(np.median(t) / np.median(times["packed"])),
                                                3) for name, t in times.items()}}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_args(parser)
    parser.add_argument("--contexts", default="300,1500,3000")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    context = machine_context()
    model = load_model(args.model, args.device, args.dtype, seed=args.seed)
    result = measure(model, [int(c) for c in args.contexts.split(",")], args.reps,
                     args.warmup, args.seed)
    report = write_report(args.json, args.model, model, context, result)
    print(json.dumps({k: report[k] for k in ("contexts", "ms", "ratio_to_packed_p50",
                                             "max_abs_diff_packed_vs_padded")}, indent=1))
    return report


if __name__ == "__main__":
    main()
