"""What the leader-follower objective does, tested so that a broken trainer fails: the planner's surrogate
and its sign, λ as learning-rate scales, masked tokens through TRL's loss, one R_acc for both agents,
resume restoring tensors, and the planner's input and dtype."""

from __future__ import annotations

from copy import deepcopy

import pytest
import torch

from rsim_graph.planners.policy import PolicyPlanner
from rsim_graph.scoring.rewards import planner_reward_funcs, reasoner_reward_funcs
from rsim_graph.strategies import Strategy
from tests.conftest import length_reward, tiny_args
from trainers.data import arith_dataset
from trainers.marl_trainer import MARLTrainer


def make_trainer(tmp_path, tiny_lm, tokenizer, planner_dir, reward_funcs=None, **overrides) -> MARLTrainer:
    planner = PolicyPlanner.from_pretrained(planner_dir, seed=0)
    args = tiny_args(tmp_path, **overrides)
    return MARLTrainer(deepcopy(tiny_lm).train(), planner, args, train_dataset=arith_dataset(16), processing_class=tokenizer, reward_funcs=reward_funcs)


def test_planner_surrogate_moves_toward_the_higher_advantage_without_entropy(tmp_path, tiny_lm, tokenizer, planner_dir, library):
    trainer = make_trainer(tmp_path, tiny_lm, tokenizer, planner_dir, planner_entropy_coef=0.0, planner_beta=0.0)
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop
    planner = trainer.planner.train()
    texts = ["Compute (12+7)*3.\n[next]", "Compute (12+7)*3.\n[understand] Known: 12.\n[next]"]
    good, bad = library.index("deep-think"), library.index("summarize")
    with torch.no_grad():
        old = torch.log_softmax(planner(texts).float(), -1)
    # Two trajectories of one prompt: the first chose deep-think twice and won, the second summarize twice and lost.
    inputs = {
        "planner_texts": [texts, texts],
        "planner_actions": [[good, good], [bad, bad]],
        "planner_logps": [old[:, good].tolist(), old[:, bad].tolist()],
        "planner_advantages": torch.tensor([1.0, -1.0]),
    }
    loss = trainer._planner_loss(inputs)
    assert loss.requires_grad  # its value is 0 at ratio 1 with advantages that sum to 0; its gradient is not
    loss.backward()
    with torch.no_grad():
        for p in planner.parameters():
            p -= 0.05 * p.grad  # one plain gradient step on the surrogate alone
        new = torch.log_softmax(planner(texts).float(), -1)
    assert (new[:, good] > old[:, good]).all(), (new[:, good], old[:, good])
    assert (new[:, bad] < old[:, bad]).all(), (new[:, bad], old[:, bad])


def test_lambda_scales_each_agents_learning_rate_by_stage(tmp_path, tiny_lm, tokenizer, planner_dir):
    trainer = make_trainer(tmp_path, tiny_lm, tokenizer, planner_dir, max_steps=2, stage2_start_step=1, learning_rate=1e-3, planner_learning_rate=1e-2, lr_scheduler_type="constant", log_update_norms=True, reward_funcs=[length_reward])
    trainer.train()
    logs = [h for h in trainer.state.log_history if "lambda" in h]
    assert [h["lambda"] for h in logs] == [0.7, 0.3]
    assert [h["planner_learning_rate"] for h in logs] == pytest.approx([0.7e-2, 0.3e-2])
    assert [h["learning_rate"] for h in logs] == pytest.approx([0.3e-3, 0.7e-3])  # TRL logs the reasoner's group
    assert all(h["update_norm/planner"] > 0 and h["update_norm/reasoner"] > 0 for h in logs), logs


@pytest.mark.slow
def test_masked_tokens_get_exactly_zero_gradient_through_trls_loss(tmp_path, tiny_lm, tokenizer, planner_dir, monkeypatch):
    import trainers.rollout

    states = []
    real_run_batch = trainers.rollout.run_batch
    monkeypatch.setattr(trainers.rollout, "run_batch", lambda *a, **k: states.extend(real_run_batch(*a, **k)) or states)
    trainer = make_trainer(tmp_path, tiny_lm, tokenizer, planner_dir)
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop
    model = trainer.model
    prompts = arith_dataset(2)["prompt"]
    inputs = trainer._generate_and_score_completions([{"prompt": p, "solution": "1"} for p in prompts for _ in range(2)])
    inputs["advantages"] = torch.tensor([1.0, -1.0, 0.5, -0.5])  # all non-zero, so every kept token has a gradient
    # Ground truth from the graph's own step records: each step's injected strategy tokens, then its generated ones.
    injected = torch.zeros_like(inputs["completion_ids"], dtype=torch.bool)  # (B, C)
    for row, state in enumerate(states):
        k = 0
        for step in state["steps"]:
            injected[row, k : k + len(step["prompt_ids"])] = True
            k += len(step["prompt_ids"]) + len(step["completion_ids"])
    mask = inputs["tool_mask"] * inputs["completion_mask"]  # (B, C): what TRL's loss keeps
    assert injected.any() and (mask == 1).any()

    # TRL fuses the LM head into the loss, so watch the final hidden states (B, P + C, H): the row at
    # position t feeds only the log-prob of token t + 1 (everything after the final norm is per position).
    kept = {}

    def keep(module, args, out):  # returns None, so the output is unchanged
        out.retain_grad()
        kept["hidden"] = out

    hook = model.model.norm.register_forward_hook(keep)
    try:
        trainer._compute_loss(model, inputs).backward()
    finally:
        hook.remove()
    P, C = inputs["prompt_ids"].shape[1], mask.shape[1]
    per_token = kept["hidden"].grad[:, P - 1 : P - 1 + C].abs().sum(-1)  # (B, C): row k predicts completion token k
    assert torch.all(per_token[injected] == 0)
    assert torch.all(per_token[mask == 0] == 0)
    assert torch.all(per_token[mask == 1] > 0)


def test_both_agents_grade_r_acc_on_generated_text_only(tmp_path, tiny_lm, tokenizer, planner_dir, library):
    # The terminate prompt holds an empty \boxed{}; the reasoner answered GSM8K-style without a box.
    injected = library.render("terminate")
    steps = ["Known: 6 and 7.", "#### 42"]
    decoded = f"{library.render('understand')}{steps[0]}\n\n{injected}{steps[1]}\n\n"  # what TRL decodes
    row = {"prompt": "What is 6*7?", "solution": "42", "step_texts": steps, "strategies": ["understand", "terminate"], "forced": [False, False]}
    trainer = make_trainer(tmp_path, tiny_lm, tokenizer, planner_dir)
    reasoner_rewards = trainer._calculate_rewards([row], [row["prompt"]], [decoded], [[1, 2]])  # TRL's own reward path
    assert reasoner_rewards[0, 0].item() == 1.0
    kw = {"completions": [decoded], "solution": ["42"], "step_texts": [steps], "strategies": [row["strategies"]], "forced": [row["forced"]]}
    assert planner_reward_funcs(library)[0](**kw) == reasoner_reward_funcs(library)[0](**kw) == [1.0]


@pytest.mark.slow
def test_resume_restores_planner_optimizer_samplers_and_stage(tmp_path, tiny_lm, tokenizer, planner_dir):
    first = make_trainer(tmp_path, tiny_lm, tokenizer, planner_dir, max_steps=2, stage2_start_step=None, save_strategy="steps", save_steps=2)
    first.train()
    ckpt = tmp_path / "run" / "checkpoint-2"
    expected = {
        "planner": {k: v.clone() for k, v in first.planner.state_dict().items()},
        "optimizer": deepcopy(first.optimizer.state_dict()),
        "planner_sampler": first.planner.generator.get_state(),
        "reasoner_sampler": first.rollout.reasoner.generator.get_state(),
    }
    assert first.stage2_step() == 1  # half of max_steps=2

    # A longer run resumed from it: its halfway point would be step 5, but the checkpoint's schedule holds.
    second = make_trainer(tmp_path, tiny_lm, tokenizer, planner_dir, max_steps=10, stage2_start_step=None, save_strategy="no")
    seen = {}

    class Captured(Exception):
        pass

    def capture(model, inputs, num_items_in_batch=None):  # the first step, before anything is sampled
        seen.update(
            planner={k: v.clone() for k, v in second.planner.state_dict().items()}, optimizer=deepcopy(second.optimizer.state_dict()),
            planner_sampler=second.planner.generator.get_state(), reasoner_sampler=second.rollout.reasoner.generator.get_state(),
            stage2=second.stage2_step(), stage=second.stage(),
        )
        raise Captured

    second.training_step = capture
    with pytest.raises(Captured):
        second.train(resume_from_checkpoint=str(ckpt))
    assert seen["stage2"] == 1 and seen["stage"] == 2
    for k, v in expected["planner"].items():
        assert torch.equal(seen["planner"][k], v), k
    assert torch.equal(seen["planner_sampler"], expected["planner_sampler"])
    assert torch.equal(seen["reasoner_sampler"], expected["reasoner_sampler"])
    got, want = seen["optimizer"]["state"], expected["optimizer"]["state"]
    assert got.keys() == want.keys() and len(want) > 0
    for i in want:
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(got[i][name], want[i][name]), (i, name)
    assert [g["lr"] for g in seen["optimizer"]["param_groups"]] == [g["lr"] for g in expected["optimizer"]["param_groups"]]


def test_planner_input_keeps_the_question_when_cut(tokenizer, tiny_backbone, library):
    planner = PolicyPlanner(tiny_backbone, tokenizer, library, max_length=64)
    question = "Compute ((23+45)*3)-17."
    text = question + "".join(f"\n[deep-think] step {i} computed {i * 11}" for i in range(40)) + "\n[next]"
    ids = planner.token_ids(text)
    q = tokenizer(question, add_special_tokens=False)["input_ids"]
    assert len(ids) == 64
    assert ids[: len(q)] == q  # the question survives
    assert ids[-len(tokenizer("\n[next]", add_special_tokens=False)["input_ids"]) :] == tokenizer("\n[next]", add_special_tokens=False)["input_ids"]
    long_question = "Compute " + "+".join(str(i) for i in range(60)) + "."
    text = long_question + "\n[understand] Known.\n[next]"
    ids = planner.token_ids(text)
    steps = tokenizer("\n[understand] Known.\n[next]", add_special_tokens=False)["input_ids"]
    assert len(ids) == 64 and ids[-len(steps) :] == steps  # short steps are kept whole; the question gets the rest
    short = question + "\n[next]"
    assert planner.token_ids(short) == tokenizer(short, add_special_tokens=False)["input_ids"]  # short texts are untouched


def test_planner_on_a_bf16_backbone_chooses_and_trains(tmp_path, tokenizer, library):
    from transformers import AutoModelForCausalLM

    from rsim_graph.engine.tiny_models import tiny_config

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(tiny_config(len(tokenizer), hidden=32, layers=2, heads=2), dtype=torch.bfloat16).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    planner = PolicyPlanner.from_backbone(str(tmp_path), library, seed=0)
    assert next(planner.backbone.parameters()).dtype == torch.bfloat16 and planner.head.weight.dtype == torch.bfloat16
    choice = planner.choose({"question": "Compute (1+2)*3.", "steps": []}, library)
    assert choice.strategy in library.ids and abs(sum(choice.probs) - 1) < 1e-3
    planner.log_probs([{"question": "Compute (1+2)*3.", "steps": []}])[0, 0].backward()
    assert planner.head.weight.grad is not None and planner.head.weight.grad.dtype == torch.bfloat16
    planner.grow(library.extend([Strategy(id="estimate", name="Estimate", description="Size.", prompt="Estimate the size.", follow="about")]))
    assert planner.head.weight.shape[0] == len(library) + 1 and planner.head.weight.dtype == torch.bfloat16


@pytest.mark.parametrize("planner_checkpointing", [False, True])
def test_one_module_holds_both_agents_and_each_keeps_its_own_checkpointing(tmp_path, tiny_lm, tokenizer, planner_dir, planner_checkpointing):
    from safetensors import safe_open
    from transformers import TrainerCallback

    trainer = make_trainer(
        tmp_path, tiny_lm, tokenizer, planner_dir, max_steps=1, save_strategy="steps", save_steps=1,
        gradient_checkpointing=True, planner_gradient_checkpointing=planner_checkpointing,
    )
    seen = {}

    class Look(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            with trainer.reasoner_only() as reasoner:
                seen["reasoner_keys"] = set(reasoner.state_dict())
            seen.update(
                attached=trainer.model.get_submodule("rsim_planner") is trainer.planner,  # what accelerate prepared holds both
                reasoner=trainer.model.is_activation_checkpointing, planner=trainer.planner.backbone.is_activation_checkpointing,
            )

    trainer.add_callback(Look())
    trainer.train()
    assert seen["attached"] and not hasattr(trainer.model, "rsim_planner")  # and the caller gets the reasoner back alone
    assert seen["reasoner"] is True and seen["planner"] is planner_checkpointing
    *reasoner_groups, planner_group = trainer.optimizer.param_groups
    assert {id(p) for p in planner_group["params"]} == trainer.planner_ids
    assert not any(id(p) in trainer.planner_ids for g in reasoner_groups for p in g["params"])
    with safe_open(str(tmp_path / "run" / "checkpoint-1" / "model.safetensors"), "pt") as f:
        saved = set(f.keys())
    assert saved <= seen["reasoner_keys"] and not any(k.startswith("rsim_planner.") for k in saved)
    assert not any(k.startswith("rsim_planner.") for k in seen["reasoner_keys"])
