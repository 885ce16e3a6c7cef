"""A learned planner: a Hugging Face backbone plus an action head over the library's strategies.

As in the paper (Sec. 3.2), the planner is a language model whose final hidden state feeds a freshly
initialised linear head with one row per strategy. Choices from concurrent trajectories are batched.
"""

from __future__ import annotations

import copy
import json
import logging
import pickle
import threading
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from transformers import AutoModel, AutoTokenizer

from rsim_graph.engine.batching import MicroBatcher
from rsim_graph.errors import CheckpointError
from rsim_graph.engine.kvcache import Cached, PrefixStore, padded_batch, row_layers
from rsim_graph.engine.gguf import resolve_model
from rsim_graph.planners.base import PlannerChoice, planner_text
from rsim_graph.state import RSIMState
from rsim_graph.strategies import StrategyLibrary, load_strategies

logger = logging.getLogger(__name__)

HEAD_FILE = "head.pt"
CONFIG_FILE = "planner.json"
LIBRARY_FILE = "strategies.yaml"


def load_backbone(spec: str):
    """(backbone, tokenizer) from a directory, hub id, `.gguf` file or `smollm2`, with a one-line error."""
    name_or_path = resolve_model(spec)
    try:
        # sdpa: several times faster than eager on the planner's long, padded batches (measured on CPU).
        backbone = AutoModel.from_pretrained(name_or_path, attn_implementation="sdpa")
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as e:
        raise CheckpointError(
            f"cannot load planner backbone {spec!r}: {str(e).splitlines()[0]} (pass a planner checkpoint "
            "directory, a local model directory, or a hub id on a machine with access to the hub)"
        ) from e
    return backbone, tokenizer


class PolicyPlanner(nn.Module):
    """Backbone + action head.

    Args:
        backbone (`PreTrainedModel`): any `AutoModel` (the head reads its last hidden state).
        tokenizer (`PreTrainedTokenizerBase`): the backbone's tokenizer.
        library (`StrategyLibrary`): the strategies the head scores, in head-row order.
        greedy (`bool`, *optional*, defaults to `False`): take the most likely strategy instead of sampling.
        max_length (`int`, *optional*, defaults to `512`): planner input tokens; older steps are cut first.
        max_step_chars (`int`, *optional*, defaults to `200`): characters of each step the planner reads
            (the end of the step, where its result is).
        seed (`int`, *optional*): seeds sampling.
        chunk (`int`, *optional*, defaults to `64`): texts per forward pass; texts are grouped by length
            so padding stays small.
        freeze_backbone (`bool`, *optional*, defaults to `False`): train the head only. The backbone runs
            without gradients, and a checkpoint stores the head and a reference to the backbone (`backbone_spec`)
            instead of the backbone's weights.
        backbone_spec (`str`, *optional*): the model spec the backbone was loaded from (`smollm2`, a path or
            hub id); a frozen planner's checkpoint names it, and loading reads the backbone from it.
        max_cached (`int`, *optional*, defaults to `4096`): trajectories whose prefix cache is kept (LRU); a
            choice reads only the tokens its trajectory added since its last choice. 0 re-reads everything.
    """

    def __init__(
        self,
        backbone,
        tokenizer,
        library: StrategyLibrary,
        *,
        greedy: bool = False,
        max_length: int = 512,
        max_step_chars: int = 200,
        seed: int | None = None,
        chunk: int = 64,
        freeze_backbone: bool = False,
        backbone_spec: str | None = None,
        max_cached: int = 4096,
    ):
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.library = library
        self.greedy = greedy
        self.max_length = max_length
        self.max_step_chars = max_step_chars
        self.chunk = chunk
        self.backbone_spec = backbone_spec
        self.set_backbone_trainable(not freeze_backbone)
        self.head = self.new_head(len(library))
        self.generator = torch.Generator()
        if seed is not None:
            self.generator.manual_seed(seed)
        self._lock = threading.Lock()
        self.cache = PrefixStore(max_cached)
        self.batcher = MicroBatcher(self._choose_batch)

    def set_backbone_trainable(self, trainable: bool) -> None:
        """Train the backbone with the head, or the head alone (then checkpoints name the backbone instead of saving it)."""
        if not trainable and not self.backbone_spec:
            raise ValueError("a frozen planner backbone needs backbone_spec: its checkpoint names the backbone instead of saving it")
        self.freeze_backbone = not trainable
        self.backbone.requires_grad_(trainable)

    def new_head(self, rows: int) -> nn.Linear:
        """A freshly initialised action head in the backbone's dtype and device (bf16 backbones get a bf16 head)."""
        weight = next(self.backbone.parameters())
        head = nn.Linear(self.backbone.config.hidden_size, rows, dtype=weight.dtype, device=weight.device)
        nn.init.normal_(head.weight, std=0.02)
        nn.init.zeros_(head.bias)
        return head

    # -- scoring ----------------------------------------------------------------------------------
    def encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        ids = [torch.tensor(self.token_ids(t)) for t in texts]
        # left padding: the last position is every row's last token. torch's pad_sequence, not trl's `pad`: the
        # planner also serves inference, and importing trl.trainer.utils costs about 6 s of start-up here.
        input_ids = pad_sequence(ids, batch_first=True, padding_value=self.tokenizer.pad_token_id or 0, padding_side="left")
        mask = pad_sequence([torch.ones_like(x) for x in ids], batch_first=True, padding_value=0, padding_side="left")
        dev = self.head.weight.device
        return {"input_ids": input_ids.to(dev), "attention_mask": mask.to(dev)}

    def token_ids(self, text: str) -> list[int]:
        """At most `max_length` tokens of `text`; a longer text keeps the question and drops the oldest steps.

        The question is what the planner plans for: it keeps at least half of `max_length` (more when the
        steps are short), and the oldest steps are cut first.
        """
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= self.max_length:
            return ids
        cut = text.find("\n[")  # the first step marker: user text cannot forge one (`planner_text` defuses it)
        cut = len(text) if cut < 0 else cut
        question = self.tokenizer(text[:cut], add_special_tokens=False)["input_ids"]
        steps = self.tokenizer(text[cut:], add_special_tokens=False)["input_ids"]
        keep_q = min(len(question), max(self.max_length // 2, self.max_length - len(steps)))  # the steps' spare room goes to the question
        keep_s = self.max_length - keep_q
        return question[:keep_q] + (steps[len(steps) - keep_s :] if keep_s else [])

    def forward(self, texts: list[str]) -> torch.Tensor:
        """Logits over the library, (B, n_strategies)."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        parts = []
        for k in range(0, len(order), self.chunk):
            enc = self.encode([texts[i] for i in order[k : k + self.chunk]])
            pos = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_backbone):  # no activations kept for a frozen backbone
                parts.append(self.backbone(**enc, position_ids=pos).last_hidden_state[:, -1])  # (chunk, H)
        hidden = torch.cat(parts)[torch.argsort(torch.tensor(order))]  # back to the callers' order
        return self.head(hidden.to(self.head.weight.dtype))

    def read(self, state: RSIMState) -> str:
        """The text this planner reads for `state`."""
        return planner_text(state, self.max_step_chars)

    def log_probs(self, states: list[RSIMState]) -> torch.Tensor:
        """Log-probabilities over the library for each state, with gradients, (B, n_strategies)."""
        return torch.log_softmax(self.forward([self.read(s) for s in states]).float(), dim=-1)

    @torch.no_grad()
    def choice_log_probs(self, states: list[RSIMState]) -> torch.Tensor:
        """`log_probs` for choices (no gradients), reading each trajectory incrementally.

        A trajectory's text only grows between its choices, so the keys and values of its tokens are kept
        under its `trajectory_id` and a choice feeds only the tokens after the longest prefix it shares
        with the last one (the new step); without this the planner re-reads the whole trajectory at every
        choice, quadratic in the steps. A text cut to `max_length` shares only its question and is re-read
        from there. The training loss re-reads whole texts with gradients (`forward`); the two agree to
        float rounding, and the rollout's log-probabilities are the loss's old ones.
        """
        keys = [s.get("trajectory_id") or "" for s in states]
        if self.cache.max_entries <= 0 or not any(keys):
            return self.log_probs(states)
        ids = [self.token_ids(self.read(s)) for s in states]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths share a chunk: less padding
        pad, dev = self.tokenizer.pad_token_id or 0, self.head.weight.device
        parts = []
        for k in range(0, len(order), self.chunk):
            rows = order[k : k + self.chunk]
            cached = [self.cache.longest(keys[i], ids[i]) for i in rows]
            input_ids, mask, pos, past = padded_batch([ids[i] for i in rows], cached, self.backbone.config, pad, dev)
            out = self.backbone(input_ids=input_ids, attention_mask=mask, position_ids=pos, past_key_values=past, use_cache=True)
            parts.append(out.last_hidden_state[:, -1])
            for row, i in enumerate(rows):
                self.cache.put(keys[i], Cached(ids[i], row_layers(past, row, mask[row])))
        hidden = torch.cat(parts)[torch.argsort(torch.tensor(order))]
        return torch.log_softmax(self.head(hidden.to(self.head.weight.dtype)).float(), dim=-1)

    def release(self, trajectory_id: str) -> None:
        """Forget a finished trajectory's prefix cache."""
        self.cache.pop(trajectory_id)

    # -- the Planner protocol ---------------------------------------------------------------------
    def choose(self, state: RSIMState, library: StrategyLibrary) -> PlannerChoice:
        if library.ids != self.library.ids:
            raise CheckpointError(
                f"this planner's head scores {self.library.ids}, but the graph uses {library.ids}; "
                "call planner.grow(library) (then train it) to use a different library"
            )
        return self.batcher(state)

    @torch.no_grad()
    def _choose_batch(self, states: list[RSIMState]) -> list[PlannerChoice]:
        logp = self.choice_log_probs(states)  # (B, n)
        if self.greedy:
            idx = logp.argmax(-1)
        else:
            with self._lock:
                idx = torch.multinomial(logp.exp().cpu(), 1, generator=self.generator).squeeze(1)
        ids = self.library.ids
        return [
            PlannerChoice(ids[int(i)], float(row[int(i)]), row.exp().tolist()) for i, row in zip(idx, logp.cpu(), strict=True)
        ]

    def frozen_copy(self) -> PolicyPlanner:
        """A frozen twin, e.g. the reference for a KL penalty (deepcopy cannot copy the batcher's threads)."""
        backbone = self.backbone if self.freeze_backbone else copy.deepcopy(self.backbone)  # a frozen backbone is shared
        twin = PolicyPlanner(
            backbone, self.tokenizer, self.library, max_length=self.max_length, max_step_chars=self.max_step_chars,
            freeze_backbone=self.freeze_backbone, backbone_spec=self.backbone_spec,
        )
        twin.head.load_state_dict(self.head.state_dict())
        return twin.to(self.head.weight.device).eval().requires_grad_(False)

    # -- continual learning ---------------------------------------------------------------------
    def grow(self, library: StrategyLibrary) -> None:
        """Switch to `library`; rows of strategies this head already scored are kept, new rows start fresh."""
        old_rows = {sid: i for i, sid in enumerate(self.library.ids)}
        new_head = self.new_head(len(library)).to(self.head.weight.device)
        with torch.no_grad():
            for j, sid in enumerate(library.ids):
                if sid in old_rows:
                    new_head.weight[j] = self.head.weight[old_rows[sid]]
                    new_head.bias[j] = self.head.bias[old_rows[sid]]
        self.head = new_head
        self.library = library

    # -- persistence ------------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = {"max_length": self.max_length, "max_step_chars": self.max_step_chars, "strategies": self.library.ids}
        if self.freeze_backbone:  # the trainable part only: the head, over the backbone it names
            config["backbone"] = self.backbone_spec
        else:
            self.backbone.save_pretrained(path / "backbone")
            self.tokenizer.save_pretrained(path / "backbone")
        torch.save(self.head.state_dict(), path / HEAD_FILE)
        self.library.save(path / LIBRARY_FILE)
        (path / CONFIG_FILE).write_text(json.dumps(config, indent=2))

    @classmethod
    def from_backbone(cls, name_or_path: str, library: StrategyLibrary, **kwargs) -> PolicyPlanner:
        """The paper's initialisation: a pretrained language model (path, hub id, `.gguf` file or `smollm2`) plus a
        fresh action head."""
        backbone, tokenizer = load_backbone(name_or_path)
        kwargs.setdefault("backbone_spec", str(name_or_path))
        return cls(backbone, tokenizer, library, **kwargs)

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs) -> PolicyPlanner:
        path = Path(path)
        needed = [path / CONFIG_FILE, path / HEAD_FILE, path / LIBRARY_FILE]
        missing = [p.name for p in needed if not p.is_file()]
        try:
            cfg = json.loads((path / CONFIG_FILE).read_text()) if not missing else {}
        except ValueError as e:
            raise CheckpointError(f"planner checkpoint {path} is corrupt: {CONFIG_FILE}: {e}") from e
        spec = cfg.get("backbone")
        if not spec and not (path / "backbone" / "config.json").is_file():
            missing.append("backbone/config.json")
        if missing:
            raise CheckpointError(
                f"{path} is not a planner checkpoint (missing {', '.join(missing)}); "
                "pass a directory written by PolicyPlanner.save_pretrained"
            )
        try:
            library = load_strategies(path / LIBRARY_FILE)
            head = torch.load(path / HEAD_FILE, map_location="cpu", weights_only=True)
        except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
            raise CheckpointError(f"planner checkpoint {path} is corrupt: {str(e).splitlines()[0]}") from e
        # A named backbone (`smollm2`) or the saved one; a missing base model has its own message (how to install it).
        backbone, tokenizer = load_backbone(spec or str(path / "backbone"))
        kwargs.setdefault("max_length", cfg.get("max_length", 512))
        kwargs.setdefault("max_step_chars", cfg.get("max_step_chars", 200))
        if spec:
            kwargs.setdefault("freeze_backbone", True)
            kwargs.setdefault("backbone_spec", spec)
        planner = cls(backbone, tokenizer, library, **kwargs)
        try:
            planner.head.load_state_dict(head)
        except RuntimeError as e:
            raise CheckpointError(f"planner checkpoint {path}: head does not match its strategies file ({e})") from e
        return planner.eval()
