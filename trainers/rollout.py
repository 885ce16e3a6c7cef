"""The trainer's rollout: the compiled rSIM graph, run on a batch of prompts, flattened into TRL's format.

`GraphRollout` is the `rollout_func` that `MARLTrainer` hands to `GRPOTrainer`. It runs the same
graph as `python -m rsim_graph solve` (there is no second code path), with the planner sampling and the
trainer's live reasoner weights, and returns per trajectory:

- `prompt_ids`, `completion_ids`, `logprobs`: the reasoner's tokens exactly as sampled;
- `env_mask`: 0 on injected strategy text, so the reasoner's loss skips it;
- the columns the rewards read (`strategies`, `forced`, `step_texts`, `answer`);
- the planner's decisions (`planner_texts`, `planner_actions`, `planner_logps`): what it read, what it
  chose, and the log-probability of that choice at sampling time, for its clipped surrogate.
"""

from __future__ import annotations

import logging

from rsim_graph.graph import build_graph, run_batch
from rsim_graph.planners.base import planner_text
from rsim_graph.planners.policy import PolicyPlanner
from rsim_graph.reasoners.base import Reasoner
from rsim_graph.reasoners.hf import HFReasoner
from rsim_graph.state import RSIMState, build_completion
from rsim_graph.strategies import StrategyLibrary
from trainers.vllm_rollout import LockstepServerReasoner

logger = logging.getLogger(__name__)


def prompt_question(prompt) -> str:
    """The question in a TRL prompt: a plain string, or the last user turn of a conversation."""
    if isinstance(prompt, str):
        return prompt
    users = [m["content"] for m in prompt if m.get("role") == "user"]
    if not users:
        raise ValueError("a conversational prompt needs a user message holding the question")
    return users[-1]


def trajectory_row(state: RSIMState, library: StrategyLibrary, read=planner_text) -> dict:
    """One finished trajectory as the trainer's columns."""
    steps = state["steps"]
    ids, mask, logprobs = build_completion(steps)
    decisions = [i for i, s in enumerate(steps) if not s.get("forced")]
    return {
        "prompt_ids": list(state["question_ids"]),
        "completion_ids": ids,
        "env_mask": mask,
        "logprobs": logprobs,
        "strategies": [s["strategy"] for s in steps],
        "forced": [bool(s.get("forced")) for s in steps],
        "step_texts": [s["text"] for s in steps],
        "step_lengths": [len(s.get("prompt_ids") or []) + len(s.get("completion_ids") or []) for s in steps],  # tokens per step
        "answer": state.get("answer") or "",
        "stop_reason": state.get("stop_reason") or "",
        # The planner saw `question + steps[:i]` when it chose step i (forced steps were not its choice).
        "planner_texts": [read({"question": state["question"], "steps": steps[:i]}) for i in decisions],
        "planner_actions": [library.index(steps[i]["strategy"]) for i in decisions],
        "planner_logps": [float(steps[i]["planner_logprob"]) for i in decisions],
    }


class GraphRollout:
    """`rollout_func(prompts, trainer) -> dict` over the rSIM graph.

    Args:
        planner (`PolicyPlanner`): the planner being trained; it samples.
        library (`StrategyLibrary`): the strategies its head scores.
        make_reasoner (`Callable[[trainer], Reasoner]`): builds the reasoner from the trainer on the first
            call, so rollouts always use the trainer's live model (or its vLLM engine).
        max_steps, max_step_tokens, max_total_tokens (`int`): the graph's budgets.
        injection (`str`): how the reasoner sees a strategy (`build_graph`'s `injection`).
    """

    def __init__(
        self, planner: PolicyPlanner, library: StrategyLibrary, make_reasoner, *, max_steps: int, max_step_tokens: int,
        max_total_tokens: int, injection: str = "prefill",
    ):
        self.planner = planner
        self.library = library
        self.make_reasoner = make_reasoner
        self.limits = {"max_steps": max_steps, "max_step_tokens": max_step_tokens, "max_total_tokens": max_total_tokens}
        self.injection = injection
        self.reasoner: Reasoner | None = None
        self.graph = None

    def prepare(self, trainer) -> Reasoner:
        """Build the reasoner and the graph once; returns the reasoner."""
        if self.graph is None:
            self.reasoner = self.make_reasoner(trainer)
            self.graph = build_graph(self.planner, self.reasoner, self.library, **self.limits, injection=self.injection)
        return self.reasoner

    def __call__(self, prompts: list, trainer) -> dict[str, list]:
        self.prepare(trainer)
        was_training = self.planner.training
        self.planner.eval()
        # Eval mode for sampling: with gradient checkpointing on, a model in train mode refuses its KV cache.
        model = self.reasoner.model if isinstance(self.reasoner, HFReasoner) else None
        model_was_training = model is not None and model.training
        if model is not None:
            model.eval()
        try:
            # The plan node gives each trajectory a fresh id, so repeated prompts never share a prefix cache.
            states = run_batch(self.graph, [prompt_question(p) for p in prompts])
            if isinstance(self.reasoner, LockstepServerReasoner):
                self.reasoner.drain()  # every process makes the same number of server calls
        finally:
            self.planner.train(was_training)
            if model is not None:
                model.train(model_was_training)
        rows = [trajectory_row(s, self.library, self.planner.read) for s in states]
        return {key: [r[key] for r in rows] for key in rows[0]}
