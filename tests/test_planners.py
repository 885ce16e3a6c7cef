import pytest
import torch
from conftest import ScriptedReasoner
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from rsim_graph.errors import CheckpointError
from rsim_graph.graph import build_graph, run_batch
from rsim_graph.planners.policy import PolicyPlanner
from rsim_graph.planners.prompt import PromptPlanner, parse_strategy
from rsim_graph.planners.simple import RandomPlanner, ScriptedPlanner
from rsim_graph.strategies import Strategy


def test_policy_planner_choices_carry_logprob_and_distribution(tiny_backbone, tokenizer, library):
    planner = PolicyPlanner(tiny_backbone, tokenizer, library, seed=0)
    outs = run_batch(build_graph(planner, ScriptedReasoner(), max_steps=4), ["a", "b", "c"], n=2)
    for out in outs:
        for s in out["steps"]:
            if not s["forced"]:
                assert len(s["planner_probs"]) == 9 and sum(s["planner_probs"]) == pytest.approx(1.0, abs=1e-5)
                assert s["planner_logprob"] == pytest.approx(torch.tensor(s["planner_probs"][library.index(s["strategy"])]).log().item(), abs=1e-5)
    assert max(planner.batcher.batch_sizes) > 1


def test_greedy_planner_is_deterministic(tiny_backbone, tokenizer, library):
    planner = PolicyPlanner(tiny_backbone, tokenizer, library, greedy=True)
    state = {"question": "What is 2+2?", "steps": []}
    picks = {planner.choose(state, library).strategy for _ in range(3)}
    assert len(picks) == 1


def test_save_and_load_round_trip(tmp_path, tiny_backbone, tokenizer, library):
    planner = PolicyPlanner(tiny_backbone, tokenizer, library)
    planner.save_pretrained(tmp_path / "p")
    loaded = PolicyPlanner.from_pretrained(tmp_path / "p")
    state = {"question": "q", "steps": []}
    assert torch.allclose(planner.log_probs([state]), loaded.log_probs([state]), atol=1e-6)
    assert loaded.library.ids == library.ids


def test_grow_keeps_learned_rows(tiny_backbone, tokenizer, library):
    planner = PolicyPlanner(tiny_backbone, tokenizer, library)
    old = planner.head.weight.detach().clone()
    planner.grow(library.extend([Strategy("estimate", "Estimate", "Estimate.")]))
    assert planner.head.weight.shape[0] == 10
    assert torch.equal(planner.head.weight[:9], old)
    assert planner.log_probs([{"question": "q", "steps": []}]).shape == (1, 10)


def test_planner_refuses_a_different_library(tiny_backbone, tokenizer, library):
    planner = PolicyPlanner(tiny_backbone, tokenizer, library)
    bigger = library.extend([Strategy("estimate", "Estimate", "Estimate.")])
    with pytest.raises(CheckpointError, match="planner.grow"):
        planner.choose({"question": "q", "steps": []}, bigger)


def test_missing_and_corrupt_checkpoints(tmp_path, tiny_backbone, tokenizer, library):
    with pytest.raises(CheckpointError, match="not a planner checkpoint"):
        PolicyPlanner.from_pretrained(tmp_path)
    PolicyPlanner(tiny_backbone, tokenizer, library).save_pretrained(tmp_path / "p")
    (tmp_path / "p" / "head.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="is corrupt"):
        PolicyPlanner.from_pretrained(tmp_path / "p")


def test_prompt_planner_parses_and_counts_fallbacks(library):
    model = GenericFakeChatModel(messages=iter([AIMessage("Let's VALIDATE it."), AIMessage("hmm?"), AIMessage("terminate")]))
    planner = PromptPlanner(model)
    out = build_graph(planner, ScriptedReasoner()).invoke({"question": "q"})
    assert [s["strategy"] for s in out["steps"]] == ["validate", "deep-think", "terminate"]
    assert planner.fallbacks == 1 and planner.calls == 3
    assert parse_strategy("self-reflect, then validate", library) == "self-reflect"
    assert parse_strategy("Sub-plan", library) == "sub-plan"
    assert parse_strategy("nothing", library) is None


def test_random_and_scripted_planners(library):
    picks = {RandomPlanner(0).choose({"question": "q", "steps": []}, library).strategy for _ in range(1)}
    assert picks <= set(library.ids)
    ps = ScriptedPlanner.plan_and_solve(2)
    seq = [ps.choose({"question": "q", "steps": [{}] * i}, library).strategy for i in range(5)]
    assert seq == ["understand", "sub-plan", "deep-think", "deep-think", "terminate"]


def test_heuristic_planner_follows_the_world_rules(library):
    from rsim_graph.planners.heuristic import HeuristicPlanner

    q = "Compute ((23+45)*3)-17."
    r = ScriptedReasoner(texts={"validate": "Check s1: 68-45=23 fails."})
    plain = build_graph(HeuristicPlanner(), r).invoke({"question": q})
    assert [s["strategy"] for s in plain["steps"]] == ["understand"] + ["deep-think"] * 3 + ["terminate"]
    checked = build_graph(HeuristicPlanner(check=True), r, max_steps=20).invoke({"question": q})
    assert [s["strategy"] for s in checked["steps"]][:5] == ["understand", "deep-think", "validate", "self-reflect", "deep-think"]
    other = build_graph(HeuristicPlanner(), r).invoke({"question": "What is the capital of France?"})
    assert [s["strategy"] for s in other["steps"]][:2] == ["understand", "sub-plan"]  # falls back to PS+


def test_random_planner_is_reproducible_per_run_seed(library):
    from rsim_graph.planners.simple import RandomPlanner

    state = {"question": "What is 2+3?", "steps": [], "sampling": {"seed": 3}}
    picks = [RandomPlanner().choose(state, library).strategy for _ in range(5)]
    assert len(set(picks)) == 1  # any instance, any order: the same draw for the same run seed and step
    others = {RandomPlanner().choose({**state, "sampling": {"seed": s}}, library).strategy for s in range(40)}
    assert len(others) > 3  # but it is still a uniform draw across seeds


def _grow(question: str, n: int, length: int = 30) -> list[dict]:
    """States of one trajectory after 0..n steps."""
    steps = [{"strategy": "deep-think", "text": f"step {i}: " + "x+y=z " * (length // 6)} for i in range(n)]
    return [{"question": question, "steps": steps[:k], "trajectory_id": "t-" + question} for k in range(n + 1)]


@pytest.mark.parametrize("max_length", [512, 60])  # 60: the texts are cut, and only the question is reused
def test_incremental_choices_match_a_full_read(tiny_backbone, tokenizer, library, max_length):
    planner = PolicyPlanner(tiny_backbone, tokenizer, library, max_length=max_length).eval()
    fed = []
    real = planner.backbone.forward

    def counting(*args, **kwargs):
        fed.append(kwargs["input_ids"].shape[1])
        return real(*args, **kwargs)

    planner.backbone.forward = counting
    trajectories = [_grow("What is 2+2?", 4), _grow("Compute 17*3 then add 9.", 4, length=12)]
    for k in range(5):  # both trajectories choose together, step by step, as concurrent runs do
        states = [t[k] for t in trajectories]
        cached = planner.choice_log_probs(states)
        with torch.no_grad():
            full = planner.log_probs(states)
        assert cached.shape == (2, len(library))
        assert torch.allclose(cached, full, atol=1e-5), (k, (cached - full).abs().max())
    cached_reads, full_reads = fed[0::2], fed[1::2]
    if max_length == 512:  # after the first choice only the new step is fed: constant work while a full read grows
        assert len(set(cached_reads[1:])) == 1 and cached_reads[1] < full_reads[1], (cached_reads, full_reads)
        assert full_reads[-1] > 3 * cached_reads[-1]
    assert planner.cache.keys() == {"t-What is 2+2?", "t-Compute 17*3 then add 9."}
    planner.release("t-What is 2+2?")
    assert planner.cache.keys() == {"t-Compute 17*3 then add 9."}


def test_a_run_releases_the_planner_cache_and_matches_an_uncached_planner(tiny_backbone, tokenizer, library):
    cached = PolicyPlanner(tiny_backbone, tokenizer, library, greedy=True).eval()
    plain = PolicyPlanner(tiny_backbone, tokenizer, library, greedy=True, max_cached=0).eval()
    with torch.no_grad():
        cached.head.bias[library.index("terminate")] = -5.0  # runs of several steps, ended by the step limit
    plain.head.load_state_dict(cached.head.state_dict())
    runs = [run_batch(build_graph(p, ScriptedReasoner(), max_steps=6), ["a", "b", "c"]) for p in (cached, plain)]
    for a, b in zip(*runs, strict=True):
        assert [s["strategy"] for s in a["steps"]] == [s["strategy"] for s in b["steps"]]
        for sa, sb in zip(a["steps"], b["steps"], strict=True):
            if not sa["forced"]:
                assert sa["planner_logprob"] == pytest.approx(sb["planner_logprob"], abs=1e-5)
    assert any(len(out["steps"]) > 1 for out in runs[0])
    assert len(cached.cache) == 0 and len(plain.cache) == 0  # finished runs free their caches; max_cached=0 keeps none
