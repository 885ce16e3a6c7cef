"""The rSIM graph: plan → inject → reason → check, looping until the terminating strategy has run.

The same compiled graph answers users, streams to the server and generates the trainer's rollouts.
Nodes are module-level functions `State -> partial update`; their collaborators (planner, reasoner,
library, limits) are bound with `functools.partial` in `build_graph`, so each node can be called alone.

Entry node `start` cleans the question and resets a finished run on a checkpointed thread; then each
step is plan → inject → reason → check.

The nodes write `rsim_graph.events` to LangGraph's custom stream (`graph.stream(..., stream_mode="custom")`):
`StrategyChosen` (inject), `StepWritten` (reason), `Finished` (check). `rsim_graph.runs` reads runs for
every consumer.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import partial
from typing import Literal

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Overwrite, StreamWriter

from rsim_graph.errors import InputError, PlannerError, ReasonerError
from rsim_graph.events import finished, step_written, strategy_chosen
from rsim_graph.scoring.grading import extract_answer
from rsim_graph.messages import report_step
from rsim_graph.planners.base import Planner
from rsim_graph.reasoners.base import Reasoner, StepRequest
from rsim_graph.safety import clean_user_text
from rsim_graph.state import RSIMState, Step, usage, written_tokens
from rsim_graph.strategies import INJECTIONS, STEP_PROTOCOL, StrategyLibrary

NODES_PER_STEP = 4


@dataclass(frozen=True)
class Limits:
    """Budgets that make every trajectory end.

    Args:
        max_steps (`int`): steps per trajectory, the final (terminating) one included.
        max_step_tokens (`int`): reasoner tokens per step.
        max_total_tokens (`int`): reasoner tokens (generated and injected) per trajectory.
    """

    max_steps: int = 12
    max_step_tokens: int = 256
    max_total_tokens: int = 2048

    def __post_init__(self):
        if self.max_steps < 1:
            raise InputError(f"max_steps must be at least 1 (got {self.max_steps}): the answer itself is a step")
        if self.max_step_tokens < 1:
            raise InputError(f"max_step_tokens must be at least 1 (got {self.max_step_tokens})")
        if self.max_total_tokens < self.max_step_tokens:
            raise InputError(
                f"max_total_tokens ({self.max_total_tokens}) is below max_step_tokens ({self.max_step_tokens}); "
                "raise max_total_tokens so at least one full step fits"
            )


def step_tokens(step: Step) -> int:
    """Tokens the reasoner wrote in `step`; text-only backends that report no usage are estimated at 4
    characters a token."""
    n = written_tokens(step)
    return n if n is not None else len(step["text"]) // 4 + 1


def tokens_used(steps: list[Step]) -> int:
    """Tokens the reasoner has written (the budgets count these; injected prompts are counted apart, in `usage`)."""
    return sum(step_tokens(s) for s in steps)


def repeats(steps: list[Step]) -> bool:
    """Whether the last step repeats an earlier one verbatim (whitespace aside). Such a run is looping: it is
    ended with a forced terminating step. Sampling is untouched, so the trainer's log-probabilities stay exact.

    >>> repeats([{"text": "Chen has 42."}, {"text": "x"}, {"text": " Chen  has 42. "}]), repeats([{"text": ""}, {"text": ""}])
    (True, False)
    """
    if len(steps) < 2:
        return False
    last = " ".join(steps[-1]["text"].split())
    return bool(last) and any(" ".join(s["text"].split()) == last for s in steps[:-1])


def effective_limits(state: RSIMState, limits: Limits) -> Limits:
    """The graph's limits, tightened by the run's own `budget` (a client's `max_tokens`, `max_steps`)."""
    budget = state.get("budget") or {}
    total = min(limits.max_total_tokens, budget.get("max_total_tokens") or limits.max_total_tokens)
    return Limits(min(limits.max_steps, budget.get("max_steps") or limits.max_steps), min(limits.max_step_tokens, total), total)


# The answer step keeps at least this many tokens when the budget has them (a boxed answer with a short
# sentence); with a roomy budget it keeps a quarter of it, up to a whole step.
ANSWER_TOKENS = 64
# A reasoning step shorter than this would be cut mid-sentence: the answer is forced instead.
MIN_STEP_TOKENS = 16


def answer_reserve(limits: Limits) -> int:
    """Tokens kept back for the answer step: `min(max_step_tokens, max(64, max_total_tokens // 4))`.

    >>> answer_reserve(Limits(12, 256, 2048)), answer_reserve(Limits(12, 256, 256)), answer_reserve(Limits(12, 48, 256))
    (256, 64, 48)
    """
    return min(limits.max_step_tokens, max(ANSWER_TOKENS, limits.max_total_tokens // 4))


def step_budget(steps: list[Step], limits: Limits, *, answer: bool) -> int:
    """The next step's token budget. A reasoning step gets what is left after the answer's reserve (so a small
    budget makes steps shorter, it does not skip them); the answer step gets everything left."""
    left = limits.max_total_tokens - tokens_used(steps)
    if answer:
        return max(1, min(limits.max_step_tokens, left))
    return min(limits.max_step_tokens, left - answer_reserve(limits))


def clean_text(text: str, library: StrategyLibrary) -> str:
    """User text without the library's strategy prompts or chat control tokens (`safety.clean_user_text`). The
    bare prompts are reserved, not their rendered form: "...<prompt>" without its newline would get one
    from `planner_text`."""
    return clean_user_text(text, [library.get(sid).prompt for sid in library.ids])


def start(state: RSIMState, *, library: StrategyLibrary) -> dict:
    """A new trajectory: clean the user's text, and clear a finished run left in a checkpointed thread."""
    question = clean_text(state.get("question") or "", library)
    if not question.strip():
        raise InputError("the question is empty once strategy prompts and control tokens are removed: pass the problem to solve")
    # A thread's earlier question, finished or cut off mid-way (a cancelled run), never continues into this one.
    earlier = bool(state.get("steps")) or state.get("answer") is not None
    update: dict = {
        "trajectory_id": uuid.uuid4().hex if earlier else state.get("trajectory_id") or uuid.uuid4().hex,
        "question": question,
    }
    if state.get("history"):
        update["history"] = [{**t, "content": clean_text(t.get("content") or "", library)} for t in state["history"]]
    if earlier:
        update.update(steps=Overwrite([]), pending=None, answer=None, stop_reason=None, question_ids=None, usage=None)
    return update


def plan(state: RSIMState, *, planner: Planner, library: StrategyLibrary, limits: Limits) -> dict:
    """Pick the next strategy, or force the terminating one when a budget runs out."""
    steps = state.get("steps", [])
    limits = effective_limits(state, limits)
    forced_by = None
    if len(steps) >= limits.max_steps - 1:
        forced_by = "max_steps"
    elif step_budget(steps, limits, answer=False) < min(MIN_STEP_TOKENS, limits.max_step_tokens):
        forced_by = "max_total_tokens"  # what is left belongs to the answer
    elif repeats(steps):
        forced_by = "repeat"
    if forced_by:
        pending = Step(strategy=library.terminal_id, forced=True, planner_logprob=None, planner_probs=None)
        return {"pending": pending, "stop_reason": forced_by}
    choice = planner.choose(state, library)
    if choice.strategy not in library:
        raise PlannerError(
            f"the planner chose {choice.strategy!r}, which is not in the strategy library ({', '.join(library.ids)}); "
            "load the library the planner was trained with, or grow its head with planner.grow(library)"
        )
    pending = Step(strategy=choice.strategy, forced=False, planner_logprob=choice.logprob, planner_probs=choice.probs)
    return {"pending": pending}


def inject(state: RSIMState, writer: StreamWriter, *, library: StrategyLibrary, injection: str = "prefill") -> dict:
    """Render the chosen strategy's prompt: the text the reasoner's next step starts from."""
    pending = state["pending"]
    writer(strategy_chosen(len(state.get("steps", [])), pending))
    injected = library.render(pending["strategy"], injection=injection, step=len(state.get("steps", [])))
    return {"pending": {**pending, "injected": injected}}


def protocol_history(history: list | None, injection: str) -> list | None:
    """The run's chat history, with the step protocol as its system message under `injection="system"` (a
    caller's own system message is kept, and the protocol follows it)."""
    if injection != "system":
        return history
    history = list(history or [])
    if history and history[0].get("role") == "system":
        return [{"role": "system", "content": history[0]["content"] + "\n\n" + STEP_PROTOCOL}, *history[1:]]
    return [{"role": "system", "content": STEP_PROTOCOL}, *history]


def reason(
    state: RSIMState, writer: StreamWriter, config: RunnableConfig, *, reasoner: Reasoner, library: StrategyLibrary, limits: Limits,
    injection: str = "prefill",
) -> dict:
    """Let the reasoner write one step after the injected strategy text, and report it to chat-model listeners
    (`stream_mode="messages"`, `astream_events`: `rsim_graph.messages`)."""
    steps = state.get("steps", [])
    pending = state["pending"]
    limits = effective_limits(state, limits)
    answer = pending["strategy"] == library.terminal_id
    budget = max(1, step_budget(steps, limits, answer=answer))
    sampling = state.get("sampling") or {}
    out = reasoner.step(
        StepRequest(
            question=state["question"],
            steps=steps,
            strategy=pending["strategy"],
            injected=pending["injected"],
            max_new_tokens=budget,
            delimiter=library.step_delimiter,
            trajectory_id=state.get("trajectory_id", ""),
            question_ids=state.get("question_ids"),
            history=protocol_history(state.get("history"), injection),
            temperature=sampling.get("temperature"),
            top_p=sampling.get("top_p"),
            seed=sampling.get("seed"),
            stop_at_delimiter=not answer,
        )
    )
    if not out.text.strip() and not out.completion_ids:
        raise ReasonerError(
            f"the reasoner returned nothing for step {len(steps)} ({pending['strategy']}); "
            "check that the model or server is working and that max_step_tokens is not tiny"
        )
    upstream = out.meta.get("usage") or {}
    step = Step(
        **pending, text=out.text, prompt_ids=out.prompt_ids, completion_ids=out.completion_ids, logprobs=out.logprobs,
        written_tokens=upstream.get("output_tokens"),
    )
    # The step ran into its budget: its text may stop mid-way (for the answer step, OpenAI's finish_reason "length").
    step["cut"] = out.meta["finish_reason"] == "length" if out.meta.get("finish_reason") else step_tokens(step) >= budget
    report_step(config, state["question"], step, len(steps), getattr(reasoner, "tokenizer", None))
    writer(step_written(len(steps), step, usage({**state, "steps": [*steps, step], "question_ids": state.get("question_ids") or out.question_ids})))
    update: dict = {"steps": [step], "pending": None}
    if out.question_ids is not None and state.get("question_ids") is None:
        update["question_ids"] = out.question_ids
    return update


def check(state: RSIMState, writer: StreamWriter, *, reasoner: Reasoner, library: StrategyLibrary, planner: Planner | None = None) -> dict:
    """After a terminating step: extract the answer, record why the run stopped, free the agents' caches."""
    last = state["steps"][-1]
    if last["strategy"] != library.terminal_id:
        return {}
    text = last["text"]
    answer = extract_answer(text)
    if answer is None:  # always yield an answer: the terminating step's own text
        answer = text.strip()
    stop_reason = state.get("stop_reason") or "terminate"
    if state.get("trajectory_id"):
        release(state["trajectory_id"], reasoner, planner)
    spent = usage(state)
    writer(finished(answer, stop_reason, spent, cut=bool(last.get("cut"))))
    return {"answer": answer, "stop_reason": stop_reason, "usage": spent}


def release(trajectory_id: str, reasoner: Reasoner, planner: Planner | None) -> None:
    """Free what both agents keep for a trajectory (the reasoner's and a learned planner's prefix caches); at the
    run's end, or when its consumer leaves mid-way (`runs.graph_events`)."""
    reasoner.release(trajectory_id)
    if planner is not None:
        planner.release(trajectory_id)


def route(state: RSIMState) -> Literal["plan", "__end__"]:
    return END if state.get("stop_reason") and state.get("answer") is not None else "plan"


def build_graph(
    planner: Planner,
    reasoner: Reasoner,
    strategies: StrategyLibrary | None = None,
    *,
    max_steps: int = 12,
    max_step_tokens: int = 256,
    max_total_tokens: int = 2048,
    checkpointer: BaseCheckpointSaver | None = None,
    injection: str = "prefill",
) -> CompiledStateGraph:
    """Compile the rSIM graph.

    Args:
        planner (`Planner`): picks each step's strategy.
        reasoner (`Reasoner`): writes each step.
        strategies (`StrategyLibrary`, *optional*): defaults to the nine default strategies.
        max_steps, max_step_tokens, max_total_tokens: see `Limits`.
        injection (`str`, *optional*, defaults to `"prefill"`): how the reasoner sees a strategy, one of
            `rsim_graph.strategies.INJECTIONS`.
        checkpointer (`BaseCheckpointSaver`, *optional*): persist runs per `thread_id`; each new question on
            a thread starts a fresh trajectory (the earlier ones stay in the thread's history).

    Returns:
        A `CompiledStateGraph` whose recursion limit is set from `max_steps`. Invoke it with `{"question": ...}`.
        For many questions use `run_batch`: a bare `graph.batch` resets the recursion limit to LangChain's 25.
    """
    library = strategies or StrategyLibrary.default()
    limits = Limits(max_steps, max_step_tokens, max_total_tokens)
    if not isinstance(planner, Planner):
        raise InputError(
            f"{type(planner).__name__} is not a planner: it needs choose(state, library) and release(trajectory_id); "
            "subclass rsim_graph.Planner to inherit a release that does nothing"
        )
    if injection not in INJECTIONS:
        raise InputError(f"unknown injection {injection!r}; choose from {', '.join(INJECTIONS)}")
    g = StateGraph(RSIMState)
    g.add_node("start", partial(start, library=library))
    g.add_node("plan", partial(plan, planner=planner, library=library, limits=limits))
    g.add_node("inject", partial(inject, library=library, injection=injection))
    g.add_node("reason", partial(reason, reasoner=reasoner, library=library, limits=limits, injection=injection))
    g.add_node("check", partial(check, reasoner=reasoner, library=library, planner=planner))
    g.add_edge(START, "start")
    g.add_edge("start", "plan")
    g.add_edge("plan", "inject")
    g.add_edge("inject", "reason")
    g.add_edge("reason", "check")
    g.add_conditional_edges("check", route, {"plan": "plan", END: END})
    # Each step visits 4 nodes, plus `start` and one spare super-step, so the limit can never cut a trajectory short.
    return g.compile(name="rsim", checkpointer=checkpointer).with_config(recursion_limit=NODES_PER_STEP * max_steps + 2)


def run_batch(
    graph: CompiledStateGraph, questions: list[str], *, n: int = 1, return_exceptions: bool = False, extra: dict | None = None
) -> list:
    """Run `n` trajectories per question concurrently (question-major order), so their model calls batch.
    `extra` adds state keys to every input (e.g. `history`, `budget`).

    LangChain's default thread pool is tiny (cpu + 4 workers); here every trajectory gets a thread,
    because they spend their time waiting on the shared micro-batched backends.
    """
    inputs = [{**(extra or {}), "question": q} for q in questions for _ in range(n)]
    if not inputs:
        return []
    # `Runnable.batch` fills in LangChain's default recursion limit (25), which overrides the one
    # bound by `build_graph`; pass the bound one explicitly.
    config = {"max_concurrency": len(inputs), "recursion_limit": graph.config["recursion_limit"]}
    return graph.batch(inputs, config=config, return_exceptions=return_exceptions)
