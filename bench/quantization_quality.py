"""What weight-only quantization does to the model's decisions, measured rather than assumed.

Two measurements:

- ``trained``: the fixture checkpoint and the project's toy model (trained, 64 wide) over every
  real clip in ../shared/audio plus a beep: one greedy session per clip with the streaming front
  end (as the node runs), unquantized and then int8 / int4. Per scheme: the fraction of chunks
  whose listen decision (speak / stay silent) equals the unquantized one, and the deviation of the
  speak probability as log-odds, |logit(p_q) - logit(p)|, over all chunks and over the chunks
  before a clip's first disagreement (after one, the two sessions hear different histories).
  Replies are compared as texts.
- ``realdim``: random weights at the real 3B dimensions (bench/realdim.py; the same weights in
  each build) through a 46-token prefix, listen blocks with random audio rows and decode tokens:
  the relative error of each layer's MLP output on the same rows (what one quantized layer does)
  and of the logits, ||l_q - l|| / ||l||, per forward. A random-weight stack amplifies any
  perturbation layer after layer (trained networks do not), so the logits error overstates what
  quantization does; and random weights say nothing of the trained 3B model's quality under int8
  and especially int4, which is NOT verified here (its weights are not on this machine).

    python bench/quantization_quality.py trained --json bench/results/quantization_quality.json
    flock /tmp/heavy.lock python bench/quantization_quality.py realdim --threads 2 --json ...
"""
from __future__ import annotations

import argparse
import gc
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from common import AUDIO_DIR, load_model, machine_context, write_json
from audio_interaction_ros.core.audio import read_audio_file
from audio_interaction_ros.core.events import Decision, ReplyDone
from audio_interaction_ros.core.features import StreamingFrontEnd
from audio_interaction_ros.core.protocol import (AUDIO_SLOT_OFFSET, AUDIO_TOKENS_PER_CHUNK,
                                                 CHUNK_SAMPLES, KEEP_SILENCE, LISTEN_BLOCK_IDS,
                                                 TEXT_BEGIN)
from audio_interaction_ros.core.sampling import SamplingConfig
from audio_interaction_ros.core.session import ListenSession, SessionConfig
from audio_interaction_ros.toy.check import beep_clip

EPS = 1e-6


def clips() -> dict[str, np.ndarray]:
    """Return every clip of ../shared/audio, a beep, and all of them in one long session.

    The beep is what the tiny models were trained on; the long session has them three times over,
    1 s apart (context grows past 1500 tokens).
    """
    found = {path.name: read_audio_file(path) for path in sorted(AUDIO_DIR.iterdir())
             if path.suffix in (".wav", ".mp3", ".flac", ".ogg")}
    found["beep (synthetic)"] = beep_clip()
    gap = np.zeros(CHUNK_SAMPLES * 5 // 2, dtype=np.float32)
    found["all clips, one session, 3 times"] = np.concatenate(
        [piece for _ in range(3) for clip in list(found.values()) for piece in (clip, gap)])
    return found


def run_clip(model, samples: np.ndarray) -> tuple[list[tuple[bool, float]], list[str]]:
    """(speak, p_speak) per chunk and the reply texts of one greedy streaming session."""
    session = ListenSession(model, SessionConfig(sampling=SamplingConfig(temperature=0.0),
                                                 max_reply_tokens=48))
    frontend = StreamingFrontEnd()
    padded = np.concatenate([samples, np.zeros(-len(samples) % CHUNK_SAMPLES + 3 * CHUNK_SAMPLES,
                                               dtype=np.float32)])
    decisions, replies = [], []
    for chunk in padded.reshape(-1, CHUNK_SAMPLES):
        for event in session.listen(model.encode(frontend.push(chunk))[0]):
            if isinstance(event, Decision):
                decisions.append((event.speak, event.p_speak))
            elif isinstance(event, ReplyDone):
                replies.append(event.text)
    return decisions, replies


def _logit(p: float) -> float:
    p = min(max(p, EPS), 1 - EPS)
    return math.log(p / (1 - p))


def _stats(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    arr = np.asarray(values)
    return {"n": int(arr.size), "median": round(float(np.median(arr)), 4),
            "p95": round(float(np.percentile(arr, 95)), 4), "max": round(float(arr.max()), 4)}


def compare(ref: dict, quant: dict) -> dict:
    """Agreement and log-odds deviation of one scheme against the unquantized runs."""
    agree = total = 0
    deviation, before_split = [], []
    same_replies = 0
    for name, (decisions, replies) in ref.items():
        q_decisions, q_replies = quant[name]
        split = False
        for (speak, p), (q_speak, q_p) in zip(decisions, q_decisions):
            total += 1
            agree += speak == q_speak
            d = abs(_logit(q_p) - _logit(p))
            deviation.append(d)
            if not split:
                before_split.append(d)
            split = split or speak != q_speak
        same_replies += replies == q_replies
    return {"chunks": total, "decision_agreement": round(agree / total, 4),
            "log_odds_deviation": _stats(deviation),
            "log_odds_deviation_before_first_disagreement": _stats(before_split),
            "clips_with_identical_replies": f"{same_replies}/{len(ref)}"}


def trained(args: argparse.Namespace) -> dict:
    audio = clips()
    results = {}
    for spec in args.models.split(","):
        runs = {}
        for scheme in ("none", *args.schemes.split(",")):
            model = load_model(spec, "cpu", args.dtype, quantization=scheme)
            runs[scheme] = {name: run_clip(model, samples) for name, samples in audio.items()}
            print(f"{spec} {scheme}: {model.info.quantized_layers}, "
                  f"{model.info.weight_bytes / 1e6:.1f} MB", flush=True)
        results[spec] = {scheme: compare(runs["none"], runs[scheme])
                         for scheme in args.schemes.split(",")}
        for scheme, row in results[spec].items():
            print(f"  {scheme}: agreement {row['decision_agreement']:.4f} over {row['chunks']} "
                  f"chunks; |d log-odds| median {row['log_odds_deviation']['median']}, p95 "
                  f"{row['log_odds_deviation']['p95']}; identical replies "
                  f"{row['clips_with_identical_replies']}")
    return {"clips": list(audio), "dtype": args.dtype, "models": results}


@torch.inference_mode()
def realdim_logits(model, steps: int, seed: int) -> list[torch.Tensor]:
    """Return float32 logits of a prefix, then ``steps`` x (listen block, one decode token).

    Each listen block has random audio rows; the same inputs for every build (seeded).
    """
    generator = torch.Generator().manual_seed(seed)
    width = model.embed_dim
    cache, position, out = model.new_cache(), 0, []

    def run(embeds: torch.Tensor) -> None:
        nonlocal position
        positions = torch.arange(position, position + len(embeds), device=model.device)
        out.append(model.forward(embeds, cache, position, positions).cpu())
        position += len(embeds)

    run(model.embed(list(range(100, 146))))
    for _ in range(steps):
        embeds = model.embed([KEEP_SILENCE, *LISTEN_BLOCK_IDS])
        rows = torch.randn(AUDIO_TOKENS_PER_CHUNK, width, generator=generator) * 0.5
        start = 1 + AUDIO_SLOT_OFFSET
        embeds[start:start + AUDIO_TOKENS_PER_CHUNK] = rows.to(model.dtype)
        run(embeds)
        run(model.embed([TEXT_BEGIN]))
    return out


@torch.inference_mode()
def mlp_outputs(model, seed: int) -> list[torch.Tensor]:
    """Run each decoder layer's MLP on the same 13 random rows.

    That is the error one quantized layer makes, before 36 random layers amplify it.
    """
    x = torch.randn(13, model.embed_dim, generator=torch.Generator().manual_seed(seed))
    return [layer.mlp(x.to(model.dtype)).float() for layer in model.lm.model.layers]


def realdim(args: argparse.Namespace) -> dict:
    reference, reference_mlps, results = None, None, {}
    for scheme in ("none", *args.schemes.split(",")):
        started = time.perf_counter()
        model = load_model("real", "cpu", args.dtype, quantization=scheme)
        logits = realdim_logits(model, args.steps, args.seed)
        mlps = mlp_outputs(model, args.seed)
        info = model.info
        del model
        gc.collect()
        if reference is None:
            reference, reference_mlps = logits, mlps
            continue
        errors = [float((q - r).norm() / r.norm()) for q, r in zip(logits, reference)]
        mlp_errors = [float((q - r).norm() / r.norm()) for q, r in zip(mlps, reference_mlps)]
        pair = [abs(_logit(float(torch.softmax(q[[KEEP_SILENCE, TEXT_BEGIN]], -1)[1]))
                    - _logit(float(torch.softmax(r[[KEEP_SILENCE, TEXT_BEGIN]], -1)[1])))
                for q, r in zip(logits[1::2], reference[1::2])]
        top1 = np.mean([int(q.argmax() == r.argmax()) for q, r in zip(logits, reference)])
        results[scheme] = {"quantized_layers": info.quantized_layers,
                           "weight_bytes": info.weight_bytes,
                           "relative_mlp_output_error": _stats(mlp_errors),
                           "relative_logits_error": _stats(errors),
                           "listen_log_odds_deviation": _stats(pair),
                           "top1_agreement": round(float(top1), 3),
                           "build_and_run_s": round(time.perf_counter() - started, 1)}
        print(f"{scheme}: relative MLP output error {results[scheme]['relative_mlp_output_error']}"
              f"; logits {results[scheme]['relative_logits_error']}; listen |d log-odds| "
              f"{results[scheme]['listen_log_odds_deviation']}", flush=True)
    return {"dtype": args.dtype, "steps": args.steps, "schemes": results,
            "note": "random weights: arithmetic error only; real-model quality not verified"}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("what", choices=["trained", "realdim"])
    parser.add_argument("--models", default="fixture,toy", help="trained: fixture, toy, a dir")
    parser.add_argument("--schemes", default="int8,int4")
    parser.add_argument("--dtype", default=None,
                        help="float32 for the trained models, bfloat16 at real dimensions")
    parser.add_argument("--steps", type=int, default=8, help="realdim: listen+decode pairs")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 suits the 64-wide models; 2 at real dimensions)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    args.dtype = args.dtype or ("float32" if args.what == "trained" else "bfloat16")
    torch.set_num_threads(args.threads)
    context = machine_context()
    body = trained(args) if args.what == "trained" else realdim(args)
    report = {"machine": context, "args": {k: str(v) for k, v in vars(args).items()}, **body,
              "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
