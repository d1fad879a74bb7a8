"""What the engine and its sessions report, as plain frozen dataclasses. No rclpy here.

Transports (the ROS node, the command-line runner, benchmarks) turn these into messages or lines;
the core never knows who listens.
"""
from __future__ import annotations

from dataclasses import dataclass

from .protocol import SAMPLE_RATE_HZ


@dataclass(frozen=True)
class Decision:
    """The listen decision after one 0.4 s chunk."""

    session: str
    chunk_index: int  # chunks this session consumed since it started or was reset
    stream_time_s: float  # end of the chunk on the engine's audio clock
    p_speak: float  # softmax over {KEEP_SILENCE, TEXT_BEGIN} at the decision position
    speak: bool
    compute_s: float  # encoder excluded: the LM forward and sampling for this decision


@dataclass(frozen=True)
class ReplyDelta:
    """New reply text, streamed while the model is still speaking."""

    session: str
    chunk_index: int
    stream_time_s: float
    text: str  # only what is new since the previous delta
    emotion: str | None


@dataclass(frozen=True)
class ReplyDone:
    """A finished reply: the whole turn the model produced at one chunk."""

    session: str
    chunk_index: int
    stream_time_s: float
    text: str
    emotion: str | None
    tokens: tuple[int, ...]  # TEXT_BEGIN, emotion?, text ids..., TEXT_END (as the reference)
    p_speak: float
    truncated: bool  # max_reply_tokens reached before TEXT_END; TEXT_END was appended
    first_text_s: float | None  # from the start of the decision to the first text piece
    total_s: float  # from the start of the decision to TEXT_END


@dataclass(frozen=True)
class ContextRebuilt:
    """The session's context was cut to its recent part and its cache rebuilt."""

    session: str
    chunk_index: int
    tokens_before: int
    tokens_after: int
    blocks_dropped: int


@dataclass(frozen=True)
class AudioDropped:
    """Audio the engine could not keep: counted, never silent."""

    samples: int  # at 16 kHz
    reason: str

    @property
    def seconds(self) -> float:
        return self.samples / SAMPLE_RATE_HZ


@dataclass(frozen=True)
class EngineError:
    """A step failed (e.g. CUDA out of memory); the engine keeps running."""

    message: str


Event = Decision | ReplyDelta | ReplyDone | ContextRebuilt | AudioDropped | EngineError
