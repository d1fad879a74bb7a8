"""``audio-interaction-run``: the model over audio files as one session, as JSON lines.

Offline evaluation of recordings, and the command-line check of parity with the authors' inference
(``--frontend reference --rope-positions reference --temperature 0``). No ROS needed.

Output, one JSON object per line:
- per listening chunk: ``{"step", "segment", "chunk", "decision", "p_speak", "tokens"}``
- per finished reply: ``{"step", "segment", "chunk", "text", "emotion", "latency_ms", ...}``
``step`` is the file's index; ``segment`` is ``audio`` or ``trailing_silence`` (the reference feeds
separately encoded zeros after every file; their chunk indices restart at 0).
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from .core.audio import read_audio_file
from .core.checkpoint import DEFAULT_REPO_ID, CheckpointError
from .core.compilation import COMPILE_MODES
from .core.events import Decision, ReplyDone
from .core.model import DTYPES, AudioInteractionModel
from .core.pipeline import FRONT_END_MODES, Pipeline, file_segments
from .core.protocol import KEEP_SILENCE
from .core.quantization import SCHEMES
from .core.sampling import SamplingConfig
from .core.session import ListenSession, SessionConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audio-interaction-run",
        description="Run the Audio-Interaction model over audio files as one listening session "
                    "and print one JSON line per 0.4 s chunk and per reply.")
    parser.add_argument("files", nargs="+",
                        help="audio files (WAV/FLAC/OGG/MP3, any rate/channels)")
    parser.add_argument("--model", default=DEFAULT_REPO_ID,
                        help="checkpoint directory or Hugging Face repo id (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--dtype", default="auto", choices=["auto", *DTYPES],
                        help="auto: bfloat16 on a GPU and on a CPU with native bf16, else float32")
    parser.add_argument("--quantization", default="none", choices=SCHEMES,
                        help="weight-only quantization of the linear layers at load")
    parser.add_argument("--compile", default="auto", choices=COMPILE_MODES,
                        help="torch.compile the MLP blocks while loading (auto: where it pays)")
    parser.add_argument("--temperature", type=float, default=0.0,
                        help="0 = greedy (default here, as the reference CLI)")
    parser.add_argument("--top-k", type=int, default=0, help="0 = off")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--max-reply-tokens", type=int, default=256)
    parser.add_argument("--frontend", choices=FRONT_END_MODES, default="reference",
                        help="reference: mel over each whole file (parity); streaming: causal, "
                             "as the ROS node")
    parser.add_argument("--rope-positions", choices=["exact", "reference"], default="exact",
                        help="reference: float16-rounded positions like the authors' code")
    parser.add_argument("--trailing-silence", type=float, default=1.0, metavar="SECONDS",
                        help="zeros fed after each file (padded to whole chunks; 0 = none)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0 = torch's default; 1 is often faster on a "
                             "small or shared CPU)")
    parser.add_argument("--channel", type=int, default=-1,
                        help="channel to use; -1 averages all (default)")
    return parser


def run(args: argparse.Namespace, out=sys.stdout) -> int:
    for path in args.files:  # fail before loading a large model
        read_audio_file(path, args.channel)
    sampling = SamplingConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                              seed=args.seed)
    config = SessionConfig(sampling=sampling, max_reply_tokens=args.max_reply_tokens,
                           rope_positions=args.rope_positions)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    model = AudioInteractionModel.load(args.model, device=args.device, dtype=args.dtype,
                                       quantization=args.quantization, compile=args.compile)
    pipeline = Pipeline(model, [ListenSession(model, config)], frontend=args.frontend)

    def emit_line(record: dict) -> None:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()

    clips = (read_audio_file(path, args.channel) for path in args.files)
    for step, segment, samples in file_segments(clips, args.trailing_silence):
        # reference: the mel of each whole segment, as the authors encode each file
        for chunk in pipeline.process(samples):
            where = {"step": step, "segment": segment, "chunk": chunk.index}
            decision: Decision | None = None
            for event in chunk.events:
                if isinstance(event, Decision):
                    decision = event
                    if not event.speak:
                        emit_line({**where, "decision": "silent", "p_speak": event.p_speak,
                                   "tokens": [KEEP_SILENCE]})
                elif isinstance(event, ReplyDone):
                    emit_line({**where, "decision": "speak", "p_speak": decision.p_speak,
                               "tokens": list(event.tokens)})
                    emit_line({**where, "file": args.files[step], "text": event.text,
                               "emotion": event.emotion,
                               "latency_ms": round(event.total_s * 1e3, 2),
                               "first_text_ms": None if event.first_text_s is None
                               else round(event.first_text_s * 1e3, 2),
                               "truncated": event.truncated})
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (CheckpointError, ValueError, RuntimeError, OSError) as exc:
        print(f"audio-interaction-run: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    sys.exit(main())
