"""One listening session: the Audio-Interaction listen/speak loop. No rclpy, threads or clocks here.

The loop (PROTOCOL.md §3), once per 0.4 s chunk:

1. Append the listening block ``[AUDIO_BEGIN, PAD x10, ASSISTANT]`` after the last sampled token
   (the first block follows the 46-token prefix) and write the chunk's 10 encoder rows over the PADs.
2. Read the logits at ASSISTANT, restricted to KEEP_SILENCE / TEXT_BEGIN: the speak probability is
   the softmax over those two; the decision is sampled (greedy at temperature 0).
3. KEEP_SILENCE: done, the token is fed with the next block. TEXT_BEGIN: speak one token at a time
   until TEXT_END (an emotion id first, then text), at most ``max_reply_tokens``. Audio that arrives
   meanwhile waits in the engine: a reply sits between chunk k and chunk k+1, as in training.

Context policy (the reference crashes at 4096 positions, about 2 minutes): the session keeps its
history as blocks (the prefix, then one block per chunk with its reply if any). Before any forward
that would pass ``max_context_tokens`` it drops the oldest unpinned blocks until prefix + pinned
blocks (the instruction) + the most recent blocks fit in ``keep_context_tokens``, and rebuilds
the KV cache from those blocks with positions starting at 0 again, exactly as if a fresh session had
heard only them. Memory is therefore bounded by ``max_context_tokens``, per-chunk attention cost
is bounded, and one rebuild (a forward over ``keep_context_tokens``) happens every
``(max - keep) / 13`` silent chunks (about 2 minutes of silence with the defaults).

Instruction policy: a session has at most ONE instruction (spoken chunks, or a typed text turn),
and only its blocks are pinned. A new instruction replaces the old one (the old blocks leave the
history and the cache is rebuilt before the next forward); an instruction that would not fit in
``instruction_budget`` tokens is rejected before anything changes. So pinned content is bounded
and a rebuild always fits, however often a robot is re-instructed.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import torch

from .events import ContextRebuilt, Decision, Event, ReplyDelta, ReplyDone
from .model import AudioInteractionModel
from .rows import Row
from .protocol import (AUDIO_SLOT_OFFSET, AUDIO_TOKENS_PER_CHUNK, CHUNK_SECONDS, CONTROL_IDS,
                       EMOTIONS, ENGLISH, KEEP_SILENCE, LISTEN_BLOCK_IDS, ONLINE, SYSTEM_PROMPT,
                       TEXT_BEGIN, TEXT_END, TRAINED_CONTEXT_TOKENS, USER)
from .sampling import SamplingConfig, sample
from .step import ListenRequest, run_chunk

Report = Callable[[Event], None]
LISTEN_HEAD = (KEEP_SILENCE, TEXT_BEGIN)  # the decision reads only these two logits

RopePositions = Literal["exact", "reference"]


@dataclass(frozen=True)
class SessionConfig:
    """Options of one session; frozen: change them by building a new session."""

    name: str = "assistant"
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    max_reply_tokens: int = 256
    # "reference" rounds RoPE positions through float16 like the authors' current code
    # (positions > 2048 become even); "exact" is what training most likely used.
    rope_positions: RopePositions = "exact"
    max_context_tokens: int = TRAINED_CONTEXT_TOKENS
    keep_context_tokens: int = TRAINED_CONTEXT_TOKENS // 2
    system_prompt: str = SYSTEM_PROMPT

    def __post_init__(self) -> None:
        if self.rope_positions not in ("exact", "reference"):
            raise ValueError(f"rope_positions must be exact or reference, got "
                             f"{self.rope_positions!r}")
        if self.max_reply_tokens < 1:
            raise ValueError(f"max_reply_tokens must be >= 1, got {self.max_reply_tokens}")
        # A rebuild must leave room for at least one whole block with the longest reply.
        if not self.keep_context_tokens + 16 <= self.max_context_tokens:
            raise ValueError(
                f"keep_context_tokens ({self.keep_context_tokens}) must be at least 16 below "
                f"max_context_tokens ({self.max_context_tokens})")
        if self.max_reply_tokens + 128 > self.keep_context_tokens:
            raise ValueError(
                f"max_reply_tokens ({self.max_reply_tokens}) + 128 must not exceed "
                f"keep_context_tokens ({self.keep_context_tokens}): a reply must fit the context")


# Tokens one spoken instruction chunk may take beyond its reply: the listening block, the decision
# and a TEXT_END that closes a reply cut at the budget.
INSTRUCTION_CHUNK_TOKENS = len(LISTEN_BLOCK_IDS) + 2


class InstructionRejected(ValueError):
    """An instruction that does not fit the session's budget; nothing was changed."""


@dataclass
class _Block:
    """One listening block and what the model produced after it."""

    ids: list[int]
    audio: torch.Tensor | None  # (10, width) rows written over the PAD slots
    pinned: bool = False  # blocks of the instruction: they survive context rebuilds


@dataclass
class _Reply:
    """A reply being generated, one token per forward, possibly over several engine ticks."""

    block: _Block
    chunk: int
    when: float
    p_speak: float
    started: float  # perf_counter at the start of the step that decided to speak
    text: TextStream
    max_tokens: int  # the session's max_reply_tokens, or less for an instruction's chunk
    emotion: str | None = None
    tokens: int = 0  # sampled so far
    first_text_s: float | None = None


class TextStream:
    """Incremental detokenisation: emits only complete characters, never a broken UTF-8 tail."""

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self._decode = decode
        self.ids: list[int] = []
        self.text = ""

    def push(self, token: int) -> str:
        """Add one BPE id; return the text that became final with it (may be empty)."""
        self.ids.append(token)
        text = self._decode(self.ids)
        if text.endswith("\ufffd"):  # a multi-byte character is not complete yet
            return ""
        delta = text[len(self.text):] if text.startswith(self.text) else text
        self.text = text
        return delta

    def finish(self) -> str:
        """Whatever is left (a truly invalid byte sequence shows as U+FFFD)."""
        text = self._decode(self.ids)
        delta = text[len(self.text):] if text.startswith(self.text) else ""
        self.text = text
        return delta


class ListenSession:
    """Per-stream state of the loop on a shared model: KV cache, history, chunk counter.

    ``listen`` runs one chunk to the end of any reply, alone. An engine that batches several
    sessions drives the same loop in phases instead (step.py): ``listen_row`` -> one forward for
    every row -> ``take_decision``; then, while ``speaking``, ``reply_row`` -> forward ->
    ``take_token``. ``listen`` is exactly that loop with one row.
    """

    def __init__(self, model: AudioInteractionModel, config: SessionConfig | None = None) -> None:
        self.model = model
        self.config = config or SessionConfig()
        self.prefix_ids: list[int] = ([ONLINE, ENGLISH, TEXT_BEGIN, TEXT_BEGIN]
                                      + model.encode_text(self.config.system_prompt) + [TEXT_END])
        if len(self.prefix_ids) + 64 + self.config.max_reply_tokens > \
                self.config.keep_context_tokens:
            raise ValueError("system prompt too long for keep_context_tokens")
        self._generator = torch.Generator()
        self._cache = model.new_cache(self.config.max_context_tokens)
        self._instruction: list[_Block] = []
        self.instruction_source = ""
        self.reset()

    # ----------------------------------------------------------------- state
    def reset(self, keep_instruction: bool = False) -> None:
        """Back to the state right after construction (weights untouched); a reply in progress
        is abandoned without a ReplyDone.

        ``keep_instruction``: start afresh but keep the instruction's blocks (the cache is
        rebuilt from them before the next forward, so nothing is re-run now): how the engine
        recovers from a failed step without making the robot forget its task.
        """
        instruction = list(self._instruction) if keep_instruction else []
        self.instruction_source = self.instruction_source if keep_instruction else ""
        self._instruction = instruction
        self._blocks: list[_Block] = list(instruction)
        self._cache.clear()  # the buffers are kept for the next fill
        self._deciding: tuple[_Block, int, float, int] | None = None  # a listen row in flight
        self._reply: _Reply | None = None
        self._total = len(self.prefix_ids) + sum(len(b.ids) for b in instruction)
        self._stale = bool(instruction)  # the cache must be rebuilt before the next forward
        self.chunk_index = 0
        self.rebuilds = 0
        if self.config.sampling.seed is not None:
            self._generator.manual_seed(self.config.sampling.seed)
        else:
            self._generator.seed()

    def set_sampling(self, sampling: SamplingConfig) -> None:
        """Change decoding settings from the next token on (call between chunks)."""
        self.config = replace(self.config, sampling=sampling)
        if sampling.seed is not None:
            self._generator.manual_seed(sampling.seed)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def speaking(self) -> bool:
        """A reply is being generated: the session takes reply rows, not chunks."""
        return self._reply is not None

    @property
    def context_tokens(self) -> int:
        """Length of the current context (positions in use after the next feed)."""
        return self._total

    @property
    def cached_tokens(self) -> int:
        """Positions held in the KV cache (the reference's ``input_pos_maxp1``)."""
        return self._cache.length

    @property
    def history_blocks(self) -> int:
        return len(self._blocks)

    @property
    def instruction_budget(self) -> int:
        """Most tokens the instruction may pin: a quarter of ``keep_context_tokens``, and never
        so much that prefix + instruction + the longest reply would not fit after a rebuild."""
        reply_block = len(LISTEN_BLOCK_IDS) + self.config.max_reply_tokens + 2
        return min(self.config.keep_context_tokens // 4,
                   self.config.keep_context_tokens - len(self.prefix_ids) - reply_block)

    @property
    def instruction_tokens(self) -> int:
        """Tokens pinned by the current instruction (0 without one)."""
        return sum(len(b.ids) for b in self._instruction)

    def check_spoken_instruction(self, chunks: int) -> None:
        """InstructionRejected unless ``chunks`` spoken chunks fit ``instruction_budget``
        (callers check before queuing, so a rejection is reported where it was asked for)."""
        if chunks < 1:
            raise InstructionRejected("a spoken instruction needs some audio")
        need = chunks * INSTRUCTION_CHUNK_TOKENS
        if need > self.instruction_budget:
            most = self.instruction_budget // INSTRUCTION_CHUNK_TOKENS
            raise InstructionRejected(
                f"session {self.name}: spoken instruction of {chunks * CHUNK_SECONDS:.1f} s "
                f"needs {need} tokens, more than the {self.instruction_budget} an instruction may "
                f"pin (at most {most * CHUNK_SECONDS:.1f} s; raise keep_context_tokens for more)")

    # ----------------------------------------------------------------- the loop
    @torch.inference_mode()
    def listen(self, audio: torch.Tensor, *, stream_time_s: float | None = None,
               emit: Callable[[Event], None] | None = None) -> list[Event]:
        """Feed one chunk's encoder rows (10, width); return the events it caused, in order.

        A silent chunk yields one Decision; a spoken one also ReplyDelta(s) and a ReplyDone
        (the reply is generated before this returns). ``emit`` receives each event as it
        happens, so a transport can stream reply text while it is generated.
        """
        return self._listen(ListenRequest(self, audio, stream_time_s), emit)

    @torch.inference_mode()
    def instruct_audio(self, rows: torch.Tensor, *, source: str = "",
                       emit: Callable[[Event], None] | None = None) -> list[Event]:
        """Make the spoken chunks ``rows`` (n, 10, width) the session's instruction, replacing
        the previous one; return the events of hearing it (the model may answer it).

        ``source`` names the instruction (a file, the spoken text) for ``instruction_source``.
        InstructionRejected, before anything changes, if it does not fit; a reply to one of its
        chunks is cut so that the whole instruction stays within ``instruction_budget``.
        """
        if rows.ndim != 3:
            raise ValueError(f"instruction rows must be (n, {AUDIO_TOKENS_PER_CHUNK}, width), "
                             f"got {tuple(rows.shape)}")
        self.check_spoken_instruction(len(rows))
        self._require_idle("an instruction")
        self._drop_instruction()
        events: list[Event] = []
        blocks: list[_Block] = []
        used = 0
        for k, chunk_rows in enumerate(rows):
            # room for this chunk and its reply; every later chunk keeps its silent share
            room = self.instruction_budget - used - (len(rows) - k - 1) * INSTRUCTION_CHUNK_TOKENS
            cap = min(self.config.max_reply_tokens, room - INSTRUCTION_CHUNK_TOKENS)
            events += self._listen(ListenRequest(self, chunk_rows, None, pinned=True,
                                                 max_reply_tokens=cap), emit)
            blocks.append(self._blocks[-1])
            used += len(blocks[-1].ids)
        self._instruction = blocks  # committed only now: a failure keeps the previous one
        self.instruction_source = source
        return events

    def instruct_text(self, text: str, *, source: str = "") -> None:
        """Make the typed turn ``[USER, TEXT_BEGIN, text, TEXT_END]`` the session's instruction,
        replacing the previous one; it is fed with the next chunk. The published model was
        trained with spoken instructions only (PROTOCOL.md §3.7), so this is an untrained path.
        InstructionRejected, before anything changes, if it is empty or does not fit."""
        ids = self.model.encode_text(text)
        if not ids:
            raise InstructionRejected("a text turn needs some text")
        block = _Block([USER, TEXT_BEGIN, *ids, TEXT_END], None, pinned=True)
        if len(block.ids) > self.instruction_budget:
            raise InstructionRejected(
                f"session {self.name}: text turn of {len(block.ids)} tokens is longer than the "
                f"{self.instruction_budget} an instruction may pin")
        self._require_idle("an instruction")
        self._drop_instruction()
        self._blocks.append(block)
        self._total += len(block.ids)
        self._instruction = [block]
        self.instruction_source = source or text

    def clear_instruction(self) -> None:
        """Forget the instruction (its blocks leave the history)."""
        self._require_idle("clearing the instruction")
        self._drop_instruction()
        self._instruction = []
        self.instruction_source = ""

    def _require_idle(self, what: str) -> None:
        """Between chunks only: the engine runs commands and chunks when no reply is going on."""
        if self.speaking or self._deciding is not None:
            raise RuntimeError(f"session {self.name} is replying: {what} must wait")

    def _drop_instruction(self) -> None:
        """Take the instruction's blocks out of the history; the cache, which holds them, is
        rebuilt before the next forward."""
        if not self._instruction:
            return
        gone = {id(b) for b in self._instruction}
        self._blocks = [b for b in self._blocks if id(b) not in gone]
        self._total = len(self.prefix_ids) + sum(len(b.ids) for b in self._blocks)
        self._cache.clear()
        self._stale = True

    def _listen(self, request: ListenRequest, emit: Callable[[Event], None] | None
                ) -> list[Event]:
        """One chunk alone, through the same batched step as the engine's, to the reply's end."""
        events: list[Event] = []

        def report(_: ListenSession, event: Event) -> None:
            events.append(event)
            if emit is not None:
                emit(event)

        run_chunk(self.model, [request], report)
        return events

    @torch.inference_mode()
    def listen_row(self, audio: torch.Tensor, report: Report, *,
                   stream_time_s: float | None = None, pinned: bool = False,
                   max_reply_tokens: int | None = None) -> Row:
        """Phase 1 of a chunk: append its listening block (rebuilding the context first if it
        would not fit, which is this session's own forward) and return the row to forward.
        ``max_reply_tokens`` caps the reply this chunk may start (default: the config's)."""
        if audio.shape != (AUDIO_TOKENS_PER_CHUNK, self.model.embed_dim):
            raise ValueError(f"audio rows must be ({AUDIO_TOKENS_PER_CHUNK}, "
                             f"{self.model.embed_dim}), got {tuple(audio.shape)}")
        self._require_idle("a chunk")
        chunk = self.chunk_index
        self.chunk_index += 1
        when = stream_time_s if stream_time_s is not None else (chunk + 1) * CHUNK_SECONDS
        if self._stale:
            self._prefill_history()
        self._ensure_room(len(LISTEN_BLOCK_IDS) + 1, chunk, report)
        block = _Block(list(LISTEN_BLOCK_IDS), audio.to(self.model.device, self.model.dtype),
                       pinned)
        unfed = self._unfed_ids()
        embeds = self.model.embed(unfed + block.ids)
        start = len(unfed) + AUDIO_SLOT_OFFSET
        embeds[start:start + AUDIO_TOKENS_PER_CHUNK] = block.audio
        self._blocks.append(block)
        self._total += len(block.ids)
        cap = self.config.max_reply_tokens if max_reply_tokens is None else max_reply_tokens
        self._deciding = (block, chunk, when, cap)
        return self._row(embeds, LISTEN_HEAD)

    def take_decision(self, pair: torch.Tensor, started: float, report: Report) -> None:
        """Phase 2: the KEEP_SILENCE/TEXT_BEGIN logits of the listen row -> the Decision; a
        TEXT_BEGIN starts a reply (``speaking``)."""
        if self._deciding is None:
            raise RuntimeError(f"session {self.name} has no listen row in flight")
        block, chunk, when, cap = self._deciding
        self._deciding = None
        p_speak = float(torch.softmax(pair, dim=-1)[1])
        speak = sample(pair, self.config.sampling, self._generator) == 1
        self._append(block, TEXT_BEGIN if speak else KEEP_SILENCE)
        report(Decision(self.name, chunk, when, p_speak, speak, time.perf_counter() - started))
        if speak:
            self._reply = _Reply(block, chunk, when, p_speak, started,
                                 TextStream(self.model.decode), cap)
            if cap <= 0:  # no room at all (an instruction's last chunk): close the turn now
                self._append(block, TEXT_END)
                self._end_reply(self._reply, truncated=True, report=report)

    @torch.inference_mode()
    def reply_row(self, report: Report) -> Row:
        """The next reply token's row (rebuilding the context first if it would not fit)."""
        if self._reply is None:
            raise RuntimeError(f"session {self.name} is not replying")
        self._ensure_room(2, self._reply.chunk, report)
        return self._row(self.model.embed(self._unfed_ids()), None)

    def take_token(self, logits: torch.Tensor, report: Report) -> None:
        """One sampled reply token; the reply ends at TEXT_END or at its token cap."""
        reply = self._reply
        if reply is None:
            raise RuntimeError(f"session {self.name} is not replying")
        token = sample(logits, self.config.sampling, self._generator)
        self._append(reply.block, token)
        reply.tokens += 1
        if token == TEXT_END:
            self._end_reply(reply, truncated=False, report=report)
            return
        if reply.tokens == 1 and token in EMOTIONS:
            reply.emotion = EMOTIONS[token]
        elif token not in CONTROL_IDS and token < TEXT_END:  # repurposed ids are never text
            self._report_text(reply, reply.text.push(token), report)
        if reply.tokens >= reply.max_tokens:
            self._append(reply.block, TEXT_END)  # close the turn as the trained layout does
            self._end_reply(reply, truncated=True, report=report)

    def _report_text(self, reply: _Reply, delta: str, report: Report) -> None:
        if delta:
            reply.first_text_s = reply.first_text_s or time.perf_counter() - reply.started
            report(ReplyDelta(self.name, reply.chunk, reply.when, delta, reply.emotion))

    def _end_reply(self, reply: _Reply, truncated: bool, report: Report) -> None:
        self._reply = None
        self._report_text(reply, reply.text.finish(), report)
        report(ReplyDone(self.name, reply.chunk, reply.when, reply.text.text, reply.emotion,
                         tuple(reply.block.ids[len(LISTEN_BLOCK_IDS):]), reply.p_speak,
                         truncated, reply.first_text_s, time.perf_counter() - reply.started))

    # ----------------------------------------------------------------- plumbing
    def _append(self, block: _Block, token: int) -> None:
        block.ids.append(token)
        self._total += 1

    def _unfed_ids(self) -> list[int]:
        """Tokens of the logical sequence not yet in the cache: the prefix at the start, then
        the last sampled token, plus any text turn added since (never an audio slot)."""
        n = self._total - self._cache.length
        pieces: list[int] = []
        for block in reversed(self._blocks):
            if n <= 0:
                break
            take = min(n, len(block.ids))
            assert block.audio is None or take <= len(block.ids) - len(LISTEN_BLOCK_IDS), \
                "an audio slot was left unfed"
            pieces[:0] = block.ids[len(block.ids) - take:]
            n -= take
        if n > 0:
            pieces[:0] = self.prefix_ids[len(self.prefix_ids) - n:]
        return pieces

    def _row(self, embeds: torch.Tensor, head: tuple[int, ...] | None) -> Row:
        """``embeds`` as the next tokens of this session's cache, at its RoPE positions."""
        start = self._cache.length
        positions = torch.arange(start, start + embeds.shape[0], device=self.model.device)
        if self.config.rope_positions == "reference":
            # the authors build RoPE indices in float16: exact up to 2048, then rounded to even
            positions = positions.to(torch.float16).to(torch.long)
        return Row(embeds, self._cache, positions, head)

    def _ensure_room(self, new_tokens: int, chunk: int, report: Report) -> None:
        """Rebuild the context if feeding ``new_tokens`` more would pass max_context_tokens."""
        if self._total + new_tokens <= self.config.max_context_tokens:
            return
        before = self._total
        budget = self.config.keep_context_tokens - len(self.prefix_ids)
        current = self._blocks[-1] if self._blocks and self._blocks[-1].ids[-1] not in (
            KEEP_SILENCE, TEXT_END) else None  # a reply in progress stays whole
        keep = {id(b) for b in self._blocks if b.pinned}
        used = sum(len(b.ids) for b in self._blocks if b.pinned)
        if current is not None:
            keep.add(id(current))
            used += len(current.ids)
        for block in reversed(self._blocks):
            if id(block) in keep:
                continue
            if used + len(block.ids) > budget:
                break
            keep.add(id(block))
            used += len(block.ids)
        dropped = len(self._blocks) - len(keep)
        self._blocks = [b for b in self._blocks if id(b) in keep]
        self._prefill_history()
        self.rebuilds += 1
        report(ContextRebuilt(self.name, chunk, before, self._total, dropped))

    def _prefill_history(self) -> None:
        """Refill the cache with prefix + kept blocks, all but the last (unsampled-into) token:
        this session's own forward, outside any batch (a rebuild is rare and long)."""
        self._cache.clear()
        self._stale = False
        if not self._blocks:  # nothing heard yet: the prefix goes with the next block
            self._total = len(self.prefix_ids)
            return
        ids = list(self.prefix_ids)
        slots: list[tuple[int, torch.Tensor]] = []
        for block in self._blocks:
            if block.audio is not None:
                slots.append((len(ids) + AUDIO_SLOT_OFFSET, block.audio))
            ids.extend(block.ids)
        self._total = len(ids)
        embeds = self.model.embed(ids[:-1])
        for offset, rows in slots:
            embeds[offset:offset + AUDIO_TOKENS_PER_CHUNK] = rows
        self.model.forward([self._row(embeds, ())])
