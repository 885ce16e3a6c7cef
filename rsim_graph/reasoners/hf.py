"""A local transformers causal LM as the reasoner, batched across trajectories with prefix-cache reuse.

`model.generate` cannot stop one row of a batch at a step delimiter and hand back its KV cache for
the next step, so this module runs its own decode loop over `model(...)` with a `DynamicCache`:

- a trajectory's cache (keys and values of every token it has fed) is kept between its steps, so a
  step only feeds the injected strategy text and the last token of the previous step;
- requests from many trajectories are padded into one batch laid out as
  `[pad, cached_i, pad, new_i]` with an attention mask that hides the pads, and decoded together;
  a row that finishes leaves the batch, so the others do not pay for it.

Batches are static by default (`decode`): requests that arrive while a batch decodes wait for the
next one. `continuous=True` lets rows join and leave a decoding batch between tokens, in a
preallocated slot cache (`rsim_graph/reasoners/slots.py`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TopPLogitsWarper

from rsim_graph.engine.batching import ContinuousBatcher, MicroBatcher
from rsim_graph.errors import CheckpointError, ContextLengthError
from rsim_graph.engine.kvcache import Cached, LayerKV, PrefixStore, padded_batch, row_layers
from rsim_graph.engine.gguf import resolve_model
from rsim_graph.reasoners.base import StepOutput, StepRequest
from rsim_graph.reasoners.slots import SLOT_ATTENTION, SlotDecoder
from rsim_graph.reasoners.tokens import TokenPrompts
from rsim_graph.state import ChatTurn

logger = logging.getLogger(__name__)

# One row's sampling: (temperature, top_p, generator).
RowSampling = tuple[float, float, torch.Generator]


def load_causal_lm(path: str, *, dtype: torch.dtype | None = None, device: str = "cpu", attn_implementation: str = "sdpa"):
    """Load a tokenizer and causal LM from a local directory, hub id, `.gguf` file or `smollm2`, with a one-line
    error when missing. `attn_implementation` is transformers' (`sdpa`, `eager`, `flash_attention_2`): the
    decode loop passes a padding mask and position ids, which every implementation honours."""
    path = resolve_model(path)
    local = Path(path).expanduser()
    if (local / "adapter_config.json").is_file():
        return load_adapter(local, dtype=dtype, device=device, attn_implementation=attn_implementation)
    looks_local = local.exists() or path.startswith((".", "/", "~"))
    if looks_local and not (local / "config.json").is_file():
        raise CheckpointError(f"no model at {local}: expected a directory with config.json (a saved transformers model)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(local) if looks_local else path)
        model = AutoModelForCausalLM.from_pretrained(
            str(local) if looks_local else path, dtype=dtype or torch.float32, attn_implementation=attn_implementation
        )
    except (OSError, ValueError) as e:
        raise CheckpointError(
            f"cannot load model {path!r}: {str(e).splitlines()[0]} (pass a local model directory, "
            "or a hub id on a machine with access to the hub)"
        ) from e
    return tokenizer, model.to(device).eval()


def load_adapter(path: Path, *, dtype: torch.dtype | None = None, device: str = "cpu", attn_implementation: str = "sdpa"):
    """A LoRA adapter directory (as the trainers save it) merged into the base model its config names."""
    import json

    from peft import PeftModel

    try:
        base = json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"adapter {path} has no readable base_model_name_or_path in adapter_config.json ({e})") from e
    if not base:
        raise CheckpointError(f"adapter {path} does not name its base model; set base_model_name_or_path in adapter_config.json")
    tokenizer, model = load_causal_lm(base, dtype=dtype, device=device, attn_implementation=attn_implementation)
    try:
        model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()  # merged: decoding runs at the base model's speed
    except (OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"cannot load adapter {path} over {base!r}: {str(e).splitlines()[0]}") from e
    return tokenizer, model.to(device).eval()


class HFReasoner(TokenPrompts):
    """A transformers causal LM that writes one step at a time.

    Args:
        model (`PreTrainedModel`): a causal LM with full attention (sliding-window caches are not
            handled). Eager attention is safest with padded caches.
        tokenizer (`PreTrainedTokenizerBase`): its tokenizer, with a chat template.
        temperature (`float`, *optional*, defaults to `1.0`): 0 means greedy.
        top_p (`float`, *optional*, defaults to `1.0`).
        seed (`int`, *optional*): seeds the sampler.
        max_batch (`int`, *optional*, defaults to `64`): most trajectories decoded together.
        max_cached (`int`, *optional*, defaults to `4096`): trajectories whose prefix cache is kept (LRU).
        continuous (`bool`, *optional*, defaults to `False`): continuous batching in a slot cache (requests join
            and leave a decoding batch between tokens) instead of static batches. Needs `sdpa` or `eager`
            attention (others decode static batches). Off by default: on the CPU workloads measured here
            (`python -m evals.bench rollout --continuous`) trajectories move nearly in lockstep, and static
            batches, fewer and fuller, were as fast or faster.
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
        continuous: bool = False,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.temperature = temperature
        self.top_p = top_p
        self.generator = torch.Generator(device=model.device)
        if seed is not None:
            self.generator.manual_seed(seed)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        # Text of each token, for the stop check in the decode loop (decoding there costs per token and row).
        self.pieces = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        self.cache = PrefixStore(max_cached)
        self._generators: dict[str, torch.Generator] = {}  # seeded runs keep one sampler across their steps
        self._generators_lock = threading.Lock()

        self.max_batch = max_batch
        # Rows enter and leave a decoding batch between tokens (rsim_graph/reasoners/slots.py); attention without
        # 4D masks (flash attention) decodes static batches instead.
        self.continuous = continuous and getattr(model.config, "_attn_implementation", "eager") in SLOT_ATTENTION
        self.batcher = ContinuousBatcher(SlotDecoder(self, max_batch)) if self.continuous else MicroBatcher(self.generate_batch, max_batch=max_batch)

    @classmethod
    def from_pretrained(cls, path: str, **kwargs) -> HFReasoner:
        tokenizer, model = load_causal_lm(path)
        return cls(model, tokenizer, **kwargs)

    # -- the Reasoner protocol ------------------------------------------------------------------
    def step(self, request: StepRequest) -> StepOutput:
        if request.question_ids is None:  # the first step: refused here, alone, rather than failing its batch
            ids = self.check_prompt(request.question, request.history, 1)
            request = replace(request, question_ids=ids, max_new_tokens=self.room(ids, request.max_new_tokens))
        return self.batcher(request)

    def complete(self, question: str, max_new_tokens: int, **options) -> StepOutput:
        """The reasoner alone (ZeroCoT): answer `question` with nothing injected, until EOS or the budget (cut to
        what the context window leaves). `options` are `StepRequest` fields: `history`, `temperature`, `top_p`, `seed`."""
        eos = self.tokenizer.eos_token or ""
        ids = self.check_prompt(question, options.get("history"), 1)
        return self.batcher(StepRequest(question, [], "", "", self.room(ids, max_new_tokens), eos, question_ids=ids, **options))

    def room(self, question_ids: list[int], max_new_tokens: int) -> int:
        """`max_new_tokens`, cut to what the context window leaves after the question."""
        window = self.context_window()
        return min(max_new_tokens, window - len(question_ids)) if window else max_new_tokens

    def context_window(self) -> int | None:
        """Positions the model reads. Not every architecture's config names them; those are not checked."""
        return getattr(self.model.config, "max_position_embeddings", None)

    def check_prompt(self, question: str, history: list[ChatTurn] | None, max_new_tokens: int) -> list[int]:
        """The templated question's ids, or a `ContextLengthError` when it and `max_new_tokens` overrun the
        context window (a long enough question would otherwise ask attention for more memory than exists).
        Runs ask for room for one token (a budget is cut to fit); the server asks for the client's `max_tokens`."""
        ids = self.question_ids(question, history)
        window = self.context_window()
        if window and len(ids) + max_new_tokens > window:
            raise ContextLengthError(
                f"the messages take {len(ids)} tokens and the answer may take {max_new_tokens}, over this model's "
                f"context window of {window} tokens; shorten the messages or lower max_tokens"
            )
        return ids

    def release(self, trajectory_id: str) -> None:
        self.cache.pop(trajectory_id)
        with self._generators_lock:
            self._generators.pop(trajectory_id, None)

    # -- prompts --------------------------------------------------------------------------------
    # -- batched generation ---------------------------------------------------------------------
    @torch.no_grad()
    def generate_batch(self, requests: list[StepRequest]) -> list[StepOutput]:
        """Decode `requests` together, on the calling thread, and return their outputs in order."""
        if self.continuous:
            decoder = SlotDecoder(self, max(1, len(requests)))
            done = decoder.admit(list(enumerate(requests)))
            while decoder.active:
                done += decoder.step()
            return [out for _, out in sorted(done, key=lambda d: d[0])]
        contexts = [self.context(r) for r in requests]
        prompts = [c[2] for c in contexts]
        cached = [self.cache.exact(r.trajectory_id, ids) for r, ids in zip(requests, prompts, strict=True)]
        completions, logprobs, fed_cache = self.decode(
            prompts, cached, [r.max_new_tokens for r in requests], [r.delimiter if r.stop_at_delimiter else "" for r in requests],
            [self._sampling(r) for r in requests],
        )
        outputs = []
        for r, (q_ids, inj_ids, ids), comp, lps, layers in zip(
            requests, contexts, completions, logprobs, fed_cache, strict=True
        ):
            self.cache.put(r.trajectory_id, Cached(ids + comp[:-1], layers))
            outputs.append(self.output(r, q_ids, inj_ids, comp, lps))
        return outputs

    def output(self, r: StepRequest, q_ids: list[int], inj_ids: list[int], comp: list[int], lps: list[float]) -> StepOutput:
        text = self.tokenizer.decode(comp, skip_special_tokens=True)
        ended = bool(comp) and (comp[-1] == self.tokenizer.eos_token_id or bool(r.stop_at_delimiter and r.delimiter and text.endswith(r.delimiter)))
        text = text.removesuffix(r.delimiter) if r.stop_at_delimiter else text
        meta = {"finish_reason": "stop" if ended or len(comp) < r.max_new_tokens else "length"}  # OpenAI's names
        return StepOutput(text=text.strip("\n"), question_ids=q_ids, prompt_ids=inj_ids, completion_ids=comp, logprobs=lps, meta=meta)

    def decode(
        self,
        prompts: list[list[int]],
        cached: list[Cached | None],
        max_new: list[int],
        delimiters: list[str],
        sampling: list[RowSampling] | None = None,
    ) -> tuple[list[list[int]], list[list[float]], list[list[LayerKV]]]:
        """Decode all rows together until each hits its delimiter, EOS or its token budget; a row that
        finishes leaves the batch, so the others do not pay for it.

        Returns per row: generated ids, their log-probabilities, and the keys/values of every token
        fed (the prompt and all generated tokens but the last), for reuse by the next step.
        """
        B = len(prompts)
        sampling = sampling or [(self.temperature, self.top_p, self.generator)] * B
        # Decided once per call, not per token: most batches share one setting and one sampler.
        shared = len({(t, p, id(g)) for t, p, g in sampling}) == 1
        dev = self.model.device
        input_ids, mask, pos, past = padded_batch(prompts, cached, self.model.config, self.pad_id, dev)
        out: list[list[int]] = [[] for _ in range(B)]
        lps: list[list[float]] = [[] for _ in range(B)]
        fed: list[list[LayerKV]] = [[] for _ in range(B)]
        tails = [""] * B
        active = list(range(B))  # batch row -> request index; finished rows leave the batch
        next_pos = pos[:, -1] + 1
        for _ in range(max(max_new)):
            # logits_to_keep=1: the vocabulary projection of the last position only, as `generate` does; a step's
            # first pass feeds the whole injected prompt (or question), and a 49k-token vocabulary made the rest costly.
            logits = self.model(
                input_ids=input_ids, attention_mask=mask, position_ids=pos, past_key_values=past, use_cache=True, logits_to_keep=1
            ).logits[:, -1, :].float()  # (A, V)
            tok, lp = self._sample(logits, sampling[:1] if shared else [sampling[i] for i in active])
            finished = []
            for row, (i, t, x) in enumerate(zip(active, tok.tolist(), lp.tolist(), strict=True)):
                out[i].append(t)
                lps[i].append(x)
                tails[i], ends = self.ends_row(tails[i], t, delimiters[i], len(out[i]), max_new[i])
                if ends:
                    finished.append(row)
                    fed[i] = row_layers(past, row, mask[row])  # every fed token (the last sampled one was never fed)
            if finished:
                keep = [row for row in range(len(active)) if row not in finished]
                if not keep:
                    break
                idx = torch.tensor(keep, device=dev)
                past.batch_select_indices(idx)
                tok, mask, next_pos = tok[idx], mask[idx], next_pos[idx]
                active = [active[row] for row in keep]
            input_ids = tok.view(-1, 1)
            pos = next_pos.view(-1, 1)
            next_pos = next_pos + 1
            mask = torch.cat([mask, torch.ones(len(active), 1, dtype=torch.long, device=dev)], dim=1)
        return out, lps, fed

    def ends_row(self, tail: str, t: int, delimiter: str, n: int, max_new: int) -> tuple[str, bool]:
        """(the row's new text tail, whether token `t` ends it: EOS, the delimiter, or the budget of `max_new`)."""
        tail = (tail + self.pieces[t])[-len(delimiter) - 8 :]
        return tail, t == self.tokenizer.eos_token_id or bool(delimiter and delimiter in tail) or n >= max_new

    def _sampling(self, r: StepRequest) -> RowSampling:
        temperature = self.temperature if r.temperature is None else r.temperature
        top_p = self.top_p if r.top_p is None else r.top_p
        if r.seed is None or temperature <= 0:  # greedy rows need no sampler of their own, and batch together
            return temperature, top_p, self.generator
        with self._generators_lock:
            gen = self._generators.get(r.trajectory_id) if r.trajectory_id else None
            if gen is None:
                gen = torch.Generator(device=self.model.device).manual_seed(r.seed)
                if r.trajectory_id:
                    self._generators[r.trajectory_id] = gen
        return temperature, top_p, gen

    def _sample(self, logits: torch.Tensor, rows: list[RowSampling]) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample one token per row; returns (tokens (B,), their log-probs (B,) at each row's temperature).
        `rows` holds each row's settings, or one entry that all rows share. Rows that share settings and
        sampler are sampled together."""
        if len(rows) == 1:
            return self._sample_group(logits, *rows[0])
        groups: dict[tuple[float, float, int], list[int]] = {}
        for row, (t, p, gen) in enumerate(rows):
            groups.setdefault((t, p, id(gen)), []).append(row)
        tok = torch.empty(len(rows), dtype=torch.long, device=logits.device)
        lp = torch.empty(len(rows), device=logits.device)
        for members in groups.values():
            idx = torch.tensor(members, device=logits.device)
            tok[idx], lp[idx] = self._sample_group(logits[idx], *rows[members[0]])
        return tok, lp

    @staticmethod
    def _sample_group(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator):
        if temperature <= 0:
            logp = torch.log_softmax(logits, dim=-1)
            tok = logits.argmax(dim=-1)
            return tok, logp.gather(1, tok[:, None]).squeeze(1)
        scores = logits / temperature
        logp = torch.log_softmax(scores, dim=-1)  # the policy's log-probabilities: before the nucleus cut, as in training
        if top_p < 1.0:
            scores = TopPLogitsWarper(top_p)(None, scores)
        tok = torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator).squeeze(1)
        return tok, logp.gather(1, tok[:, None]).squeeze(1)
