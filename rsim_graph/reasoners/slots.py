"""Continuous batching for `HFReasoner`: a preallocated slot cache that rows enter and leave between tokens.

A static batch decodes until its longest row is done, so late in a batch most of the work is for a
few stragglers, and requests that arrive meanwhile wait. Here every decoding row owns a slot of a
preallocated key/value buffer, `(slots, kv_heads, capacity, head_dim)` per layer:

- a new request is prefilled on its own (with its trajectory's prefix cache, in the usual padded
  layout) and its keys/values are copied into a free slot: one copy of its own tokens;
- a decode step feeds one token per slot and writes each row's keys/values at that row's own length,
  in place, so rows of every length share the step and nothing else is copied;
- a finished row frees its slot, and the next request takes it at the next step.

Attention reads slots `[0, hi)` up to the longest row, with a 4D mask over each row's own tokens;
an empty slot inside that range costs a row of compute, so rows are moved down when half the range
is empty. (The earlier continuous batching merged `DynamicCache` tensors, which copies every layer
of every row at each admission, and lost to static batches.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from rsim_graph.engine.kvcache import Cached, padded_batch
from rsim_graph.reasoners.base import StepOutput, StepRequest

# Attention implementations that take a 4D float mask (flash attention takes none; it uses static batches).
SLOT_ATTENTION = ("sdpa", "eager")


class _SlotLayer(DynamicLayer):
    """One layer's view of the slot buffers for a decode step: writes each row at its own position."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, step: _Step):
        super().__init__()
        self.kbuf, self.vbuf, self.step = keys, values, step
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.step
        self.kbuf[s.rows, :, s.pos] = key_states[:, :, 0]  # (hi, H, D): one token per row, at that row's length
        self.vbuf[s.rows, :, s.pos] = value_states[:, :, 0]
        self.keys, self.values = self.kbuf[: s.hi, :, : s.length], self.vbuf[: s.hi, :, : s.length]
        return self.keys, self.values


@dataclass
class _Step:
    hi: int
    length: int
    rows: torch.Tensor
    pos: torch.Tensor


@dataclass
class Row:
    """A request being decoded."""

    key: object  # the caller's handle for the result
    request: StepRequest
    context: tuple[list[int], list[int], list[int]]  # (question ids, injected ids, the whole prompt)
    sampling: tuple
    delimiter: str
    out: list[int] = field(default_factory=list)
    lps: list[float] = field(default_factory=list)
    tail: str = ""
    next_token: int = 0


class SlotDecoder:
    """Decode rows of many requests together, admitting new ones between tokens.

    Args:
        reasoner (`HFReasoner`): provides the model, prompts, sampling and the prefix cache.
        max_slots (`int`): most rows decoded together; more requests wait for a free slot.
    """

    def __init__(self, reasoner, max_slots: int):
        self.r = reasoner
        self.max_slots = max_slots
        self.keys: list[torch.Tensor] = []  # per layer (slots, H, capacity, D)
        self.values: list[torch.Tensor] = []
        self.rows: list[Row | None] = []  # per slot
        self.lengths: list[int] = []  # tokens held per slot

    @property
    def active(self) -> int:
        return sum(r is not None for r in self.rows)

    @property
    def free(self) -> int:
        return self.max_slots - self.active

    # -- admission ------------------------------------------------------------------------------------
    def admit(self, items: list[tuple[object, StepRequest]]) -> list[tuple[object, StepOutput]]:
        """Prefill `items` (at most `free`) and give each a slot; returns the rows done after their first token."""
        if not items:
            return []
        r = self.r
        rows = []
        for key, req in items:
            ctx = r.context(req)
            rows.append(Row(key, req, ctx, r._sampling(req), req.delimiter if req.stop_at_delimiter else ""))
        prompts = [row.context[2] for row in rows]
        cached = [r.cache.exact(row.request.trajectory_id, p) for row, p in zip(rows, prompts, strict=True)]
        dev = r.model.device
        input_ids, mask, pos, past = padded_batch(prompts, cached, r.model.config, r.pad_id, dev)
        logits = r.model(
            input_ids=input_ids, attention_mask=mask, position_ids=pos, past_key_values=past, use_cache=True, logits_to_keep=1
        ).logits[:, -1, :].float()
        tok, lp = r._sample(logits, [row.sampling for row in rows])
        done = []
        for i, (row, t, x) in enumerate(zip(rows, tok.tolist(), lp.tolist(), strict=True)):
            cols = mask[i].nonzero().squeeze(1)
            fed = [(layer.keys[i, :, cols], layer.values[i, :, cols]) for layer in past.layers]  # this row's tokens, no pads
            if self._append(row, t, x):
                done.append(self._finish(row, [(k.clone(), v.clone()) for k, v in fed]))
                continue
            slot = self._reserve(len(prompts[i]) + row.request.max_new_tokens)
            for li, (k, v) in enumerate(fed):
                self.keys[li][slot, :, : k.shape[1]] = k
                self.values[li][slot, :, : v.shape[1]] = v
            self.rows[slot], self.lengths[slot] = row, len(cols)
            row.next_token = t
        return done

    def _reserve(self, tokens: int) -> int:
        """The lowest free slot, growing the buffers (more slots, or more capacity) when needed. They keep their
        high-water size: at most `max_slots` rows of the longest prompt plus budget seen."""
        free = next((s for s, row in enumerate(self.rows) if row is None), None)
        capacity = self.keys[0].shape[2] if self.keys else 0
        if free is None or tokens > capacity:
            n_slots = len(self.rows) if free is not None else min(self.max_slots, max(4, 2 * len(self.rows)))
            self._grow(n_slots, capacity if tokens <= capacity else max(tokens, 2 * capacity))
            free = self.rows.index(None)
        return free

    def abort(self) -> list[object]:
        """Drop every decoding row (after a failed step); returns their keys."""
        keys = [row.key for row in self.rows if row is not None]
        self.rows = [None] * len(self.rows)
        return keys

    def _grow(self, n_slots: int, capacity: int) -> None:
        cfg, dev = self.r.model.config, self.r.model.device
        H = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        D = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        dtype = next(self.r.model.parameters()).dtype
        new_k, new_v = [], []
        for li in range(cfg.num_hidden_layers):
            k = torch.zeros(n_slots, H, capacity, D, dtype=dtype, device=dev)
            v = torch.zeros_like(k)
            if self.keys:
                s, c = self.keys[li].shape[0], self.keys[li].shape[2]
                k[:s, :, :c], v[:s, :, :c] = self.keys[li], self.values[li]
            new_k.append(k)
            new_v.append(v)
        self.keys, self.values = new_k, new_v
        self.rows += [None] * (n_slots - len(self.rows))
        self.lengths += [0] * (n_slots - len(self.lengths))

    # -- decoding -------------------------------------------------------------------------------------
    def step(self) -> list[tuple[object, StepOutput]]:
        """One token for every decoding row; returns the rows that finished."""
        self._compact()
        occupied = [s for s, row in enumerate(self.rows) if row is not None]
        if not occupied:
            return []
        r, dev = self.r, self.r.model.device
        hi = occupied[-1] + 1
        pos_list = [self.lengths[s] if self.rows[s] is not None else 0 for s in range(hi)]
        length = max(pos_list) + 1
        pos = torch.tensor(pos_list, device=dev)
        step = _Step(hi, length, torch.arange(hi, device=dev), pos)
        past = DynamicCache(config=r.model.config)
        past.layers = [_SlotLayer(k, v, step) for k, v in zip(self.keys, self.values, strict=True)]
        # Each row reads its own tokens and the one it feeds; an empty slot reads position 0 (no all-masked rows).
        visible = torch.arange(length, device=dev)[None, :] <= pos[:, None]
        dtype = self.keys[0].dtype
        mask = torch.zeros(hi, 1, 1, length, dtype=dtype, device=dev).masked_fill_(~visible[:, None, None, :], torch.finfo(dtype).min)
        ids = torch.tensor([self.rows[s].next_token if self.rows[s] is not None else r.pad_id for s in range(hi)], device=dev)
        logits = r.model(
            input_ids=ids[:, None], attention_mask=mask, position_ids=pos[:, None], past_key_values=past, use_cache=True, logits_to_keep=1
        ).logits[:, -1, :].float()
        idx = torch.tensor(occupied, device=dev)
        shared = len({(t, p, id(g)) for t, p, g in (self.rows[s].sampling for s in occupied)}) == 1
        tok, lp = r._sample(logits[idx], [self.rows[occupied[0]].sampling] if shared else [self.rows[s].sampling for s in occupied])
        done = []
        for s, t, x in zip(occupied, tok.tolist(), lp.tolist(), strict=True):
            row = self.rows[s]
            self.lengths[s] += 1
            if self._append(row, t, x):
                n = self.lengths[s]
                done.append(self._finish(row, [(k[s, :, :n].clone(), v[s, :, :n].clone()) for k, v in zip(self.keys, self.values, strict=True)]))
                self.rows[s] = None
            else:
                row.next_token = t
        return done

    def _compact(self) -> None:
        """Move the highest rows into the lowest empty slots once half of the range read is empty."""
        occupied = [s for s, row in enumerate(self.rows) if row is not None]
        if not occupied or 2 * len(occupied) > occupied[-1] + 1:
            return
        holes = [s for s in range(len(occupied)) if self.rows[s] is None]
        for dst, src in zip(holes, reversed(occupied), strict=False):
            if src <= dst:
                break
            n = self.lengths[src]
            for k, v in zip(self.keys, self.values, strict=True):
                k[dst, :, :n], v[dst, :, :n] = k[src, :, :n], v[src, :, :n]
            self.rows[dst], self.lengths[dst], self.rows[src] = self.rows[src], n, None

    # -- rows -----------------------------------------------------------------------------------------
    def _append(self, row: Row, t: int, x: float) -> bool:
        """Record a sampled token; True when it ends the row (EOS, the delimiter, or the budget)."""
        row.out.append(t)
        row.lps.append(x)
        row.tail, ends = self.r.ends_row(row.tail, t, row.delimiter, len(row.out), row.request.max_new_tokens)
        return ends

    def _finish(self, row: Row, fed: list) -> tuple[object, StepOutput]:
        q_ids, inj_ids, ids = row.context
        self.r.cache.put(row.request.trajectory_id, Cached(ids + row.out[:-1], fed))
        return row.key, self.r.output(row.request, q_ids, inj_ids, row.out, row.lps)
