"""A local transformers causal LM as the reasoner: continuous batching with prefix-cache reuse.

`model.generate` cannot stop one row of a batch at a step delimiter, hand back its KV cache for the
next step, or take in new rows while it runs, so this module runs its own decode loop over
`model(...)` with a `DynamicCache`:

- a trajectory's cache (keys and values of every token it has fed) is kept between its steps, so a
  step only feeds the injected strategy text and the last token of the previous step;
- requests are admitted into the running batch between decode steps (continuous batching): a row
  that hits its delimiter is answered at once and leaves, and its trajectory's next step can join
  while the other rows are still decoding;
- rows are laid out `[pad, tokens]` under one attention mask that hides the pads; explicit position
  ids keep every row's positions its own, and all-pad columns on the left are trimmed.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

from rsim_graph.batching import compute
from rsim_graph.errors import CheckpointError
from rsim_graph.reasoners.base import StepOutput, StepRequest

logger = logging.getLogger(__name__)

# Per layer: (keys, values), each (kv_heads, seq, head_dim).
LayerKV = tuple[torch.Tensor, torch.Tensor]


@dataclass
class _Cached:
    ids: list[int]  # the tokens whose keys/values are held
    layers: list[LayerKV]


@dataclass
class _Row:
    """One request in the running batch."""

    request: StepRequest
    future: Future
    q_ids: list[int]
    inj_ids: list[int]
    ids: list[int]  # the full context
    out: list[int] = field(default_factory=list)
    lps: list[float] = field(default_factory=list)
    tail: str = ""


@dataclass
class _Batch:
    """The running batch: rows and their tensors, aligned on dim 0."""

    rows: list[_Row]
    past: DynamicCache
    mask: torch.Tensor  # (A, L): 1 on fed tokens
    next_pos: torch.Tensor  # (A,): position of each row's next fed token
    last: torch.Tensor  # (A,): token sampled last, not yet fed


def load_causal_lm(path: str, *, dtype: torch.dtype | None = None, device: str = "cpu"):
    """Load a tokenizer and causal LM from a local directory or hub id, with a one-line error when missing."""
    local = Path(path).expanduser()
    looks_local = local.exists() or path.startswith((".", "/", "~"))
    if looks_local and not (local / "config.json").is_file():
        raise CheckpointError(f"no model at {local}: expected a directory with config.json (a saved transformers model)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(local) if looks_local else path)
        model = AutoModelForCausalLM.from_pretrained(
            str(local) if looks_local else path, dtype=dtype or torch.float32, attn_implementation="eager"
        )
    except (OSError, ValueError) as e:
        raise CheckpointError(
            f"cannot load model {path!r}: {str(e).splitlines()[0]} (pass a local model directory, "
            "or a hub id on a machine with access to the hub)"
        ) from e
    return tokenizer, model.to(device).eval()


class HFReasoner:
    """A transformers causal LM that writes one step at a time.

    Args:
        model (`PreTrainedModel`): a causal LM with full attention (sliding-window caches are not
            handled). Eager attention is safest with padded caches.
        tokenizer (`PreTrainedTokenizerBase`): its tokenizer, with a chat template.
        temperature (`float`, *optional*, defaults to `1.0`): 0 means greedy.
        top_p (`float`, *optional*, defaults to `1.0`).
        seed (`int`, *optional*): seeds the sampler.
        max_batch (`int`, *optional*, defaults to `64`): most rows decoded together.
        max_cached (`int`, *optional*, defaults to `4096`): trajectories whose prefix cache is kept (LRU).
        gap_ms (`float`, *optional*, defaults to `4.0`): an idle engine waits this long for more
            requests before it starts, so concurrent trajectories start as one batch.
    """

    def __init__(
        self,
        model,
        tokenizer,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        max_batch: int = 64,
        max_cached: int = 4096,
        gap_ms: float = 4.0,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.temperature = temperature
        self.top_p = top_p
        self.generator = torch.Generator(device=model.device)
        if seed is not None:
            self.generator.manual_seed(seed)
        self.max_batch = max_batch
        self.max_cached = max_cached
        self.gap_s = gap_ms / 1000
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        # Text of each token, for the stop check in the decode loop (decoding there costs per token and row).
        self.pieces = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        self.batch_sizes: list[int] = []  # rows per forward pass, for benchmarks and tests
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._queue: queue.Queue[_Row] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, path: str, **kwargs) -> HFReasoner:
        tokenizer, model = load_causal_lm(path)
        return cls(model, tokenizer, **kwargs)

    # -- the Reasoner protocol ------------------------------------------------------------------
    def step(self, request: StepRequest) -> StepOutput:
        return self.submit([request])[0].result()

    def complete(self, question: str, max_new_tokens: int) -> StepOutput:
        """The reasoner alone (ZeroCoT): answer `question` with nothing injected, until EOS."""
        return self.step(StepRequest(question, [], "", "", max_new_tokens, self.tokenizer.eos_token or ""))

    def release(self, trajectory_id: str) -> None:
        with self._cache_lock:
            self._cache.pop(trajectory_id, None)

    def generate_batch(self, requests: list[StepRequest]) -> list[StepOutput]:
        """Run requests together and wait for all of them."""
        return [f.result() for f in self.submit(requests)]

    def submit(self, requests: list[StepRequest]) -> list[Future]:
        rows = []
        for r in requests:
            q_ids, inj_ids, ids = self.context(r)
            rows.append(_Row(r, Future(), q_ids, inj_ids, ids))
        with self._thread_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="rsim-hf-engine", daemon=True)
                self._thread.start()
            for row in rows:
                self._queue.put(row)
        return [row.future for row in rows]

    # -- prompts --------------------------------------------------------------------------------
    def question_ids(self, question: str) -> list[int]:
        messages = [{"role": "user", "content": question}]
        if self.tokenizer.chat_template:
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        else:
            text = f"Question: {question}\nAnswer:\n"
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def context(self, request: StepRequest) -> tuple[list[int], list[int], list[int]]:
        """(question_ids, injected_ids, full context ids) for a request."""
        q_ids = request.question_ids or self.question_ids(request.question)
        ids = list(q_ids)
        for s in request.steps:
            # Exact ids of earlier steps; a backend-less step (text only) is re-encoded.
            ids += s.get("prompt_ids") or self.encode(s["injected"])
            ids += s.get("completion_ids") or self.encode(s["text"] + request.delimiter)
        injected_ids = self.encode(request.injected)
        return list(q_ids), injected_ids, ids + injected_ids

    # -- the engine -----------------------------------------------------------------------------
    def _loop(self) -> None:
        batch: _Batch | None = None
        while True:
            new: list[_Row] = []
            if batch is None:  # idle: block, then gather what arrives together
                new.append(self._queue.get())
                while len(new) < self.max_batch:
                    try:
                        new.append(self._queue.get(timeout=self.gap_s))
                    except queue.Empty:
                        break
            room = self.max_batch - (len(batch.rows) if batch else 0) - len(new)
            while room > 0:
                try:
                    new.append(self._queue.get_nowait())
                    room -= 1
                except queue.Empty:
                    break
            try:
                batch, done = compute(self._iterate, batch, new)
            except BaseException as e:  # noqa: BLE001 - handed to every waiting caller, which re-raises it
                for row in (batch.rows if batch else []) + new:
                    if not row.future.done():
                        row.future.set_exception(e)
                batch = None
                continue
            for row, output in done:
                row.future.set_result(output)

    @torch.no_grad()
    def _iterate(self, batch: _Batch | None, new: list[_Row]) -> tuple[_Batch | None, list[tuple[_Row, StepOutput]]]:
        """One engine step: feed the running rows' last tokens, prefill the new rows, sample one
        token for every row, and retire the rows that finished."""
        if batch is not None:
            batch = self._decode(batch)
        if new:
            admitted = self._prefill(new)
            batch = admitted if batch is None else _merge(batch, admitted)
        done = []
        keep = []
        for i, row in enumerate(batch.rows):
            t = int(batch.last[i])
            row.out.append(t)
            row.tail = (row.tail + self.pieces[t])[-len(row.request.delimiter) - 8 :]
            if t == self.tokenizer.eos_token_id or row.request.delimiter in row.tail or len(row.out) >= row.request.max_new_tokens:
                done.append((row, self._finish(row, batch, i)))
            else:
                keep.append(i)
        if not keep:
            return None, done
        if len(keep) < len(batch.rows):
            batch = _select(batch, keep)
        return _trim(batch), done

    def _decode(self, b: _Batch) -> _Batch:
        mask = torch.cat([b.mask, torch.ones_like(b.mask[:, :1])], dim=1)
        logits = self.model(
            input_ids=b.last[:, None], attention_mask=mask, position_ids=b.next_pos[:, None], past_key_values=b.past, use_cache=True
        ).logits[:, -1, :].float()  # (A, V)
        self.batch_sizes.append(len(b.rows))
        tok, lp = self._sample(logits)
        for row, x in zip(b.rows, lp.tolist(), strict=True):
            row.lps.append(x)
        return _Batch(b.rows, b.past, mask, b.next_pos + 1, tok)

    def _prefill(self, rows: list[_Row]) -> _Batch:
        dev = self.model.device
        cached = [self._lookup(r.request.trajectory_id, r.ids) for r in rows]
        n_cached = [len(c.ids) if c else 0 for c in cached]
        fresh = [r.ids[n:] for r, n in zip(rows, n_cached, strict=True)]
        B, Lc, Ln = len(rows), max(n_cached), max(len(x) for x in fresh)
        mask = torch.zeros(B, Lc + Ln, dtype=torch.long, device=dev)
        input_ids = torch.full((B, Ln), self.pad_id, dtype=torch.long, device=dev)
        pos = torch.zeros(B, Ln, dtype=torch.long, device=dev)
        for i in range(B):
            mask[i, Lc - n_cached[i] : Lc] = 1
            mask[i, Lc + Ln - len(fresh[i]) :] = 1
            input_ids[i, Ln - len(fresh[i]) :] = torch.tensor(fresh[i], device=dev)
            pos[i, Ln - len(fresh[i]) :] = torch.arange(n_cached[i], n_cached[i] + len(fresh[i]), device=dev)
        past = DynamicCache(ddp_cache_data=self._pad_cache(cached, Lc), config=self.model.config) if Lc else DynamicCache(config=self.model.config)
        logits = self.model(input_ids=input_ids, attention_mask=mask, position_ids=pos, past_key_values=past, use_cache=True).logits[:, -1, :].float()
        self.batch_sizes.append(B)
        tok, lp = self._sample(logits)
        for row, x in zip(rows, lp.tolist(), strict=True):
            row.lps.append(x)
        return _Batch(rows, past, mask, pos[:, -1] + 1, tok)

    def _finish(self, row: _Row, b: _Batch, i: int) -> StepOutput:
        r = row.request
        if r.trajectory_id:
            cols = b.mask[i].nonzero().squeeze(1)  # every fed token of the row; its last sampled one was never fed
            layers = [(layer.keys[i, :, cols].clone(), layer.values[i, :, cols].clone()) for layer in b.past.layers]
            self._store(r.trajectory_id, _Cached(row.ids + row.out[:-1], layers))
        text = self.tokenizer.decode(row.out, skip_special_tokens=True)
        if text.endswith(r.delimiter):
            text = text[: -len(r.delimiter)]
        return StepOutput(
            text=text.strip("\n"), question_ids=row.q_ids, prompt_ids=row.inj_ids, completion_ids=row.out, logprobs=row.lps
        )

    def _sample(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample one token per row; returns (tokens (B,), their log-probs (B,) at this temperature)."""
        if self.temperature <= 0:
            logp = torch.log_softmax(logits, dim=-1)
            tok = logits.argmax(dim=-1)
            return tok, logp.gather(1, tok[:, None]).squeeze(1)
        logp = torch.log_softmax(logits / self.temperature, dim=-1)
        probs = logp.exp()
        if self.top_p < 1.0:
            sorted_p, idx = probs.sort(dim=-1, descending=True)
            keep = sorted_p.cumsum(-1) - sorted_p < self.top_p
            probs = torch.zeros_like(probs).scatter(1, idx, sorted_p * keep)
        tok = torch.multinomial(probs, 1, generator=self.generator).squeeze(1)
        return tok, logp.gather(1, tok[:, None]).squeeze(1)

    def _pad_cache(self, cached: list[_Cached | None], Lc: int) -> list[LayerKV]:
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

    def _lookup(self, trajectory_id: str, ids: list[int]) -> _Cached | None:
        if not trajectory_id:
            return None
        with self._cache_lock:
            c = self._cache.get(trajectory_id)
        # At least one token must be fed, and the cache must be a true prefix of this context.
        if c is None or len(c.ids) >= len(ids) or ids[: len(c.ids)] != c.ids:
            return None
        return c

    def _store(self, trajectory_id: str, entry: _Cached) -> None:
        with self._cache_lock:
            self._cache[trajectory_id] = entry
            self._cache.move_to_end(trajectory_id)
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)


def _layers(past: DynamicCache) -> list[LayerKV]:
    return [(layer.keys, layer.values) for layer in past.layers]


def _select(b: _Batch, keep: list[int]) -> _Batch:
    idx = torch.tensor(keep, device=b.mask.device)
    past = DynamicCache(ddp_cache_data=[(k[idx], v[idx]) for k, v in _layers(b.past)])
    return _Batch([b.rows[i] for i in keep], past, b.mask[idx], b.next_pos[idx], b.last[idx])


def _trim(b: _Batch) -> _Batch:
    """Drop leading columns that are padding in every row (rows that held them have left)."""
    first = int(b.mask.any(0).float().argmax())
    if first == 0:
        return b
    past = DynamicCache(ddp_cache_data=[(k[:, :, first:], v[:, :, first:]) for k, v in _layers(b.past)])
    return _Batch(b.rows, past, b.mask[:, first:], b.next_pos, b.last)


def _left_pad(x: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    pad = length - x.shape[dim]
    if pad == 0:
        return x
    shape = list(x.shape)
    shape[dim] = pad
    return torch.cat([x.new_zeros(shape), x], dim=dim)


def _merge(a: _Batch, b: _Batch) -> _Batch:
    """One batch from two, left-padding the shorter one's cache and mask."""
    L = max(a.mask.shape[1], b.mask.shape[1])
    layers = [
        (torch.cat([_left_pad(ka, L, 2), _left_pad(kb, L, 2)]), torch.cat([_left_pad(va, L, 2), _left_pad(vb, L, 2)]))
        for (ka, va), (kb, vb) in zip(_layers(a.past), _layers(b.past), strict=True)
    ]
    return _Batch(
        a.rows + b.rows,
        DynamicCache(ddp_cache_data=layers),
        torch.cat([_left_pad(a.mask, L, 1), _left_pad(b.mask, L, 1)]),
        torch.cat([a.next_pos, b.next_pos]),
        torch.cat([a.last, b.last]),
    )
