"""One forward for several sessions at once: packed rows, per-session KV caches. No rclpy here.

Why: a listen step reads every weight once whatever it carries, so N sessions (of one stream or
of several) that each feed 13 tokens should share one pass over the 3 B parameters instead of
making N. The sessions differ in context length, in what they feed (13 tokens, a 1-token reply
step, a 58-token first block) and in their RoPE positions (exact or the reference's float16
rounding), so the layout has to carry all of that without changing any row's numbers.

Layout (measured against a padded batch, see bench/batch_layouts.py): the new tokens of every
row are concatenated into ONE sequence of ``sum(q_i)`` tokens. Everything that is per token
(embeddings, RoPE with each row's own ``position_ids``, norms, the q/k/v/o projections and the
MLP, i.e. all the weights) runs once on that packed sequence, with no padding. Attention is the
only place rows meet history; there each row attends to its OWN cache: its new keys/values are
written at the end of its ``KVCache`` and its queries run through transformers' SDPA attention
against that cache alone, with the causal mask of that row. Nothing is copied into a padded
batch, no slot is wasted on another row's length, and a row computes exactly what it computes
alone (only the matrix products see more rows at once).

The hook is transformers' public ``AttentionInterface``: the LM's attention implementation is
switched to ``ROWS_ATTENTION``, which does the above when the attention mask is a ``_RowPlan``
and is plain SDPA otherwise (any other caller of the LM is unaffected).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Sequence

import torch

ROWS_ATTENTION = "audio_interaction_rows"
_CAPACITY_QUANTUM = 256  # cache buffers grow in multiples of this many positions


class KVCache:
    """Keys and values of one session: per layer one (1, kv_heads, capacity, head_dim) buffer.

    ``length`` positions are valid. Buffers grow by doubling (amortised O(1) per token, no
    per-step concatenation) but never past ``max_tokens``: a session's memory is bounded by its
    context limit. ``clear`` keeps the buffers, so a context rebuild reuses them.
    """

    def __init__(self, n_layers: int, kv_heads: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device, max_tokens: int) -> None:
        self.n_layers = n_layers
        self.kv_heads = kv_heads
        self.head_dim = head_dim
        self.dtype = dtype
        self.device = device
        self.max_tokens = max_tokens
        self.length = 0
        self._keys: list[torch.Tensor] = []
        self._values: list[torch.Tensor] = []

    @property
    def capacity(self) -> int:
        return self._keys[0].shape[2] if self._keys else 0

    def clear(self) -> None:
        """Forget every position; the buffers stay allocated for the next fill."""
        self.length = 0

    def reserve(self, total: int) -> None:
        """Make room for ``total`` positions (the current ones are kept)."""
        if total > self.max_tokens:
            raise ValueError(f"a KV cache of at most {self.max_tokens} positions cannot hold "
                             f"{total}")
        if total <= self.capacity:
            return
        size = max(total, 2 * self.capacity, _CAPACITY_QUANTUM)
        size = min(-(-size // _CAPACITY_QUANTUM) * _CAPACITY_QUANTUM, self.max_tokens)
        shape = (1, self.kv_heads, size, self.head_dim)
        keys, values = [], []
        for layer in range(self.n_layers):
            k = torch.empty(shape, dtype=self.dtype, device=self.device)
            v = torch.empty(shape, dtype=self.dtype, device=self.device)
            if self.length:
                k[:, :, :self.length] = self._keys[layer][:, :, :self.length]
                v[:, :, :self.length] = self._values[layer][:, :, :self.length]
            keys.append(k)
            values.append(v)
        self._keys, self._values = keys, values

    def write(self, layer: int, keys: torch.Tensor, values: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store new (1, kv_heads, q, head_dim) keys/values after the valid positions of ``layer``.

        Return views of all valid + new positions. ``length`` moves only in ``advance`` (after
        every layer ran), so a forward that fails half way leaves the cache as it was.
        """
        start, stop = self.length, self.length + keys.shape[2]
        self._keys[layer][:, :, start:stop] = keys
        self._values[layer][:, :, start:stop] = values
        return self._keys[layer][:, :, :stop], self._values[layer][:, :, :stop]

    def layer(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return views of the valid keys/values of ``layer`` (1, kv_heads, length, head_dim)."""
        if not self._keys:
            empty = torch.empty((1, self.kv_heads, 0, self.head_dim), dtype=self.dtype,
                                device=self.device)
            return empty, empty
        return (self._keys[layer][:, :, :self.length], self._values[layer][:, :, :self.length])

    def advance(self, count: int) -> None:
        self.length += count

    def truncate(self, length: int) -> None:
        """Keep only the first ``length`` positions (benchmarks rewind with it)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate a cache of {self.length} positions to {length}")
        self.length = length


@dataclass
class Row:
    """One session's part of a batched forward."""

    embeds: torch.Tensor  # (q, width): the tokens not yet in the cache
    cache: KVCache
    positions: torch.Tensor  # (q,) RoPE positions, long
    # Logits wanted at the last token: None = the whole vocabulary (a reply token), a tuple =
    # only those ids (the listen decision), () = none (a context rebuild only fills the cache).
    head: tuple[int, ...] | None = None


@dataclass
class _Segment:
    start: int
    stop: int
    cache: KVCache
    # (1, 1, group * q, past + q) bool: query r of this row sees its cache and new tokens 0..r,
    # repeated for the query heads of a KV group; None for one token (it sees everything)
    mask: torch.Tensor | None


class _RowPlan:
    """What the attention hook needs to split the packed sequence back into rows."""

    def __init__(self, rows: Sequence[Row], group: int) -> None:
        self._additive: dict[int, torch.Tensor] = {}
        self.segments: list[_Segment] = []
        start = 0
        for row in rows:
            q = row.embeds.shape[0]
            mask = None
            if q > 1:
                past = row.cache.length
                keys = torch.arange(past + q, device=row.embeds.device)
                queries = torch.arange(q, device=row.embeds.device) + past
                mask = (keys[None, :] <= queries[:, None]).repeat(group, 1)[None, None]
            self.segments.append(_Segment(start, start + q, row.cache, mask))
            start += q

    def additive(self, seg: _Segment, dtype: torch.dtype) -> torch.Tensor:
        """``seg.mask`` as an additive mask (0 / the dtype's lowest), made once per forward."""
        mask = self._additive.get(id(seg))
        if mask is None:
            mask = torch.zeros(seg.mask.shape, dtype=dtype, device=seg.mask.device)
            mask.masked_fill_(~seg.mask, torch.finfo(dtype).min)
            self._additive[id(seg)] = mask
        return mask


# transformers' eager attention with the query heads of a KV group laid out as query rows
# (see rows_attention): one KV head per query "head", nothing to repeat.
_GROUPED = SimpleNamespace(num_key_value_groups=1, training=False)


def _eager_for(query: torch.Tensor) -> bool:
    """Multi-token rows on CPU take the eager kernel (see rows_attention)."""
    return query.device.type == "cpu"


def rows_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                   value: torch.Tensor, attention_mask, dropout: float = 0.0,
                   scaling: float | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """Attend a packed forward, row by row against each row's own cache (see module docstring).

    Any other mask goes to transformers' SDPA unchanged.

    Grouped-query attention without copying keys/values per query head: the query heads that
    share a KV head are laid out as extra query rows of that head, (1, kv_heads, group * q, dim),
    so each cached key is read once (the same dot products as repeating the keys). Kernels: a
    one-token row goes to SDPA; a multi-token row (a chunk's 13 tokens) too, except on CPU,
    where torch's SDPA kernel runs this shape (~100 query rows of 2 heads against thousands of
    keys) about 3x slower than transformers' eager attention, two bf16 matrix products around
    an fp32 softmax (measured at 3B dimensions, one thread, per layer and row: 1.34 -> 0.50 ms
    at 1000 keys, 3.9 -> 1.3 ms at 3000; the error stays below the bf16 rounding of the output).
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.models.qwen2.modeling_qwen2 import eager_attention_forward

    if not isinstance(attention_mask, _RowPlan):
        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      dropout=dropout, scaling=scaling, **kwargs)
    heads, dim = query.shape[1], query.shape[3]
    kv_heads = key.shape[1]
    outputs = []
    for seg in attention_mask.segments:
        q = seg.stop - seg.start
        keys, values = seg.cache.write(module.layer_idx, key[:, :, seg.start:seg.stop],
                                       value[:, :, seg.start:seg.stop])
        grouped = query[:, :, seg.start:seg.stop].reshape(1, kv_heads, heads // kv_heads * q, dim)
        if seg.mask is not None and _eager_for(query):
            out, _ = eager_attention_forward(_GROUPED, grouped, keys, values,
                                             attention_mask.additive(seg, query.dtype),
                                             scaling=scaling)
            out = out.transpose(1, 2)  # back to (1, kv_heads, group * q, dim)
        else:
            out = torch.nn.functional.scaled_dot_product_attention(
                grouped, keys, values, attn_mask=seg.mask, scale=scaling)
        outputs.append(out.reshape(1, heads, q, dim).transpose(1, 2))
    return torch.cat(outputs, dim=1).contiguous(), None


def install(lm) -> None:
    """Register the hook once and switch ``lm`` (a transformers causal LM) to it.

    Other masks are built as for SDPA, so the LM called any other way computes what it did before.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    if ROWS_ATTENTION not in AttentionInterface._global_mapping:
        AttentionInterface.register(ROWS_ATTENTION, rows_attention)
        AttentionMaskInterface.register(ROWS_ATTENTION, sdpa_mask)
    lm.set_attn_implementation(ROWS_ATTENTION)


def forward_hidden(decoder, rows: Sequence[Row]) -> torch.Tensor:
    """Run every row's new tokens through ``decoder`` in one pass.

    ``decoder`` is the transformers base model (e.g. ``Qwen2Model``). Write the rows' keys/values
    into their caches and return the final hidden state at each row's last token,
    (len(rows), width).
    """
    if not rows:
        raise ValueError("a forward needs at least one row")
    if len({id(row.cache) for row in rows}) != len(rows):
        raise ValueError("a cache can appear only once in a forward")
    for row in rows:
        if row.embeds.ndim != 2 or row.positions.shape != row.embeds.shape[:1]:
            raise ValueError(f"row embeds (q, width) and positions (q,) disagree: "
                             f"{tuple(row.embeds.shape)} vs {tuple(row.positions.shape)}")
        row.cache.reserve(row.cache.length + row.embeds.shape[0])
    config = decoder.config
    plan = _RowPlan(rows, config.num_attention_heads // config.num_key_value_heads)
    embeds = torch.cat([row.embeds for row in rows]) if len(rows) > 1 else rows[0].embeds
    positions = torch.cat([row.positions for row in rows]) if len(rows) > 1 else \
        rows[0].positions
    # A dict mask is used as is by transformers (no causal mask built); every layer gets the plan.
    masks = {kind: plan for kind in set(config.layer_types)}
    hidden = decoder(inputs_embeds=embeds.unsqueeze(0), position_ids=positions.unsqueeze(0),
                     attention_mask=masks, use_cache=False).last_hidden_state[0]
    for row in rows:
        row.cache.advance(row.embeds.shape[0])
    last = torch.tensor([seg.stop - 1 for seg in plan.segments], device=hidden.device)
    return hidden.index_select(0, last)
