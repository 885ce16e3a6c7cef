import pytest
import torch

from rsim_graph.errors import CheckpointError
from rsim_graph.reasoners.base import StepRequest
from rsim_graph.reasoners.hf import HFReasoner, load_causal_lm


def request(library, i, steps=(), strategy="understand", max_new=6, tid=None):
    return StepRequest(
        question=f"What is {i}+{i}?", steps=list(steps), strategy=strategy, injected=library.render(strategy),
        max_new_tokens=max_new, delimiter="\n\n", trajectory_id=tid if tid is not None else f"t{i}",
    )


def as_step(req, out):
    return {"strategy": req.strategy, "injected": req.injected, "text": out.text, "prompt_ids": out.prompt_ids, "completion_ids": out.completion_ids}


def test_step_outputs_tokens_and_logprobs(hf_reasoner, library):
    outs = hf_reasoner.generate_batch([request(library, i, max_new=3 + i) for i in range(3)])
    for i, o in enumerate(outs):
        assert 1 <= len(o.completion_ids) <= 3 + i
        assert len(o.logprobs) == len(o.completion_ids) and all(lp <= 0 for lp in o.logprobs)
        assert o.prompt_ids == hf_reasoner.encode(library.render("understand"))
        assert o.question_ids == hf_reasoner.question_ids(f"What is {i}+{i}?")


def test_prefix_cache_reuse_matches_recomputation(hf_reasoner, library):
    first = [request(library, i) for i in range(3)]
    outs = hf_reasoner.generate_batch(first)
    assert set(hf_reasoner.cache.keys()) == {"t0", "t1", "t2"}
    second = [request(library, i, [as_step(first[i], outs[i])], "validate") for i in range(3)]
    cached = hf_reasoner.generate_batch(second)
    hf_reasoner.cache.clear()
    fresh = hf_reasoner.generate_batch(second)
    single = hf_reasoner.generate_batch(second[1:2])  # batching does not change a row's result
    for a, b in zip(cached, fresh, strict=True):
        assert a.completion_ids == b.completion_ids
        assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)) < 1e-4
    assert single[0].completion_ids == fresh[1].completion_ids


def test_stops_at_the_delimiter(tiny_lm, tokenizer, library):
    class Forced(HFReasoner):  # a model that always writes "a\n\n..." to check stopping
        def _sample(self, logits, rows):
            tok, lp = super()._sample(logits, rows)
            seq = [tokenizer.convert_tokens_to_ids(c) for c in "a\n\nzz"]
            n = self._calls = getattr(self, "_calls", -1) + 1
            tok[:] = seq[min(n, len(seq) - 1)]
            return tok, lp

    r = Forced(tiny_lm, tokenizer, temperature=0)
    out = r.generate_batch([request(library, 1, max_new=20)])[0]
    assert out.text == "a" and tokenizer.decode(out.completion_ids) == "a\n\n"


def test_release_drops_the_cache(hf_reasoner, library):
    hf_reasoner.generate_batch([request(library, 1)])
    hf_reasoner.release("t1")
    assert "t1" not in hf_reasoner.cache


def test_missing_model_path_names_the_path(tmp_path):
    with pytest.raises(CheckpointError, match=f"no model at {tmp_path / 'nope'}"):
        load_causal_lm(str(tmp_path / "nope"))


def test_corrupt_model_dir_is_one_line_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot load model"):
        load_causal_lm(str(tmp_path))


def test_loads_a_saved_model(tiny_lm_dir, library):
    r = HFReasoner.from_pretrained(str(tiny_lm_dir), temperature=0)
    assert r.generate_batch([request(library, 2)])[0].completion_ids


def test_complete_answers_with_nothing_injected(hf_reasoner):
    out = hf_reasoner.complete("What is 1+1?", 5)
    assert out.prompt_ids == [] and 1 <= len(out.completion_ids) <= 5
    assert len(hf_reasoner.cache) == 0  # no trajectory, nothing cached


def test_saved_tokenizer_round_trips_in_a_model_dir(tiny_lm_dir, tokenizer):
    # transformers picks a tokenizer class from the model type; ours must survive that.
    r = HFReasoner.from_pretrained(str(tiny_lm_dir))
    for text in ["a\n\nb", "Validate: check the latest result another way.\n12*3"]:
        assert r.tokenizer(text)["input_ids"] == tokenizer(text)["input_ids"]


def test_vllm_reasoner_without_vllm_says_how_to_install(monkeypatch):
    import builtins

    from rsim_graph.errors import ReasonerError
    from rsim_graph.reasoners.vllm import VLLMReasoner

    real_import = builtins.__import__

    def no_vllm(name, *args, **kwargs):
        if name == "vllm":
            raise ImportError("No module named 'vllm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_vllm)
    with pytest.raises(ReasonerError, match=r"pip install -e '\.\[vllm\]'"):
        VLLMReasoner("some/model")


def forced_writer(tiny_lm, tokenizer, text):
    """A reasoner whose model always writes `text` (then repeats its last character)."""

    class Forced(HFReasoner):
        def _sample(self, logits, rows):
            tok, lp = super()._sample(logits, rows)
            seq = [tokenizer.convert_tokens_to_ids(c) for c in text]
            n = self._calls = getattr(self, "_calls", -1) + 1
            tok[:] = seq[min(n, len(seq) - 1)]
            return tok, lp

    return Forced(tiny_lm, tokenizer, temperature=0)


def test_the_terminating_step_is_not_cut_at_the_delimiter(tiny_lm, tokenizer, library):
    r = forced_writer(tiny_lm, tokenizer, "a\n\nbb")
    req = request(library, 1, strategy="terminate", max_new=6)
    req.stop_at_delimiter = False
    out = r.generate_batch([req])[0]
    assert out.text == "a\n\nbbb" and len(out.completion_ids) == 6  # ran to its budget, past the delimiter


def test_a_step_cut_by_its_budget_is_closed_before_the_next_prompt(tiny_lm, tokenizer, library):
    r = forced_writer(tiny_lm, tokenizer, "abc")
    first = request(library, 1, max_new=2, tid="")
    cut = r.generate_batch([first])[0]
    assert tokenizer.decode(cut.completion_ids) == "ab"  # cut mid-step by its budget
    after_cut = request(library, 1, [as_step(first, cut)], "validate", tid="")
    _, injected, context = r.context(after_cut)
    assert injected == r.encode("\n\n" + library.render("validate"))  # the delimiter leads the next prompt...
    assert context[-len(injected) :] == injected  # ...in the context the model reads and the trainer rebuilds
    closed = {**as_step(first, cut), "completion_ids": r.encode("ab\n\n")}
    assert r.context(request(library, 1, [closed], "validate"))[1] == r.encode(library.render("validate"))


def test_a_question_over_the_context_window_is_one_error_not_a_batch_failure(hf_reasoner, library):
    from rsim_graph.errors import ContextLengthError
    from rsim_graph.graph import build_graph, run_batch
    from rsim_graph.planners.simple import ScriptedPlanner

    graph = build_graph(ScriptedPlanner(["deep-think"]), hf_reasoner, library, max_steps=2, max_step_tokens=4, max_total_tokens=8)
    with pytest.raises(ContextLengthError, match="context window of 1024 tokens; shorten the messages"):
        graph.invoke({"question": "9" * 2000})
    with pytest.raises(ContextLengthError):
        hf_reasoner.complete("9" * 2000, 16)
    assert run_batch(graph, ["1+1?"])[0]["answer"] is not None  # the reasoner still serves others


def test_a_budget_past_the_context_window_is_cut_to_fit(hf_reasoner):
    q = "9" * 1000  # the tiny model reads 1,024 positions
    room = 1024 - len(hf_reasoner.question_ids(q))
    out = hf_reasoner.complete(q, 2048)
    assert 0 < len(out.completion_ids) <= room
    assert hf_reasoner.room(hf_reasoner.question_ids(q), 5) == min(5, room)


def test_top_p_samples_only_the_nucleus_and_reports_the_policys_log_probabilities():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]]).repeat(400, 1)  # softmax: 0.64, 0.24, 0.09, 0.03
    gen = torch.Generator().manual_seed(0)
    tok, lp = HFReasoner._sample_group(logits, 1.0, 0.5, gen)
    assert set(tok.tolist()) == {0}  # the top token alone covers 0.5
    assert torch.allclose(lp, torch.log_softmax(logits[0], -1)[0].expand(400))  # not renormalized over the nucleus
    tok, _ = HFReasoner._sample_group(logits, 1.0, 0.9, gen)
    assert set(tok.tolist()) == {0, 1, 2}  # 0.64 + 0.24 < 0.9: the third token is still needed
    tok, _ = HFReasoner._sample_group(logits, 1.0, 1.0, gen)
    assert set(tok.tolist()) == {0, 1, 2, 3}
