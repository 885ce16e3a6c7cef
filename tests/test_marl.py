"""The leader-follower trainer: rollout columns, config checks, a few real steps, kill/resume, checkpoints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rsim_graph.graph import build_graph, run_batch
from rsim_graph.planners.policy import PolicyPlanner
from rsim_graph.planners.simple import ScriptedPlanner
from tests.conftest import ScriptedReasoner, length_reward, tiny_args
from trainers.data import arith_dataset
from trainers.marl import MARLScriptArguments
from trainers.marl_config import MARLConfig
from trainers.marl_trainer import MARLTrainer
from trainers.rollout import prompt_question, trajectory_row

ROOT = Path(__file__).resolve().parents[1]


def cli_args(tiny_lm_dir, planner_dir, out, *extra) -> list[str]:
    return [
        sys.executable, "-m", "trainers.marl", "--model_name_or_path", str(tiny_lm_dir), "--planner", str(planner_dir),
        "--output_dir", str(out), "--per_device_train_batch_size", "4", "--num_generations", "2",
        "--gradient_accumulation_steps", "1", "--max_reasoning_steps", "3", "--max_step_tokens", "8",
        "--max_completion_length", "32", "--eval_limit", "0", "--train_size", "64", "--logging_steps", "1",
        "--learning_rate", "1e-3", "--max_train_seconds", "600", "--warmup_size", "8", "--validation_size", "8",
        "--validation_steps", "2", *extra,
    ]


def test_trajectory_row_masks_injected_text_and_keeps_planner_choices(library):
    planner = ScriptedPlanner(["understand", "deep-think", "validate", "deep-think"])
    planner_choice = planner.choose

    def with_logprob(state, lib):
        choice = planner_choice(state, lib)
        choice.logprob = -1.25
        return choice

    planner.choose = with_logprob
    graph = build_graph(planner, ScriptedReasoner(tokens_per_step=3), library, max_steps=3)
    (state,) = run_batch(graph, ["What is 6*7?"])
    row = trajectory_row(state, library)
    assert row["strategies"] == ["understand", "deep-think", "terminate"]
    assert row["forced"] == [False, False, True]
    # ScriptedReasoner injects one token [7] and generates three [9]s per step
    assert row["completion_ids"] == [7, 9, 9, 9] * 3
    assert row["env_mask"] == [0, 1, 1, 1] * 3
    assert row["logprobs"] == [0.0, -0.5, -0.5, -0.5] * 3
    # the forced terminate is not a planner decision
    assert row["planner_actions"] == [library.index("understand"), library.index("deep-think")]
    assert row["planner_logps"] == [-1.25, -1.25]
    assert row["planner_texts"][0] == "What is 6*7?\n[next]"
    assert row["planner_texts"][1].startswith("What is 6*7?\n[understand] ")


def test_prompt_question_reads_strings_and_conversations():
    assert prompt_question("2+2?") == "2+2?"
    assert prompt_question([{"role": "system", "content": "s"}, {"role": "user", "content": "3+3?"}]) == "3+3?"
    with pytest.raises(ValueError, match="user message"):
        prompt_question([{"role": "system", "content": "s"}])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lambda_stage1": 1.5}, "lambda_stage1=1.5 is outside"),
        ({"stage2_start_step": -1}, "use 0 to run stage 2 alone"),
        ({"max_reasoning_steps": 1}, "leaves the planner no choice"),
        ({"max_step_tokens": 64}, "is not below max_completion_length"),
        ({"max_step_tokens": 32}, "the planner would never choose"),
        ({"planner_beta": -0.1}, "planner_beta=-0.1 is negative"),
        ({"planner_reward_weights": [1.0, 1.0]}, "give three, for R_acc, R_penalty and R_terminal"),
        ({"ddp_find_unused_parameters": True}, "DDP would mark ready twice"),
        ({"injection": "xml"}, "injection='xml' is not a choice; use auto or one of prefill, system, headers"),
        ({"reasoner_credit": "token"}, "reasoner_credit='token' is not a choice; use one of group, plan, prefix"),
        ({"planner_scale_rewards": "rank"}, "planner_scale_rewards='rank' is not a choice; use one of group, batch, none"),
        ({"reasoner_credit": "plan", "multi_objective_aggregation": "normalize_then_sum"}, "use multi_objective_aggregation='sum_then_normalize'"),
    ],
)
def test_config_errors_say_what_to_fix(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_args(tmp_path, **overrides)


@pytest.mark.slow
def test_a_few_steps_update_both_agents_and_switch_stage(tmp_path, tiny_lm, tokenizer, planner_dir):
    from copy import deepcopy

    model = deepcopy(tiny_lm).train()
    planner = PolicyPlanner.from_pretrained(planner_dir, seed=0)
    before_reasoner = {n: p.detach().clone() for n, p in model.named_parameters()}
    before_planner = {n: p.detach().clone() for n, p in planner.named_parameters()}
    args = tiny_args(tmp_path, max_steps=3, stage2_start_step=2, planner_beta=0.1, planner_entropy_coef=0.0, planner_learning_rate=5e-3)
    trainer = MARLTrainer(model, planner, args, train_dataset=arith_dataset(32), processing_class=tokenizer, reward_funcs=[length_reward])
    trainer.train()

    assert not hasattr(model, "rsim_planner")  # attached only while training
    changed_r = [n for n, p in model.named_parameters() if not torch.equal(p, before_reasoner[n])]
    changed_p = [n for n, p in planner.named_parameters() if not torch.equal(p, before_planner[n])]
    assert changed_r, "the reasoner did not change"
    assert "head.weight" in changed_p and any(n.startswith("backbone.") for n in changed_p), changed_p
    logs = [h for h in trainer.state.log_history if "lambda" in h]
    assert [round(h["lambda"], 2) for h in logs] == [0.7, 0.7, 0.3]
    assert trainer.stage() == 2
    for key in ("R_acc", "R_format", "R_follow", "R_penalty", "R_terminal", "accuracy", "steps_per_trajectory", "planner_entropy", "planner_kl"):
        assert all(key in h for h in logs), key
    shares = [sum(v for k, v in h.items() if k.startswith("strategy/")) for h in logs]
    assert all(abs(s - 1.0) < 1e-5 for s in shares)
    # the optimizer holds both agents, the planner with its own learning rate
    assert [g["initial_lr"] for g in trainer.optimizer.param_groups] == [1e-2, 1e-2, 5e-3]


@pytest.mark.slow
@pytest.mark.parametrize("injection", ["prefill", "system", "headers"])
def test_reasoner_tokens_scored_by_trl_match_the_rollout(tmp_path, tiny_lm, tokenizer, planner_dir, injection):
    """The trainer's forward pass over prompt+completion reproduces the sampling log-probs (same tokens, same context)."""
    from rsim_graph.strategies import STEP_PROTOCOL

    planner = PolicyPlanner.from_pretrained(planner_dir, seed=0)
    args = tiny_args(tmp_path, temperature=1.0, injection=injection)
    trainer = MARLTrainer(tiny_lm, planner, args, train_dataset=arith_dataset(8), processing_class=tokenizer)
    out = trainer.rollout([p for p in arith_dataset(2)["prompt"]], trainer)
    prompt = tokenizer.decode(out["prompt_ids"][0])
    assert (STEP_PROTOCOL.split("\n")[0] in prompt) == (injection == "system")
    injected = tokenizer.decode([t for t, m in zip(out["completion_ids"][0], out["env_mask"][0], strict=True) if not m])
    assert ("### Step 1." in injected) == (injection == "headers")
    for q_ids, ids, mask, lps in zip(out["prompt_ids"], out["completion_ids"], out["env_mask"], out["logprobs"], strict=True):
        full = torch.tensor([q_ids + ids])
        with torch.no_grad():
            logits = tiny_lm(full).logits[0, len(q_ids) - 1 : -1].float()
        ref = torch.log_softmax(logits, -1).gather(1, torch.tensor(ids)[:, None]).squeeze(1)
        keep = torch.tensor(mask, dtype=torch.bool)
        assert torch.allclose(ref[keep], torch.tensor(lps)[keep], atol=1e-3)


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(tmp_path, tiny_lm_dir, planner_dir):
    out = tmp_path / "run"
    cmd = cli_args(tiny_lm_dir, planner_dir, out, "--max_steps", "12", "--save_steps", "2", "--save_total_limit", "20", "--stage2_start_step", "3")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (out / "checkpoint-4" / "samplers_0.pt").is_file():  # the trainer's last write of a checkpoint
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.time() < deadline, "no checkpoint-4 within 300 s"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "planner").exists(), "the run finished before it was killed"
    saved = json.loads((out / "checkpoint-4" / "marl_state.json").read_text())
    assert saved == {"stage": 2, "lambda": 0.3, "stage2_start_step": 3}
    last = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if (p / "samplers_0.pt").is_file())

    done = subprocess.run(cmd + ["--resume_from_checkpoint", "true"], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    state = json.loads((out / "checkpoint-12" / "trainer_state.json").read_text())
    assert state["global_step"] == 12
    steps = [h["step"] for h in state["log_history"] if "lambda" in h]
    assert steps == list(range(1, 13)), steps  # 1..last from the checkpoint, the rest from the resumed run
    assert last >= 4 and (out / "planner" / "head.pt").is_file() and (out / "training_curves.png").is_file()


@pytest.mark.slow
def test_corrupt_checkpoint_is_a_one_line_error(tmp_path, tiny_lm_dir, planner_dir):
    out = tmp_path / "run"
    cmd = cli_args(tiny_lm_dir, planner_dir, out, "--max_steps", "1", "--save_steps", "1")
    assert subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=600, check=False).returncode == 0
    weights = out / "checkpoint-1" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    bad = subprocess.run(cmd + ["--resume_from_checkpoint", str(out / "checkpoint-1")], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert bad.returncode == 2
    last = bad.stderr.strip().splitlines()[-1]
    assert last.startswith("error: checkpoint") and "corrupt (model.safetensors" in last and "Traceback" not in bad.stderr
    missing = subprocess.run(cmd + ["--resume_from_checkpoint", str(out / "nope")], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


@pytest.mark.slow
def test_two_process_accelerate_launch_trains(tmp_path, tiny_lm_dir, planner_dir):
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "trainers/recipes/accelerate/multi_cpu.yaml"),
        "--num_processes", "2", "--main_process_port", "29517", "-m",
        *cli_args(tiny_lm_dir, planner_dir, out, "--max_steps", "2", "--use_cpu", "true")[2:],
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    # two ranks really ran (warm-up, validation and training): each saved its own RNG and sampler states
    for name in ("rng_state_0.pth", "rng_state_1.pth", "samplers_0.pt", "samplers_1.pt"):
        assert (out / "checkpoint-2" / name).is_file(), name
    assert (out / "planner" / "head.pt").is_file() and json.loads((out / "results.json").read_text())["steps"] == 2


@pytest.mark.slow
def test_two_ranks_hold_the_same_planner_after_training(tmp_path, tiny_lm_dir, planner_dir):
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "trainers/recipes/accelerate/multi_cpu.yaml"),
        "--num_processes", "2", "--main_process_port", "29518", str(ROOT / "tests" / "two_ranks.py"), str(tiny_lm_dir), str(planner_dir), str(tmp_path),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"planner_rank{i}.pt", weights_only=True) for i in (0, 1)]
    initial = PolicyPlanner.from_pretrained(planner_dir).state_dict()
    assert ranks[0].keys() == ranks[1].keys() == initial.keys()
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key  # the planner's gradients were averaged across ranks
    assert not torch.equal(ranks[0]["head.weight"], initial["head.weight"])  # and it trained


def test_recipes_load_through_trl_parser():
    from trl import ModelConfig, TrlParser

    recipes = sorted((ROOT / "trainers" / "recipes").glob("*.yaml"))
    assert len(recipes) >= 4
    for recipe in recipes:
        if recipe.name.startswith(("sft", "grpo")) or recipe.name == "smoke.yaml":  # the smoke run skips the warm-up
            continue
        script, cfg, _ = TrlParser((MARLScriptArguments, MARLConfig, ModelConfig)).parse_args_and_config(
            ["--config", str(recipe), "--output_dir", "/tmp/x", "--bf16", "false", "--use_cpu", "true"]
        )
        assert cfg.lambda_stage1 == 0.7 and cfg.lambda_stage2 == 0.3, recipe.name
        assert cfg.num_generations >= 2
        assert script.warmup, recipe.name  # the main job warms up on the recipe's own task
        # The paper's ~1,000 samples, or (the SmolLM2 CPU recipe) fewer, from a stated number of rollouts.
        assert script.warmup_size == 1000 or script.warmup_max_rollouts > 0, recipe.name
    paper = TrlParser((MARLScriptArguments, MARLConfig, ModelConfig)).parse_args_and_config(
        ["--config", str(ROOT / "trainers/recipes/qwen2.5-0.5b_planner-7b_math.yaml"), "--bf16", "false", "--use_cpu", "true", "--learning_rate", "3e-6"]
    )
    assert paper[2].model_name_or_path == "Qwen/Qwen2.5-0.5B-Instruct" and paper[1].learning_rate == 3e-6  # flags override the recipe


@pytest.mark.slow
def test_continual_learning_grows_the_head_and_trains_on_a_new_task(tmp_path, tiny_lm_dir, planner_dir, library):
    from rsim_graph.strategies import Strategy

    extended = library.extend([Strategy(id="estimate", name="Estimate", description="Guess the size of the answer.", prompt="Estimate: guess the size of the answer.", follow="about")])
    extended.save(tmp_path / "strategies.yaml")
    task = tmp_path / "task.jsonl"
    task.write_text("\n".join(json.dumps({"q": f"What is {i}+{i}?", "a": str(2 * i)}) for i in range(16)))
    out = tmp_path / "run"
    cmd = cli_args(tiny_lm_dir, planner_dir, out, "--max_steps", "1", "--strategies", str(tmp_path / "strategies.yaml"),
                   "--task", str(task), "--question_field", "q", "--answer_field", "a")
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    grown = PolicyPlanner.from_pretrained(out / "planner")
    assert grown.library.ids == [*library.ids, "estimate"] and grown.head.weight.shape[0] == len(library) + 1


def test_resume_true_takes_the_newest_whole_checkpoint(tmp_path, monkeypatch, caplog):
    import trainers.marl_trainer as mt
    from rsim_graph.errors import CheckpointError

    for step in (5, 10, 15):
        (tmp_path / f"checkpoint-{step}").mkdir()

    def check(path):  # checkpoint-15 was being written when the run was killed
        if path.name == "checkpoint-15":
            raise CheckpointError(f"checkpoint {path} is incomplete (no marl_state.json)")

    monkeypatch.setattr(mt, "check_checkpoint", check)
    assert mt.last_whole_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
    assert "skipping checkpoint-15" in caplog.text
    assert mt.last_whole_checkpoint(tmp_path / "empty") is None
    monkeypatch.setattr(mt, "check_checkpoint", lambda path: check(path.with_name("checkpoint-15")))
    with pytest.raises(CheckpointError, match="no whole checkpoint in"):
        mt.last_whole_checkpoint(tmp_path)
