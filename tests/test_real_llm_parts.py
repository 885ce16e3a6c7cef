"""What the SmolLM2 recipe relies on, on tiny models: a head-only planner, a LoRA reasoner saved as its
adapter and loaded over its base, the `arith-easy` task, injection formats, and the warm-up's bounds."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModel
from trl import ModelConfig

from rsim_graph.errors import CheckpointError, InputError
from rsim_graph.graph import build_graph, protocol_history, run_batch
from rsim_graph.planners.policy import PolicyPlanner
from rsim_graph.planners.simple import ScriptedPlanner
from rsim_graph.reasoners.hf import load_causal_lm
from rsim_graph.scoring.rewards import format_reward
from rsim_graph.strategies import STEP_PROTOCOL
from rsim_graph.tasks.arith import arith_world, parse_question
from rsim_graph.engine.tiny_models import tiny_config
from tests.conftest import ScriptedReasoner
from trainers.common import apply_lora
from trainers.data import arith_dataset


@pytest.fixture
def backbone_dir(tmp_path, tokenizer):
    torch.manual_seed(3)
    path = tmp_path / "backbone"
    AutoModel.from_config(tiny_config(len(tokenizer), hidden=32, layers=2, heads=2)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_head_only_planner_trains_its_head_and_saves_only_it(tmp_path, backbone_dir, library):
    planner = PolicyPlanner.from_backbone(str(backbone_dir), library, freeze_backbone=True, max_length=64)
    assert [n for n, p in planner.named_parameters() if p.requires_grad] == ["head.weight", "head.bias"]
    planner(["Compute 2+3.", "Compute 4-1."]).sum().backward()
    assert planner.head.weight.grad is not None
    assert all(p.grad is None for p in planner.backbone.parameters())

    with torch.no_grad():
        planner.head.weight.add_(1.0)  # a trained head, unlike a fresh one
    planner.save_pretrained(tmp_path / "p")
    assert not (tmp_path / "p" / "backbone").exists()
    assert json.loads((tmp_path / "p" / "planner.json").read_text())["backbone"] == str(backbone_dir)
    loaded = PolicyPlanner.from_pretrained(tmp_path / "p")
    assert loaded.freeze_backbone
    texts = ["Compute 7+1.", "Start with 3. Add 4. What is the result?"]
    with torch.no_grad():
        torch.testing.assert_close(loaded(texts), planner(texts))


def test_head_only_planner_names_a_missing_backbone(tmp_path, backbone_dir, library):
    PolicyPlanner.from_backbone(str(backbone_dir), library, freeze_backbone=True).save_pretrained(tmp_path / "p")
    cfg = json.loads((tmp_path / "p" / "planner.json").read_text())
    (tmp_path / "p" / "planner.json").write_text(json.dumps({**cfg, "backbone": str(tmp_path / "gone")}))
    with pytest.raises(CheckpointError, match="gone"):
        PolicyPlanner.from_pretrained(tmp_path / "p")


def test_freezing_needs_a_backbone_spec(tiny_backbone, tokenizer, library):
    with pytest.raises(ValueError, match="backbone_spec"):
        PolicyPlanner(tiny_backbone, tokenizer, library, freeze_backbone=True)


def test_lora_reasoner_is_saved_as_an_adapter_and_merges_over_its_base(tmp_path, tiny_lm_dir):
    _, model = load_causal_lm(str(tiny_lm_dir))
    args = ModelConfig(model_name_or_path=str(tiny_lm_dir), use_peft=True, lora_r=4, lora_alpha=8, lora_target_modules=["q_proj", "v_proj"])
    model = apply_lora(model, args, last_layers=1)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and ".layers.1." in n for n in trainable)  # the last of 2 layers only
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_()  # LoRA's B starts at zero: make the adapter change the output
    model.save_pretrained(tmp_path / "adapter")
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_lm_dir)
    ids = torch.tensor([[5, 6, 7, 8]])
    _, merged = load_causal_lm(str(tmp_path / "adapter"))
    _, base = load_causal_lm(str(tiny_lm_dir))
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, model.eval()(ids).logits, atol=1e-4, rtol=1e-4)
        assert not torch.allclose(merged(ids).logits, base(ids).logits, atol=1e-3)


def test_lora_layers_out_of_range(tiny_lm_dir):
    _, model = load_causal_lm(str(tiny_lm_dir))
    args = ModelConfig(model_name_or_path=str(tiny_lm_dir), use_peft=True, lora_target_modules=["q_proj"])
    with pytest.raises(ValueError, match="lora_last_layers=5, but the reasoner has 2 decoder layers"):
        apply_lora(model, args, last_layers=5)
    assert apply_lora(model, ModelConfig(model_name_or_path=str(tiny_lm_dir)), 0) is model  # no --use_peft: unchanged


def test_arith_easy_is_small_numbers_and_trains_and_evaluates():
    problems = arith_world("arith-easy", split="test").problems(200)
    for p in problems:
        start, ops = parse_question(p.question)
        assert 1 <= len(ops) <= 3 and start < 10
        assert all(o in "+-" and n < 10 for o, n in ops)
    words = sum(p.question.startswith("Start with") for p in problems)
    assert 60 < words < 140  # about half word problems
    train = arith_dataset(2000, task="arith-easy")
    assert set(train["prompt"]).isdisjoint(p.question for p in problems)  # a small space: the splits are kept apart by hash
    assert len(train) == 2000 and train[0]["solution"] == arith_world("arith-easy", split="train").problem(0).answer
    with pytest.raises(InputError, match="choose from arith, arith-easy"):
        arith_world("arith-hard")


def test_format_reward_takes_the_answer_as_the_grader_extracts_it():
    steps = [["5 + 3 = 8", "The answer is 8."], ["5 + 3 = 8", "So it is eight"], ["\\boxed{8}", "\\boxed{8}"]]
    assert format_reward([""] * 3, step_texts=steps) == [1.0, 0.0, 0.0]


def test_injection_headers_number_the_steps(library):
    reasoner = ScriptedReasoner()
    graph = build_graph(ScriptedPlanner(["understand", "deep-think"]), reasoner, library, injection="headers")
    run_batch(graph, ["Compute 2+3."])
    assert [r.injected for r in reasoner.requests] == [
        "### Step 1. " + library.render("understand"),
        "### Step 2. " + library.render("deep-think"),
        "### Step 3. " + library.render("terminate"),
    ]
    assert all(r.history is None for r in reasoner.requests)


def test_injection_system_states_the_protocol(library):
    reasoner = ScriptedReasoner()
    graph = build_graph(ScriptedPlanner(["understand"]), reasoner, library, injection="system")
    run_batch(graph, ["Compute 2+3."], extra={"history": [{"role": "system", "content": "Be brief."}]})
    assert reasoner.requests[0].history == [{"role": "system", "content": "Be brief.\n\n" + STEP_PROTOCOL}]
    assert reasoner.requests[0].injected == library.render("understand")
    assert protocol_history(None, "system") == [{"role": "system", "content": STEP_PROTOCOL}]
    assert protocol_history(None, "prefill") is None
    with pytest.raises(InputError, match="unknown injection 'xml'; choose from prefill, system, headers"):
        build_graph(ScriptedPlanner([]), reasoner, library, injection="xml")


def test_warmup_draws_at_most_max_rollouts(hf_reasoner, library):
    from trainers.sft import collect_warmup

    questions = [f"Compute {i}+1." for i in range(20)]
    _, drawn = collect_warmup(ScriptedPlanner([]), hf_reasoner, library, questions, ["0"] * 20, 100, max_steps=2, max_step_tokens=4, chunk=4, max_rollouts=6)
    assert drawn == 6


def test_auto_injection_is_prefill_for_the_bundled_models_and_system_for_others(tmp_path):
    from rsim_graph.loading import BUNDLED_REASONER, resolve_injection

    assert resolve_injection("auto", None, None) == "prefill"
    assert resolve_injection("auto", str(BUNDLED_REASONER), None) == "prefill"
    assert resolve_injection("auto", "smollm2", None) == "system"
    assert resolve_injection("auto", None, "http://localhost:8000/v1") == "system"
    assert resolve_injection("headers", None, None) == "headers"
