"""Per-trajectory prefix caches, shared by the reasoner's decode loop and the planner's choices.

A trajectory's context only grows between its calls (a step is appended), so the keys and values
of every token already read are kept under its trajectory id, and the next call feeds only what is
new. Rows of one batch hold caches of different lengths; they are laid out as
`[pad, cached_i, pad, new_i]` with an attention mask that hides the pads and explicit position ids.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch
from transformers import DynamicCache

# Per layer: (keys, values), each (kv_heads, seq, head_dim).
LayerKV = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Cached:
    ids: list[int]  # the tokens whose keys/values are held
    layers: list[LayerKV]

    def prefix(self, n: int) -> Cached:
        """The first `n` tokens' entry (views, no copy)."""
        return self if n == len(self.ids) else Cached(self.ids[:n], [(k[:, :n], v[:, :n]) for k, v in self.layers])


class PrefixStore:
    """A thread-safe LRU of `Cached` entries keyed by trajectory id.

    Args:
        max_entries (`int`): trajectories kept; the least recently used is dropped first. 0 keeps none.
    """

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._entries: OrderedDict[str, Cached] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> set[str]:
        with self._lock:
            return set(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def pop(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def put(self, key: str, entry: Cached) -> None:
        if not key or self.max_entries <= 0:
            return
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def exact(self, key: str, ids: list[int]) -> Cached | None:
        """The entry when it is a strict prefix of `ids` (at least one token is left to feed), else None."""
        c = self._get(key)
        if c is None or len(c.ids) >= len(ids) or ids[: len(c.ids)] != c.ids:
            return None
        return c

    def longest(self, key: str, ids: list[int]) -> Cached | None:
        """The entry cut to its longest common prefix with `ids`, leaving at least one token to feed; None if empty."""
        c = self._get(key)
        if c is None:
            return None
        n, limit = 0, min(len(c.ids), len(ids) - 1)
        while n < limit and c.ids[n] == ids[n]:
            n += 1
        return c.prefix(n) if n else None

    def _get(self, key: str) -> Cached | None:
        if not key:
            return None
        with self._lock:
            return self._entries.get(key)


def padded_batch(
    prompts: list[list[int]], cached: list[Cached | None], config, pad_id: int, device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, DynamicCache]:
    """(input_ids (B, Ln), attention_mask (B, Lc + Ln), position_ids (B, Ln), cache) for rows that feed
    `prompts[i]` after `cached[i]`'s tokens, laid out `[pad, cached_i, pad, new_i]`."""
    B = len(prompts)
    n_cached = [len(c.ids) if c else 0 for c in cached]
    new = [p[n:] for p, n in zip(prompts, n_cached, strict=True)]
    Lc, Ln = max(n_cached), max(len(x) for x in new)
    mask = torch.zeros(B, Lc + Ln, dtype=torch.long, device=device)
    input_ids = torch.full((B, Ln), pad_id, dtype=torch.long, device=device)
    pos = torch.zeros(B, Ln, dtype=torch.long, device=device)
    for i in range(B):
        mask[i, Lc - n_cached[i] : Lc] = 1
        mask[i, Lc + Ln - len(new[i]) :] = 1
        input_ids[i, Ln - len(new[i]) :] = torch.tensor(new[i], device=device)
        pos[i, Ln - len(new[i]) :] = torch.arange(n_cached[i], n_cached[i] + len(new[i]), device=device)
    # transformers' own DynamicLayer (a concatenation per token). A layer that wrote into a buffer with spare room
    # (GrowingLayer, removed 2026-12-08) was slower here: `evals.bench rollout`, interleaved runs, 9.96-11.84 vs
    # 14.65-16.15 concurrent traj/s and 1393-1656 vs 2049-2258 step-wise tok/s, the same answers.
    past = DynamicCache(config=config)
    if Lc:
        for layer, (k, v) in zip(past.layers, _pad_layers(cached, Lc), strict=False):
            layer.update(k, v)
    return input_ids, mask, pos, past


def row_layers(past: DynamicCache, row: int, mask_row: torch.Tensor) -> list[LayerKV]:
    """Copies of one batch row's keys/values at the positions its mask shows (its own tokens, no pads)."""
    cols = mask_row.nonzero().squeeze(1)
    return [(layer.keys[row, :, cols].clone(), layer.values[row, :, cols].clone()) for layer in past.layers]


def _pad_layers(cached: list[Cached | None], Lc: int) -> list[LayerKV]:
    ref = next(c for c in cached if c).layers
    layers = []
    for li, (k0, v0) in enumerate(ref):
        K = k0.new_zeros(len(cached), k0.shape[0], Lc, k0.shape[2])
        V = v0.new_zeros(len(cached), v0.shape[0], Lc, v0.shape[2])
        for i, c in enumerate(cached):
            if c:
                n = len(c.ids)
                K[i, :, Lc - n :] = c.layers[li][0]
                V[i, :, Lc - n :] = c.layers[li][1]
        layers.append((K, V))
    return layers
