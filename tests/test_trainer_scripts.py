"""The warm-up SFT and plain-GRPO scripts, the vLLM server round protocol, and the training plots."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rsim_graph.graph import build_graph, run_batch
from rsim_graph.planners.simple import ScriptedPlanner
from rsim_graph.reasoners.hf import HFReasoner
from trainers.plots import plot_training
from trainers.sft import collect_warmup, tokenize_sample
from trainers.vllm_rollout import LockstepServerReasoner

ROOT = Path(__file__).resolve().parents[1]


class FakeVLLMClient:
    """TRL's `VLLMClient.generate` shape: token ids in, completion ids and (tokens, 1) log-probs out."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.calls = []

    def generate(self, prompts, n, temperature, top_p, max_tokens, logprobs, generation_kwargs):
        self.calls.append((len(prompts), max_tokens, generation_kwargs["stop"]))
        ids = self.tokenizer("x = 1\n\n", add_special_tokens=False)["input_ids"][:max_tokens]
        return {"completion_ids": [ids for _ in prompts], "logprobs": [[[-0.25] for _ in ids] for _ in prompts]}


def test_lockstep_server_reasoner_batches_a_round_into_one_call(tokenizer, library):
    client = FakeVLLMClient(tokenizer)
    reasoner = LockstepServerReasoner(client, tokenizer, is_main=True)
    graph = build_graph(ScriptedPlanner(["understand"]), reasoner, library, max_steps=2, max_step_tokens=16)
    states = run_batch(graph, ["1+1?", "2+2?", "3+3?"])
    reasoner.drain()  # single process: everyone is done at once
    assert all(s["steps"][0]["text"] == "x = 1" for s in states)
    assert states[0]["steps"][0]["logprobs"] == [-0.25] * len(states[0]["steps"][0]["completion_ids"])
    assert sum(n for n, _, _ in client.calls) == 6  # 3 trajectories x 2 steps
    assert {tuple(stop or ()) for _, _, stop in client.calls} == {("\n\n",), ()}  # the terminating step has no stop string
    assert len(client.calls) < 6  # steps of concurrent trajectories share a call


def test_warmup_samples_mask_everything_but_the_reasoners_steps(tiny_lm, tokenizer, library):
    reasoner = HFReasoner(tiny_lm, tokenizer)
    sample = tokenize_sample(reasoner, "1+2?", [("deep-think", "1+2 = 3"), ("terminate", "\\boxed{3}")], library)
    q = reasoner.question_ids("1+2?")
    assert sample["input_ids"][: len(q)] == q and sample["completion_mask"][: len(q)] == [0] * len(q)
    own = tokenizer.decode([t for t, m in zip(sample["input_ids"], sample["completion_mask"], strict=True) if m])
    assert own == "1+2 = 3\n\n\\boxed{3}\n\n"


def test_warmup_samples_carry_the_runs_injection(tiny_lm, tokenizer, library):
    from rsim_graph.graph import protocol_history

    reasoner = HFReasoner(tiny_lm, tokenizer)
    steps = [("deep-think", "1+2 = 3"), ("terminate", "\\boxed{3}")]
    plain = tokenize_sample(reasoner, "1+2?", steps, library)
    system = tokenize_sample(reasoner, "1+2?", steps, library, "system")
    headers = tokenize_sample(reasoner, "1+2?", steps, library, "headers")
    q = reasoner.question_ids("1+2?", protocol_history(None, "system"))
    assert system["input_ids"][: len(q)] == q and len(q) > len(reasoner.question_ids("1+2?"))
    assert system["input_ids"][len(q) :] == plain["input_ids"][len(reasoner.question_ids("1+2?")) :]
    assert "### Step 2. " in tokenizer.decode(headers["input_ids"])
    for sample in (system, headers):  # the reasoner's own tokens are the same whatever the injection
        own = [t for t, m in zip(sample["input_ids"], sample["completion_mask"], strict=True) if m]
        assert own == [t for t, m in zip(plain["input_ids"], plain["completion_mask"], strict=True) if m]


def test_warmup_keeps_only_the_reasoners_formatted_but_wrong_rollouts(hf_reasoner, library):
    from tests.conftest import ScriptedReasoner

    questions = [f"What is {i}+{i}?" for i in range(12)]
    golds = [str(2 * i) for i in range(12)]
    # The reasoner boxes 6 everywhere: right for question 3 only; the rest are formatted and wrong.
    reasoner = ScriptedReasoner(answer="6")
    samples, drawn = collect_warmup(ScriptedPlanner(["deep-think"]), reasoner, library, questions, golds, 5, chunk=4)
    assert len(samples) == 5 and drawn == 8  # two chunks of 4 questions were needed
    asked = {r.question for r in reasoner.requests}
    assert len(asked) == 8
    every, drawn_all = collect_warmup(ScriptedPlanner(["deep-think"]), ScriptedReasoner(answer="6"), library, questions, golds, 100)
    assert len(every) == 11 and drawn_all == 12  # question 3 (6 is right) never becomes a sample


def test_plots_are_written_from_the_log_history(tmp_path):
    history = [{"step": i, "accuracy": i / 10, "R_acc": i / 10, "strategy/deep-think": 0.5, "strategy/terminate": 0.5} for i in range(1, 6)]
    paths = plot_training(history, tmp_path)
    assert [p.name for p in paths] == ["training_curves.png", "strategy_usage.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)


@pytest.mark.slow
@pytest.mark.parametrize("script", ["sft", "grpo"])
def test_scripts_train_and_save_a_reasoner(tmp_path, tiny_lm_dir, script):
    extra = {
        "sft": ["--warmup_size", "16", "--train_size", "64", "--per_device_train_batch_size", "8", "--max_steps", "2"],
        "grpo": ["--per_device_train_batch_size", "4", "--num_generations", "2", "--gradient_accumulation_steps", "1",
                 "--max_completion_length", "16", "--max_steps", "2", "--train_size", "32", "--eval_limit", "0"],
    }[script]
    # The warm-up needs formatted rollouts, which an untrained model rarely writes: sft uses its default, the bundled reasoner.
    model = [] if script == "sft" else ["--model_name_or_path", str(tiny_lm_dir)]
    cmd = [sys.executable, "-m", f"trainers.{script}", *model, "--output_dir", str(tmp_path), *extra]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "reasoner" / "model.safetensors").is_file()


def test_scripts_give_one_line_errors(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "trainers.marl", "--task", str(tmp_path / "missing.jsonl"), "--output_dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith("error: data file")
    bad = subprocess.run(
        [sys.executable, "-m", "trainers.marl", "--lambda_stage2", "2", "--output_dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert bad.returncode == 2 and "lambda_stage2=2.0 is outside [0, 1]" in bad.stderr and "Traceback" not in bad.stderr


def test_ablation_table_reads_recorded_runs_and_rejects_unknown_rows(tmp_path):
    import json

    from trainers.ablate import cli, table

    def run(acc, alone, share, top, validation):
        after = {"rSIM planner": {"accuracy": acc, "top_share": share, "top_strategy": top}, "ZeroCoT": {"accuracy": alone}}
        history = [{"step": 20 * i, "accuracy": a} for i, a in enumerate(validation)]
        return {"after": after, "steps": 100, "train_seconds": 900.0, "validation": history}

    for seed, (acc, validation) in enumerate([(0.6, [0.1, 0.5, 0.4]), (0.7, [0.1, 0.6, 0.6])]):
        (tmp_path / "full").mkdir(exist_ok=True)
        (tmp_path / "full" / f"seed{seed}.json").write_text(json.dumps(run(acc, 0.1, 0.5, "deep-think", validation)))
    (tmp_path / "grpo").mkdir()
    (tmp_path / "grpo" / "seed0.json").write_text(json.dumps({"after": {"ZeroCoT": {"accuracy": 0.2}}, "steps": 700, "train_seconds": 900.0}))
    lines = {line.split(" | ")[0].strip("| "): line for line in table(tmp_path).splitlines()}
    # best - last validation: 0.5 - 0.4 and 0.6 - 0.6
    assert "| full | 2 | 65.0 ± 7.1 | 10.0 ± 0.0 | 50.0 ± 0.0 (deep-think) | 5.0 ± 7.1 | 100 | 900 |" == lines["full"]
    assert "| grpo | 1 | - | 20.0 | - | - | 700 | 900 |" == lines["grpo"]
    assert "not run" in lines["no-penalty"]
    assert cli(["--rows", "full,nope", "--results_dir", str(tmp_path)]) == 2
    assert cli(["--rows", "grpo", "--seeds", "5", "--results_dir", str(tmp_path)]) == 2  # needs row full's seconds for seed 5


def test_the_grpo_rows_time_budget_is_the_full_rows_whatever_else_is_passed(tmp_path):
    import json

    from trainers.ablate import command

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "seed0.json").write_text(json.dumps({"train_seconds": 739.1}))
    cmd = command("grpo", 0, tmp_path / "out", tmp_path, ["--max_train_seconds", "2400"])  # meant for the MARL rows
    seconds = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--max_train_seconds"]
    assert seconds[-1] == "739.1"  # argparse keeps the last


def test_credit_splits_reward_variance_into_reasoner_and_planner_parts():
    from trainers.credit import decompose

    # One group of 4: the same sequence twice with different outcomes (the reasoner's doing), and two
    # sequences whose outcomes differ as a whole (the planner's doing).
    parts = decompose([1, 0, 1, 1, 0, 0, 1, 1], [("a",), ("a",), ("b",), ("b",), ("c",), ("c",), ("d",), ("d",)], 4)
    assert parts == {"total": 0.75 + 1.0, "same_sequence": 0.5, "between_sequences": 0.25 + 1.0}


@pytest.mark.slow
def test_marl_with_lora_reasoner_and_head_only_planner_saves_the_trainable_parts_and_resumes(tmp_path, tiny_lm_dir):
    import json

    common = [
        sys.executable, "-m", "trainers.marl", "--model_name_or_path", str(tiny_lm_dir), "--planner", str(tiny_lm_dir),
        "--planner_train", "head", "--use_peft", "--lora_r", "4", "--lora_target_modules", "q_proj", "v_proj",
        "--warmup", "false", "--train_size", "40", "--validation_size", "8", "--validation_steps", "1", "--eval_limit", "0",
        "--per_device_train_batch_size", "4", "--num_generations", "2", "--gradient_accumulation_steps", "1",
        "--max_reasoning_steps", "3", "--max_step_tokens", "8", "--max_completion_length", "32", "--save_steps", "1",
        "--output_dir", str(tmp_path), "--report_to", "none", "--disable_tqdm", "true",
    ]
    first = subprocess.run([*common, "--max_steps", "2"], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert first.returncode == 0, first.stderr[-2000:]
    for folder in (tmp_path / "reasoner", tmp_path / "checkpoint-1"):
        assert (folder / "adapter_model.safetensors").is_file() and not (folder / "model.safetensors").exists()
    assert json.loads((tmp_path / "reasoner" / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_lm_dir)
    for planner in (tmp_path / "planner", tmp_path / "checkpoint-1" / "planner"):
        assert json.loads((planner / "planner.json").read_text())["backbone"] == str(tiny_lm_dir)
        assert not (planner / "backbone").exists()
    resumed = subprocess.run(
        [*common, "--max_steps", "3", "--resume_from_checkpoint", str(tmp_path / "checkpoint-2")], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((tmp_path / "results.json").read_text())["steps"] == 3


def test_the_trainers_task_flags_reach_the_registry(tmp_path, monkeypatch):
    import json

    import datasets
    from transformers import HfArgumentParser

    from trainers.common import TaskArguments
    from trainers.data import task_dataset

    f = tmp_path / "g.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in [{"question": "q", "answer": "2 * 503 = 1006\n#### 1,006"}, {"question": "", "answer": "1"}]))
    (args,) = HfArgumentParser(TaskArguments).parse_args_into_dataclasses(["--task", "gsm8k", "--data_file", str(f)])
    data = task_dataset(args)
    assert data.column_names == ["prompt", "solution"] and data.to_list() == [{"prompt": "q", "solution": "1006"}]  # the bad row left out

    calls = []

    def hub(path, name=None, *, split):  # the hub, offline
        calls.append((path, name, split))
        return datasets.Dataset.from_list([{"question": f"q{i}", "answer": f"#### {i}"} for i in range(4)])

    monkeypatch.setattr(datasets, "load_dataset", hub)
    (args,) = HfArgumentParser(TaskArguments).parse_args_into_dataclasses(["--task", "gsm8k"])
    assert len(task_dataset(args, n=3)) == 3 and calls == [("openai/gsm8k", "main", "train")]  # training reads the train split
    (args,) = HfArgumentParser(TaskArguments).parse_args_into_dataclasses(["--task", "me/set", "--dataset_config", "v2", "--dataset_split", "dev"])
    assert task_dataset(args)["solution"] == ["0", "1", "2", "3"] and calls[-1] == ("me/set", "v2", "dev")


def test_the_training_benchmark_keeps_its_flags():
    from trainers.bench import parse_args

    args = parse_args(["--steps", "3"])
    assert (args.steps, args.batch, args.generations, args.max_tokens, args.threads) == (3, 16, 8, 512, 2)
