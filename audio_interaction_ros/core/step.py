"""One batched step: every row that is due goes through ONE forward. No rclpy here.

A row is either a chunk for a listening session (13 tokens: the last sampled token and the
listening block; only the KEEP_SILENCE/TEXT_BEGIN logits are computed) or the next token of a
session that is replying (1 token; the whole vocabulary). Sessions of one stream and of several
streams share the forward; each still computes exactly what it computes alone (rows.py), samples
with its own generator and reports its own events. Context rebuilds stay per session: a session
that must rebuild does so (its own forward) while its row is prepared.

``ListenSession.listen`` is this step with one row, repeated until the reply ends; the engine
calls it with every due row of every stream.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .events import Event

if TYPE_CHECKING:  # session.py imports this module
    from .model import AudioInteractionModel
    from .session import ListenSession


@dataclass
class ListenRequest:
    """A chunk for one session: its encoder rows (10, width) and where it ends in its stream."""

    session: "ListenSession"
    audio: torch.Tensor
    stream_time_s: float | None = None
    pinned: bool = False  # an instruction's chunk: kept through context rebuilds
    max_reply_tokens: int | None = None  # cap of a reply to this chunk (None: the session's)


@torch.inference_mode()
def forward_step(model: "AudioInteractionModel", listens: Sequence[ListenRequest],
                 replying: Sequence["ListenSession"], report: Callable[[Event], None]) -> float:
    """One forward for ``listens`` (each gets its Decision) and ``replying`` (each samples one
    reply token); return its duration in seconds. A session may appear once.

    Sessions that decide to speak are ``speaking`` afterwards: the caller puts them in
    ``replying`` on the following steps until they end (a row that ends drops out).
    """
    started = time.perf_counter()
    sessions = [r.session for r in listens] + list(replying)
    if len({id(s) for s in sessions}) != len(sessions):
        raise ValueError("a session can have only one row in a step")
    rows = [r.session.listen_row(r.audio, report, stream_time_s=r.stream_time_s,
                                 pinned=r.pinned, max_reply_tokens=r.max_reply_tokens)
            for r in listens]
    rows += [session.reply_row(report) for session in replying]
    if not rows:
        return 0.0
    logits = model.forward(rows)
    for request, pair in zip(listens, logits):
        request.session.take_decision(pair, started, report)
    for session, token_logits in zip(replying, logits[len(listens):]):
        session.take_token(token_logits, report)
    return time.perf_counter() - started


def run_chunk(model: "AudioInteractionModel", listens: Sequence[ListenRequest],
              report: Callable[[Event], None]) -> tuple[float, float]:
    """``listens`` in one forward, then the replies they start together (one forward per token
    for every row still replying) until the last one ends: one chunk when nothing else shares
    the model. Return (listen_s, reply_s)."""
    listen_s = forward_step(model, listens, [], report)
    reply_s = 0.0
    sessions = [request.session for request in listens]
    while replying := [session for session in sessions if session.speaking]:
        reply_s += forward_step(model, [], replying, report)
    return listen_s, reply_s
