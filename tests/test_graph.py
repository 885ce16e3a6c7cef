import re
from pathlib import Path

import pytest
from conftest import ScriptedReasoner
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from rsim_graph.errors import InputError, PlannerError, ReasonerError
from rsim_graph.events import Finished, StepWritten, StrategyChosen
from rsim_graph.graph import NODES_PER_STEP, build_graph, run_batch
from rsim_graph.planners.base import Planner, PlannerChoice
from rsim_graph.planners.simple import RandomPlanner, ScriptedPlanner
from rsim_graph.reasoners.base import StepOutput
from rsim_graph.runs import graph_events
from rsim_graph.state import build_completion, completion_text
from rsim_graph.strategies import Strategy


def test_planner_terminate_ends_with_the_answer():
    r = ScriptedReasoner(answer="7")
    g = build_graph(ScriptedPlanner(["understand", "deep-think"]), r, max_steps=10)
    out = g.invoke({"question": "what?"})
    assert [s["strategy"] for s in out["steps"]] == ["understand", "deep-think", "terminate"]
    assert out["answer"] == "7" and out["stop_reason"] == "terminate"
    assert out["steps"][-1]["forced"] is False
    assert out["usage"] == {"prompt_tokens": 3, "injected_tokens": 3, "reasoner_tokens": 15, "steps": 3}
    assert r.released == [out["trajectory_id"]]


def test_max_steps_forces_terminate_and_records_why():
    g = build_graph(ScriptedPlanner(["deep-think"] * 100), ScriptedReasoner(), max_steps=4)
    out = g.invoke({"question": "q"})
    assert len(out["steps"]) == 4
    assert out["steps"][-1]["strategy"] == "terminate" and out["steps"][-1]["forced"] is True
    assert out["steps"][-1]["planner_logprob"] is None
    assert out["stop_reason"] == "max_steps" and out["answer"] == "42"


def test_token_budget_forces_terminate():
    # The budget counts the 10 tokens each step writes, not the injected prompt: after 3 steps (30 written) a
    # fourth full step would leave the answer step nothing of the 40.
    g = build_graph(ScriptedPlanner(["deep-think"] * 100), ScriptedReasoner(tokens_per_step=10), max_steps=50, max_step_tokens=10, max_total_tokens=40)
    out = g.invoke({"question": "q"})
    assert out["stop_reason"] == "max_total_tokens"
    assert [s["strategy"] for s in out["steps"]] == ["deep-think"] * 3 + ["terminate"]
    assert len(out["steps"][-1]["completion_ids"]) == 10  # the answer step gets what is left
    assert out["usage"]["reasoner_tokens"] == 40 and out["usage"]["injected_tokens"] == 4  # counted apart


@pytest.mark.parametrize(("cap", "spent"), [(1, 1), (7, 7), (15, 10), (36, 30)])
def test_a_runs_token_budget_is_a_cap_even_below_one_step(cap, spent):
    g = build_graph(ScriptedPlanner(["deep-think"] * 100), ScriptedReasoner(tokens_per_step=10), max_step_tokens=10, max_total_tokens=400)
    out = g.invoke({"question": "q", "budget": {"max_total_tokens": cap}})
    assert out["usage"]["reasoner_tokens"] == spent
    assert out["stop_reason"] == "max_total_tokens" and out["steps"][-1]["strategy"] == "terminate"
    # 15: a reasoning step would leave the answer 5 of its 10; 36: two steps, a third would leave it 6
    assert len(out["steps"]) == {1: 1, 7: 1, 15: 1, 36: 3}[cap]
    assert out["steps"][-1]["cut"] == (cap < 10)  # the answer itself ran out of tokens only below one step


def test_a_small_budget_shortens_steps_instead_of_skipping_them():
    # A client's max_tokens of 200 with 100-token steps: each reasoning step gets what is left after the answer's
    # reserve of 64, so the run reasons (shorter) instead of being forced to answer at once.
    r = ScriptedReasoner(tokens_per_step=60)
    g = build_graph(ScriptedPlanner(["deep-think"] * 100), r, max_step_tokens=100, max_total_tokens=2048)
    out = g.invoke({"question": "q", "budget": {"max_total_tokens": 200}})
    # min(100, 200-64); 200-60-64; 200-120-64 (a short step, cut); the answer: what is left
    assert [q.max_new_tokens for q in r.requests] == [100, 76, 16, 64]
    assert [s["strategy"] for s in out["steps"]] == ["deep-think"] * 3 + ["terminate"]
    assert [s["cut"] for s in out["steps"]] == [False, False, True, False]
    assert out["usage"]["reasoner_tokens"] == 60 + 60 + 16 + 60 <= 200


def test_recursion_limit_comes_from_max_steps():
    g = build_graph(RandomPlanner(0), ScriptedReasoner(), max_steps=7)
    assert g.config["recursion_limit"] == NODES_PER_STEP * 7 + 2  # start, and one spare
    for seed in range(20):  # a random planner never hits the limit: budgets end every run first
        out = build_graph(RandomPlanner(seed), ScriptedReasoner(), max_steps=3).invoke({"question": "q"})
        assert len(out["steps"]) <= 3 and out["answer"] == "42"


def test_run_batch_keeps_the_recursion_limit_for_long_runs():
    g = build_graph(ScriptedPlanner(["deep-think"] * 100), ScriptedReasoner(), max_steps=12)
    outs = run_batch(g, ["a", "b"], n=2)
    assert [len(o["steps"]) for o in outs] == [12] * 4
    assert all(o["stop_reason"] == "max_steps" for o in outs)


def test_the_custom_stream_and_runs_emit_the_same_events():
    g = build_graph(ScriptedPlanner(["decompose"]), ScriptedReasoner(texts={"decompose": "parts: a, b"}))
    events = list(g.stream({"question": "q"}, stream_mode="custom"))
    assert [type(e) for e in events] == [StrategyChosen, StepWritten, StrategyChosen, StepWritten, Finished]
    assert [e.strategy for e in events[:4]] == ["decompose", "decompose", "terminate", "terminate"]
    assert events[1].text == "parts: a, b" and events[-1].stop_reason == "terminate" and not events[-1].length
    assert events[-1].completion_tokens > 0
    assert list(graph_events(g, {"question": "q"}, ScriptedReasoner())) == events  # one vocabulary, from either stream


def test_custom_ten_strategy_library_runs(library):
    big = library.extend([Strategy("estimate", "Estimate", "Estimate: guess the size.")])
    r = ScriptedReasoner(texts={"estimate": "about 40"})
    out = build_graph(ScriptedPlanner(["estimate"]), r, big).invoke({"question": "q"})
    assert [s["strategy"] for s in out["steps"]] == ["estimate", "terminate"]
    assert r.requests[0].injected == "Estimate: guess the size.\n"


def test_empty_question_is_refused():
    with pytest.raises(InputError, match="question is empty"):
        build_graph(RandomPlanner(0), ScriptedReasoner()).invoke({"question": "  "})


def test_planner_id_outside_library_is_refused():
    class Bad(Planner):
        def choose(self, state, library):
            return PlannerChoice("guess")

    with pytest.raises(PlannerError, match="chose 'guess', which is not in the strategy library"):
        build_graph(Bad(), ScriptedReasoner()).invoke({"question": "q"})


def test_an_object_without_the_planner_protocol_is_refused_in_one_line():
    class ChooseOnly:
        def choose(self, state, library):
            return PlannerChoice("terminate")

    with pytest.raises(InputError, match="ChooseOnly is not a planner: it needs choose.state, library. and release.trajectory_id.; subclass rsim_graph.Planner"):
        build_graph(ChooseOnly(), ScriptedReasoner())


def test_rule_based_planners_inherit_a_release_that_keeps_nothing():
    from rsim_graph.planners.heuristic import HeuristicPlanner

    for planner in (RandomPlanner(0), ScriptedPlanner([]), HeuristicPlanner()):
        assert isinstance(planner, Planner) and planner.release("t1") is None


def test_reasoner_returning_nothing_is_refused():
    class Mute(ScriptedReasoner):
        def step(self, request):
            return StepOutput(text="")

    with pytest.raises(ReasonerError, match="returned nothing for step 0"):
        build_graph(RandomPlanner(0), Mute()).invoke({"question": "q"})


def test_bad_limits_are_refused():
    with pytest.raises(InputError, match="max_steps must be at least 1"):
        build_graph(RandomPlanner(0), ScriptedReasoner(), max_steps=0)
    with pytest.raises(InputError, match="raise max_total_tokens"):
        build_graph(RandomPlanner(0), ScriptedReasoner(), max_step_tokens=100, max_total_tokens=50)


def test_completion_ids_and_mask_separate_injected_text():
    out = build_graph(ScriptedPlanner(["validate"]), ScriptedReasoner()).invoke({"question": "q"})
    ids, mask, lps = build_completion(out["steps"])
    assert ids == [7, 9, 9, 9, 9, 9] * 2
    assert mask == [0, 1, 1, 1, 1, 1] * 2
    assert lps == [0.0] + [-0.5] * 5 + [0.0] + [-0.5] * 5
    text = completion_text(out["steps"], "\n\n")
    assert text.startswith("Validate: check") and text.endswith("\\boxed{42}\n\n")


def test_run_batch_shares_forward_passes(hf_reasoner):
    g = build_graph(ScriptedPlanner(["deep-think"]), hf_reasoner, max_step_tokens=4, max_total_tokens=64)
    outs = run_batch(g, [f"{i}+1" for i in range(6)], n=2)
    assert len(outs) == 12 and all(o["stop_reason"] == "terminate" for o in outs)
    sizes = hf_reasoner.batcher.batch_sizes
    tokens = sum(o["usage"]["reasoner_tokens"] for o in outs)
    if hf_reasoner.continuous:  # rows per decode step: every token but each row's first (the prefill's) is one row of a step
        assert sum(sizes) == tokens - 24 and max(sizes) > 1 and len(sizes) < tokens / 2
    else:  # requests per batched call
        assert sum(sizes) == 24  # 12 trajectories x 2 steps
        assert max(sizes) > 1 and len(sizes) < 12  # trajectories were decoded together


def test_graph_works_as_a_subgraph_node():
    class Outer(TypedDict, total=False):
        question: str
        answer: str

    rsim = build_graph(ScriptedPlanner([]), ScriptedReasoner(answer="5"))
    g = StateGraph(Outer)
    g.add_node("rsim", rsim)
    g.add_edge(START, "rsim")
    g.add_edge("rsim", END)
    assert g.compile().invoke({"question": "q"})["answer"] == "5"


def test_mermaid_drawing_is_exact_and_the_readme_shows_it():
    drawings = {
        build_graph(RandomPlanner(0), ScriptedReasoner(), **options).get_graph().draw_mermaid()
        for options in ({}, {"injection": "system", "max_steps": 3}, {"checkpointer": InMemorySaver()})
    }
    assert len(drawings) == 1  # options change no node or edge
    drawing = drawings.pop()
    edges = ["__start__ --> start;", "start --> plan;", "plan --> inject;", "inject --> reason;", "reason --> check;", "check -.-> plan;", "check -.-> __end__;"]
    assert all(edge in drawing for edge in edges)
    assert drawing.count("-->") + drawing.count("-.->") == len(edges)
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    shown = re.search(r"```mermaid\n(.*?)```", readme, re.S)
    assert shown and shown.group(1).strip() == drawing.strip(), "README's graph drawing is stale: paste draw_mermaid()'s output"


def test_a_verbatim_repeat_ends_the_run():
    class Looping:
        def step(self, request):
            return StepOutput(text="\\boxed{7}" if request.strategy == "terminate" else "Chen now has 42 apples.")

        def complete(self, question, max_new_tokens, **options):
            raise NotImplementedError

        def release(self, trajectory_id):
            pass

    out = build_graph(ScriptedPlanner(["deep-think"] * 20), Looping(), max_steps=12).invoke({"question": "q"})
    assert [s["strategy"] for s in out["steps"]] == ["deep-think", "deep-think", "terminate"]
    assert out["stop_reason"] == "repeat" and out["steps"][-1]["forced"]


def test_a_run_left_mid_way_frees_the_planners_cache_too():
    # A learned planner caches each trajectory's prefix; a stream the client drops must free it at once, or it
    # stays until the LRU pushes it out (about 0.2 MB a dropped stream with the bundled planner).
    class RecordingPlanner(ScriptedPlanner):
        released: list[str] = []

        def release(self, trajectory_id: str) -> None:
            self.released.append(trajectory_id)

    planner, reasoner = RecordingPlanner(["understand", "deep-think"]), ScriptedReasoner()
    g = build_graph(planner, reasoner)
    events = graph_events(g, {"question": "q"}, reasoner, planner=planner)
    next(e for e in events if isinstance(e, StepWritten))
    events.close()  # the client went away after the first step
    assert planner.released == reasoner.released and len(planner.released) == 1
