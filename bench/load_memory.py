"""Peak memory while loading a checkpoint at the real 3B dimensions: none vs int8 vs int4.

Why: an 8 GB board (Jetson Orin Nano) holds the robot's own software too; the int8 / int4 model
must load there, so loading has to stay near the size of what it keeps (core/loading.py fills the
networks tensor by tensor and quantizes each linear layer as soon as its weights are in).

A random checkpoint in the release layout (PROTOCOL.md §1.1: litgpt tensors with fused qkv in
safetensors shards, the encoder's state dict as .pth, the Omni config, the fixture's tokenizer)
is written once (about 8 GB, shard by shard so that writing it needs little memory), then each
scheme is loaded in a fresh process that reports: ``VmHWM`` (peak resident memory, including the
pages of the memory-mapped shards, which the kernel can drop under pressure), the peak of
``RssAnon`` (resident memory that cannot be dropped: what must fit; sampled every 2 ms), and the
same after loading, next to the weight bytes kept.

    flock /tmp/heavy.lock python bench/load_memory.py --json bench/results/load_memory_real.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
import yaml

from common import FIXTURE_CKPT, machine_context, rss_mb, write_json
from realdim import REAL_AUDIO, REAL_LITGPT
from audio_interaction_ros.core import checkpoint as ckpt

LAYERS_PER_SHARD = 6


def _litgpt_shapes() -> dict[str, tuple[int, ...]]:
    c = REAL_LITGPT
    width, heads, groups, head = c["n_embd"], c["n_head"], c["n_query_groups"], c["head_size"]
    qkv = (heads + 2 * groups) * head
    shapes = {"transformer.wte.weight": (c["padded_vocab_size"], width),
              "transformer.ln_f.weight": (width,),
              "lm_head.weight": (c["padded_vocab_size"], width)}
    for i in range(c["n_layer"]):
        p = f"transformer.h.{i}."
        shapes.update({p + "norm_1.weight": (width,), p + "norm_2.weight": (width,),
                       p + "attn.qkv.weight": (qkv, width), p + "attn.qkv.bias": (qkv,),
                       p + "attn.proj.weight": (width, width),
                       p + "mlp.fc_1.weight": (c["intermediate_size"], width),
                       p + "mlp.fc_2.weight": (c["intermediate_size"], width),
                       p + "mlp.proj.weight": (width, c["intermediate_size"])})
    return shapes


def _shard_of(key: str) -> int:
    if key.startswith("transformer.h."):
        return 1 + int(key.split(".")[2]) // LAYERS_PER_SHARD
    return 0 if key.startswith("transformer.") else 99


def write_checkpoint(directory: Path, seed: int = 0) -> None:
    """Write the release layout with random bf16 weights, one shard at a time."""
    from safetensors.torch import save_file
    from transformers import Qwen2_5OmniConfig
    from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import (
        Qwen2_5OmniAudioEncoderConfig)
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import Qwen2_5OmniAudioEncoder

    from audio_interaction_ros.core.loading import build_empty

    directory.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    shapes = _litgpt_shapes()
    shard_ids = sorted({_shard_of(k) for k in shapes})
    names = {s: f"model-{i + 1:05d}-of-{len(shard_ids):05d}.safetensors"
             for i, s in enumerate(shard_ids)}
    weight_map, total = {}, 0
    for shard in shard_ids:
        tensors = {}
        for key, shape in shapes.items():
            if _shard_of(key) != shard:
                continue
            tensor = torch.empty(shape, dtype=torch.bfloat16)
            if key.endswith("norm_1.weight") or key.endswith("norm_2.weight") or "ln_f" in key:
                tensor.fill_(1.0)
            elif key.endswith("bias"):
                tensor.zero_()
            else:
                tensor.normal_(0.0, 0.02, generator=generator)
            tensors[key] = tensor
            total += tensor.numel() * 2
            weight_map[key] = names[shard]
        save_file(tensors, str(directory / names[shard]), metadata={"format": "pt"})
        del tensors
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (directory / ckpt.INDEX_FILE).write_text(json.dumps(index, indent=1) + "\n")
    (directory / ckpt.LM_CONFIG_FILE).write_text(yaml.safe_dump(
        dict(REAL_LITGPT, name="random-3B-dimensions", mlp_class_name="LLaMAMLP",
             norm_class_name="RMSNorm", bias=False, lm_head_bias=False, parallel_residual=False,
             attn_bias=True)))
    encoder = build_empty(Qwen2_5OmniAudioEncoder, Qwen2_5OmniAudioEncoderConfig(**REAL_AUDIO),
                          torch.bfloat16)
    with torch.no_grad():
        for name, param in encoder.named_parameters():
            if name.endswith("bias"):
                param.zero_()
            elif "norm" in name or name.startswith("ln_post"):
                param.fill_(1.0)
            else:
                param.normal_(0.0, 0.02, generator=generator)
    torch.save(encoder.state_dict(), directory / ckpt.ENCODER_FILE)
    del encoder
    Qwen2_5OmniConfig(thinker_config={"audio_config": REAL_AUDIO},
                      enable_audio_output=False).save_pretrained(directory / ckpt.OMNI_CONFIG_DIR)
    for name in ckpt.TOKENIZER_FILES:
        shutil.copy(FIXTURE_CKPT / name, directory / name)


def child(directory: Path, scheme: str) -> dict:
    """Load in this process while a thread samples RssAnon; the figures as a dict."""
    import transformers.models.qwen2.modeling_qwen2  # noqa: F401  (imports are not the load)
    import transformers.models.qwen2_5_omni.modeling_qwen2_5_omni  # noqa: F401

    from audio_interaction_ros.core.model import AudioInteractionModel

    peak = {"RssAnon": 0.0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak["RssAnon"] = max(peak["RssAnon"], rss_mb("RssAnon"))
            time.sleep(0.002)

    before = {key: round(rss_mb(key)) for key in ("VmRSS", "RssAnon")}
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    started = time.perf_counter()
    model = AudioInteractionModel.load(directory, device="cpu", dtype="bfloat16",
                                       quantization=scheme, compile="false",
                                       local_files_only=True)
    load_s = time.perf_counter() - started
    done.set()
    thread.join()
    return {"scheme": scheme, "load_s": round(load_s, 1),
            "weight_mb": round(model.info.weight_bytes / 2**20),
            "quantized_layers": model.info.quantized_layers,
            "before_load_mb": before,
            "peak_mb": {"VmHWM": round(rss_mb("VmHWM")), "RssAnon": round(peak["RssAnon"])},
            "after_load_mb": {key: round(rss_mb(key)) for key in ("VmRSS", "RssAnon")}}


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/audio-interaction-realdim-ckpt"))
    parser.add_argument("--schemes", default="none,int8,int4")
    parser.add_argument("--keep", action="store_true", help="keep the written checkpoint")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.dir, args.child)))
        return None
    context = machine_context()
    if not (args.dir / ckpt.INDEX_FILE).exists():
        started = time.perf_counter()
        write_checkpoint(args.dir)
        print(f"wrote {args.dir} in {time.perf_counter() - started:.0f} s", flush=True)
    rows = []
    try:
        for scheme in args.schemes.split(","):
            proc = subprocess.run([sys.executable, __file__, "--dir", str(args.dir),
                                   "--child", scheme], capture_output=True, text=True,
                                  check=True, env=dict(os.environ, OMP_NUM_THREADS="2"))
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)
    report = {"machine": context, "checkpoint_gb": round(sum(
        f.stat().st_size for f in args.dir.glob("*")) / 1e9, 2) if args.keep else None,
        "loads": rows, "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
