"""One batched step: every row that is due goes through ONE forward. No rclpy here.

A row is either a chunk for a listening session (13 tokens: the last sampled token and the
listening block; only the KEEP_SILENCE/TEXT_BEGIN logits are computed) or the next token of a
session that is replying (1 token; the whole vocabulary). Sessions of one stream and of several
streams share the forward; each still computes exactly what it computes alone (rows.py), samples
with its own generator and reports its own events. Context rebuilds stay per session: a session
that must rebuild does so (its own forward) while its row is prepared.

A failure that belongs to one session (preparing its row, sampling, a transport that raises on
its event) is returned for that session and the other rows go on; only a failure of the shared
forward itself concerns every row. ``ListenSession.listen`` and ``Pipeline.step`` run one chunk
through ``run_chunk``; the engine calls ``forward_step`` with every due row of every stream.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from .events import Event

if TYPE_CHECKING:  # session.py imports this module
    from .model import AudioInteractionModel
    from .session import ListenSession

# Where a session's events go: (the session, the event). The engine routes by session, since
# sessions of different streams may share a name.
Report = Callable[["ListenSession", Event], None]


@dataclass
class ListenRequest:
    """A chunk for one session: its encoder rows (10, width) and where it ends in its stream."""

    session: "ListenSession"
    audio: torch.Tensor
    stream_time_s: float | None = None
    pinned: bool = False  # an instruction's chunk: kept through context rebuilds
    max_reply_tokens: int | None = None  # cap of a reply to this chunk (None: the session's)


@dataclass
class StepResult:
    """What one forward took, and the sessions whose own part of it failed."""

    seconds: float = 0.0
    rows: int = 0
    failed: list[tuple["ListenSession", Exception]] = field(default_factory=list)

    def raise_first(self) -> None:
        """For callers that serve one stream: a session's failure is the step's failure."""
        if self.failed:
            raise self.failed[0][1]


@torch.inference_mode()
def forward_step(model: "AudioInteractionModel", listens: Sequence[ListenRequest],
                 replying: Sequence["ListenSession"], report: Report) -> StepResult:
    """One forward for ``listens`` (each gets its Decision) and ``replying`` (each samples one
    reply token). A session may appear once. An exception of the forward itself propagates
    (every row failed); one session's failure is in ``StepResult.failed``, the others go on.

    Sessions that decide to speak are ``speaking`` afterwards: the caller puts them in
    ``replying`` on the following steps until they end (a row that ends drops out).
    """
    started = time.perf_counter()
    sessions = [r.session for r in listens] + list(replying)
    if len({id(s) for s in sessions}) != len(sessions):
        raise ValueError("a session can have only one row in a step")
    result = StepResult()
    prepared: list[tuple[ListenSession, bool, Callable[[Event], None]]] = []
    rows = []
    for request in listens:
        session, emit = request.session, _bound(report, request.session)
        try:
            rows.append(session.listen_row(request.audio, emit, pinned=request.pinned,
                                           stream_time_s=request.stream_time_s,
                                           max_reply_tokens=request.max_reply_tokens))
            prepared.append((session, True, emit))
        except Exception as exc:  # this session's own failure (e.g. its rebuild)
            result.failed.append((session, exc))
    for session in replying:
        emit = _bound(report, session)
        try:
            rows.append(session.reply_row(emit))
            prepared.append((session, False, emit))
        except Exception as exc:
            result.failed.append((session, exc))
    if rows:
        logits = model.forward(rows)
        for (session, listening, emit), row_logits in zip(prepared, logits):
            try:
                if listening:
                    session.take_decision(row_logits, started, emit)
                else:
                    session.take_token(row_logits, emit)
            except Exception as exc:
                result.failed.append((session, exc))
    result.rows = len(rows)
    result.seconds = time.perf_counter() - started
    return result


def _bound(report: Report, session: "ListenSession") -> Callable[[Event], None]:
    return lambda event: report(session, event)


def run_chunk(model: "AudioInteractionModel", listens: Sequence[ListenRequest],
              report: Report) -> tuple[float, float]:
    """``listens`` in one forward, then the replies they start together (one forward per token
    for every row still replying) until the last one ends: one chunk when nothing else shares
    the model. Any failure raises. Return (listen_s, reply_s)."""
    step = forward_step(model, listens, [], report)
    step.raise_first()
    reply_s = 0.0
    sessions = [request.session for request in listens]
    while replying := [session for session in sessions if session.speaking]:
        reply = forward_step(model, [], replying, report)
        reply.raise_first()
        reply_s += reply.seconds
    return step.seconds, reply_s
