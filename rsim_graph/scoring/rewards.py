"""rSIM's rewards as plain functions with TRL's reward signature.

Paper (arXiv 2512.08300, Sec. 3.3):
- planner (leader):   R = R_acc + R_penalty + R_terminal
- reasoner (follower): R = R_acc + R_format + R_follow

Each function takes `completions` (strings or TRL's conversational form) and the per-sample columns
the rSIM rollout returns beside them: `solution` (gold answer), `strategies` (strategy ids per step),
`forced` (whether the graph, not the planner, injected each strategy) and `step_texts`. It returns one
float per completion, or None where it cannot judge (TRL then skips that sample for that reward).

The paper states the components but not every detail; where we had to choose, the docstring says so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from rsim_graph.scoring.grading import extract_answer, grade_completion
from rsim_graph.strategies import DEFAULT_STEP_DELIMITER, StrategyLibrary

# TRL's reward-function shape.
RewardFunc = Callable[..., list[float | None]]


def _text(completion) -> str:
    if isinstance(completion, list):  # conversational: [{"role": "assistant", "content": ...}]
        return "".join(m.get("content", "") for m in completion)
    return completion


def accuracy_reward(completions, solution, step_texts=None, step_delimiter: str = DEFAULT_STEP_DELIMITER, **kwargs) -> list[float | None]:
    """R_acc: 1.0 when the final answer equals the gold answer, else 0.0; None without a gold answer.

    With `step_texts` (rSIM rollouts), only what the reasoner generated is graded, so both agents get the
    same R_acc: the completion TRL decodes also holds the injected strategy prompts, and the terminating
    prompt's own `\\boxed{}` must not be read as the answer.

    >>> accuracy_reward(["... \\\\boxed{42}", "\\\\boxed{41}"], ["42", "42"])
    [1.0, 0.0]
    >>> accuracy_reward(["Terminate: give the final answer in \\\\boxed{}.\\n#### 42"], ["42"], step_texts=[["#### 42"]])
    [1.0]
    """
    texts = [_text(c) for c in completions] if step_texts is None else [step_delimiter.join(t) for t in step_texts]
    return [
        None if gold is None or str(gold) == "" else float(grade_completion(text, str(gold)))
        for text, gold in zip(texts, solution, strict=True)
    ]


def strategy_penalty_reward(completions, strategies, **kwargs) -> list[float | None]:
    """R_penalty: minus the share of the most-used strategy in the trajectory.

    Discourages the planner from collapsing onto one strategy (the over-use the paper reports).

    >>> strategy_penalty_reward(["", ""], [["deep-think", "deep-think", "terminate"], ["understand", "terminate"]])
    [-0.6666666666666666, -0.5]
    """
    out: list[float | None] = []
    for used in strategies:
        out.append(None if not used else -Counter(used).most_common(1)[0][1] / len(used))
    return out


def terminal_reward(
    completions, strategies, forced=None, stop_reason=None, repeat_score: float = -1.0, terminal_id: str = "terminate", **kwargs
) -> list[float | None]:
    """R_terminal: +1 if the last strategy is the terminating one, -1 otherwise.

    Our reading (the paper is silent on budgets): a `terminate` that the graph injected because a budget
    ran out (`forced`) was not the planner's choice, so it scores -1. A run that the graph ended because
    the reasoner repeated a step verbatim (`stop_reason == "repeat"`, our rule, not the paper's) scores
    `repeat_score`: -1 by default, like any forced end. A reasoner that repeats itself on most runs (as
    SmolLM2-135M does) would otherwise teach the planner to terminate at once, whatever that costs in
    accuracy (measured: docs/real-llm.md), so its recipe scores such runs 0.

    >>> terminal_reward(["", "", ""], [["deep-think", "terminate"], ["deep-think", "terminate"], ["validate"]],
    ...                 forced=[[False, False], [False, True], [False]])
    [1.0, -1.0, -1.0]
    >>> terminal_reward(["", ""], [["deep-think", "terminate"]] * 2, forced=[[False, True]] * 2,
    ...                 stop_reason=["repeat", "max_steps"], repeat_score=0.0)
    [0.0, -1.0]
    """
    forced = forced or [[False] * len(s) for s in strategies]
    stop_reason = stop_reason or [None] * len(strategies)
    return [
        1.0 if used and used[-1] == terminal_id and not f[-1] else repeat_score if why == "repeat" else -1.0
        for used, f, why in zip(strategies, forced, stop_reason, strict=True)
    ]


def format_reward(completions, step_texts=None, **kwargs) -> list[float | None]:
    """R_format: 1.0 when every step is non-empty and the last step states the final answer as the grader
    extracts it (`\\boxed{}`, `#### N` or "The answer is N"), with at most one `\\boxed{}` in the trajectory.

    Our definition (the paper gives the reward, not its checks). "The answer is N" counts because chat models
    such as SmolLM2-135M-Instruct end that way and never box; without it their warm-up finds no sample.

    >>> format_reward(["", ""], step_texts=[["12*3 = 36", "\\\\boxed{36}"], ["\\\\boxed{1}", ""]])
    [1.0, 0.0]
    """
    texts = step_texts or [[_text(c)] for c in completions]
    out: list[float | None] = []
    for steps in texts:
        ok = bool(steps) and all(t.strip() for t in steps)
        ok = ok and extract_answer(steps[-1]) is not None and sum(t.count("\\boxed") for t in steps) <= 1
        out.append(float(ok))
    return out


def make_follow_reward(library: StrategyLibrary | None = None) -> RewardFunc:
    """R_follow for a library: the share of steps that carry out their injected strategy.

    A step carries out strategy `s` when its text matches `s.follow`, the regex each strategy declares
    in the library (see `strategies.yaml`); that per-strategy check is our definition.
    """
    library = library or StrategyLibrary.default()

    def follow_reward(completions, strategies, step_texts, **kwargs) -> list[float | None]:
        out: list[float | None] = []
        for used, texts in zip(strategies, step_texts, strict=True):
            if not used:
                out.append(None)
                continue
            hits = sum(library.get(s).followed_by(t) for s, t in zip(used, texts, strict=True) if s in library)
            out.append(hits / len(used))
        return out

    return follow_reward


follow_reward = make_follow_reward()


def make_accuracy_reward(library: StrategyLibrary | None = None) -> RewardFunc:
    """R_acc for a library: `accuracy_reward` with the library's step delimiter joining the step texts."""
    delimiter = (library or StrategyLibrary.default()).step_delimiter

    def accuracy_reward_(completions, solution, **kwargs) -> list[float | None]:
        return accuracy_reward(completions, solution, step_delimiter=delimiter, **kwargs)

    accuracy_reward_.__name__ = "accuracy_reward"  # TRL logs rewards by function name
    return accuracy_reward_


def planner_reward_funcs(library: StrategyLibrary | None = None) -> list[RewardFunc]:
    """R_acc + R_penalty + R_terminal (summed with unit weights)."""
    return [make_accuracy_reward(library), strategy_penalty_reward, terminal_reward]


def reasoner_reward_funcs(library: StrategyLibrary | None = None) -> list[RewardFunc]:
    """R_acc + R_format + R_follow (summed with unit weights)."""
    return [make_accuracy_reward(library), format_reward, make_follow_reward(library)]
