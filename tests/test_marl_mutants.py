"""Tests written against mutants of the trainer that passed every other test (one small bug each). Which
mutants each test kills (numbers as in the issue):

- `test_planner_advantages_are_group_normalised_sums_of_the_planners_rewards` (each weight and scale setting):
  1 (planner advantages sign-flipped), 2 (normalised over the whole batch, not per prompt), 3 (not normalised),
  4 (R_penalty dropped from the planner's reward), 5 (R_terminal dropped); also the planner reading the
  reasoner's reward columns.
- `test_lambda_scales_every_parameter_group_of_each_agent`: 6 (λ not applied to the reasoner's no-decay group).
- `test_warmup_keeps_formatted_wrong_trajectories_only`: 7 (the warm-up's format filter removed); also the
  warm-up keeping correct trajectories.
- `test_validation_keeps_and_restores_the_best_pair`: 8 (validation keeping the worst pair).
- `test_warm_up_sft_loss_skips_the_injected_text`: 9 (the warm-up's SFT trained on the injected text too).
- `test_planner_ratio_is_clipped_against_the_sampling_log_probs`: 10 (the planner's ratio against its own
  detached log-probabilities, so it is always 1 and never clipped).

And the two fixes that came with them: `test_validation_says_when_no_step_beat_step_0` (load_best's
`improved` flag and warning) and `test_checkpoint_without_marl_state_is_incomplete` (check_checkpoint and
resume refuse a checkpoint without `marl_state.json`).
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import warnings
from collections import Counter
from copy import deepcopy

import pytest
import torch

from rsim_graph.errors import CheckpointError
from rsim_graph.planners.base import planner_text
from rsim_graph.planners.policy import PolicyPlanner
from rsim_graph.planners.simple import ScriptedPlanner
from rsim_graph.reasoners.base import StepOutput
from tests.conftest import ScriptedReasoner, tiny_args
from trainers.data import arith_dataset
from trainers.marl_trainer import STATE_FILE, MARLTrainer, check_checkpoint
from trainers.rollout import trajectory_row


def make_trainer(tmp_path, tiny_lm, tokenizer, planner_dir, **overrides) -> MARLTrainer:
    planner = PolicyPlanner.from_pretrained(planner_dir, seed=0)
    args = tiny_args(tmp_path, **overrides)
    return MARLTrainer(deepcopy(tiny_lm).train(), planner, args, train_dataset=arith_dataset(16), processing_class=tokenizer)


# -- mutants 1-5: the planner's advantages ----------------------------------------------------------------

# Two prompts x four generations, as (strategies, which step the graph forced, final step text). Within group A,
# rows 0/1 differ in R_acc alone, rows 1/2 in R_penalty alone, rows 1/3 in R_terminal alone (a forced terminate),
# so dropping any column, or any other change to the reward, changes the advantages. The groups' means and spreads
# differ, so normalising over the batch does too.
GROUPS = {
    ("What is 3*4?", "12"): [
        (["understand", "deep-think", "terminate"], None, "\\boxed{12}"),  # R = 1 - 1/3 + 1
        (["understand", "deep-think", "terminate"], None, "\\boxed{13}"),  # R = 0 - 1/3 + 1
        (["deep-think", "deep-think", "terminate"], None, "\\boxed{13}"),  # R = 0 - 2/3 + 1
        (["understand", "deep-think", "terminate"], 2, "\\boxed{13}"),  # R = 0 - 1/3 - 1
    ],
    ("What is 2+5?", "7"): [
        (["validate", "terminate"], None, "\\boxed{7}"),  # R = 1 - 1/2 + 1
        (["validate", "validate", "terminate"], 2, "\\boxed{7}"),  # R = 1 - 2/3 - 1
        (["deep-think", "terminate"], None, "\\boxed{8}"),  # R = 0 - 1/2 + 1
        (["understand", "validate", "terminate"], None, "\\boxed{7}"),  # R = 1 - 1/3 + 1
    ],
}


def fixed_rows(tokenizer, library) -> list[dict]:
    """The rollout's rows for GROUPS, built by the rollout's own `trajectory_row` from graph-shaped states."""
    rows = []
    for (question, _), trajectories in GROUPS.items():
        for strategies, forced_at, last in trajectories:
            steps = []
            for i, sid in enumerate(strategies):
                text = last if sid == "terminate" else f"step {i}: {sid} of {question}"
                ids = tokenizer(text, add_special_tokens=False)["input_ids"]
                forced = i == forced_at
                steps.append({
                    "strategy": sid, "forced": forced, "planner_logprob": None if forced else -1.5, "text": text,
                    "prompt_ids": [7], "completion_ids": ids, "logprobs": [-0.5] * len(ids),
                })
            state = {
                "question": question, "steps": steps, "question_ids": tokenizer(question, add_special_tokens=False)["input_ids"],
                "answer": last, "stop_reason": "max_steps" if forced_at is not None else "terminate",
            }
            rows.append(trajectory_row(state, library, planner_text))
    return rows


def expected_rewards(rows: list[dict], golds: list[str]) -> list[tuple[float, float, float]]:
    """(R_acc, R_penalty, R_terminal) of each row, computed here from the row's own columns."""
    out = []
    for row, gold in zip(rows, golds, strict=True):
        acc = 1.0 if row["step_texts"][-1] == f"\\boxed{{{gold}}}" else 0.0
        penalty = -max(Counter(row["strategies"]).values()) / len(row["strategies"])
        terminal = 1.0 if row["strategies"][-1] == "terminate" and not row["forced"][-1] else -1.0
        out.append((acc, penalty, terminal))
    return out


@pytest.mark.parametrize(
    ("weights", "scale"),
    [([1.0, 1.0, 1.0], None), ([2.0, 0.5, 1.5], None), ([1.0, 1.0, 1.0], "group"), ([2.0, 0.5, 1.5], "batch"), ([2.0, 0.5, 1.5], "none")],
    ids=["paper-default", "weighted-default", "paper-group", "weighted-batch", "weighted-none"],
)
def test_planner_advantages_are_group_normalised_sums_of_the_planners_rewards(tmp_path, tiny_lm, tokenizer, planner_dir, library, weights, scale):
    G = 4
    options = {} if scale is None else {"planner_scale_rewards": scale}  # None: the config's default, GRPO's group std
    trainer = make_trainer(
        tmp_path, tiny_lm, tokenizer, planner_dir, per_device_train_batch_size=2 * G, num_generations=G, planner_reward_weights=weights, **options
    )
    rows = fixed_rows(tokenizer, library)
    asked = []

    def rollout(prompts, _trainer):
        asked.extend(prompts)
        return {key: [r[key] for r in rows] for key in rows[0]}

    trainer.rollout = rollout  # what the trainer's rollout_func calls
    inputs = [{"prompt": q, "solution": gold} for (q, gold) in GROUPS for _ in range(G)]
    output = trainer._generate_and_score_completions(inputs)
    assert asked == [q for (q, _) in GROUPS for _ in range(G)]

    golds = [gold for (_, gold) in GROUPS for _ in range(G)]
    parts = expected_rewards(rows, golds)
    # The rollout really exercises each column: these are the values the comments in GROUPS state.
    assert [p[0] for p in parts] == [1, 0, 0, 0, 1, 1, 0, 1]
    assert [p[1] for p in parts] == pytest.approx([-1 / 3, -1 / 3, -2 / 3, -1 / 3, -1 / 2, -2 / 3, -1 / 2, -1 / 3])
    assert [p[2] for p in parts] == [1, 1, 1, -1, 1, -1, 1, 1]
    reward = [sum(w * x for w, x in zip(weights, p, strict=True)) for p in parts]
    expected = []
    for g in range(len(GROUPS)):
        group = reward[g * G : (g + 1) * G]
        # the divisor: the group's std (torch's, the sample std), the whole batch's, or none (Dr. GRPO)
        divisor = {None: statistics.stdev(group) + 1e-4, "group": statistics.stdev(group) + 1e-4, "batch": statistics.stdev(reward) + 1e-4, "none": 1.0}[scale]
        expected += [(r - statistics.fmean(group)) / divisor for r in group]
    got = output["planner_advantages"]
    assert got.shape == (2 * G,)
    assert got.tolist() == pytest.approx(expected, abs=1e-5)
    # the planner's decisions pass through to its loss unchanged
    assert output["planner_actions"] == [r["planner_actions"] for r in rows]
    assert output["planner_logps"] == [r["planner_logps"] for r in rows]
    # the logged reward columns are the planner's (and R_format / R_follow the reasoner's), whatever the weights
    metrics = trainer._metrics["train"]
    for name, column in (("R_acc", 0), ("R_penalty", 1), ("R_terminal", 2)):
        assert metrics[name][-1] == pytest.approx(statistics.fmean(p[column] for p in parts)), name
    assert metrics["accuracy"][-1] == pytest.approx(4 / 8)


# -- mutant 10: the planner's clipped ratio ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("log_ratio", "advantage", "clipped"),
    [
        (math.log(2.0), 1.0, True),  # ratio 2 > 1 + ε with a positive advantage: the clipped term wins, no gradient
        (math.log(0.5), -1.0, True),  # ratio 0.5 < 1 - ε with a negative advantage: clipped too
        (math.log(1.1), 1.0, False),  # inside 1 ± ε: the plain ratio
        (math.log(0.5), 1.0, False),  # below 1 - ε but a positive advantage: the pessimistic (unclipped) term
    ],
    ids=["above-positive-clipped", "below-negative-clipped", "inside", "below-positive-unclipped"],
)
def test_planner_ratio_is_clipped_against_the_sampling_log_probs(tmp_path, tiny_lm, tokenizer, planner_dir, library, log_ratio, advantage, clipped):
    trainer = make_trainer(tmp_path, tiny_lm, tokenizer, planner_dir, planner_epsilon=0.2, planner_entropy_coef=0.0, planner_beta=0.0)
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop
    planner = trainer.planner.eval()  # no dropout: the loss pass sees exactly the log-probs computed here
    texts = ["Compute (12+7)*3.\n[next]", "Compute (12+7)*3.\n[understand] Known: 12.\n[next]"]
    actions = [library.index("deep-think"), library.index("validate")]
    with torch.no_grad():
        now = torch.log_softmax(planner(texts).float(), -1)[torch.arange(2), actions]
    old = now - log_ratio  # the sampling-time log-probs: new / old = exp(log_ratio)
    inputs = {
        "planner_texts": [texts], "planner_actions": [actions], "planner_logps": [old.tolist()],
        "planner_advantages": torch.tensor([advantage]),
    }
    loss = trainer._planner_loss(inputs)
    ratio = math.exp(log_ratio)
    kept = min(ratio * advantage, min(max(ratio, 0.8), 1.2) * advantage)
    assert loss.item() == pytest.approx(-kept, abs=1e-4)
    planner.zero_grad()
    loss.backward()
    grads = [p.grad for p in planner.parameters() if p.requires_grad]
    total = sum(float(g.abs().sum()) for g in grads if g is not None)
    if clipped:
        assert total == 0.0
    else:
        assert total > 0 and planner.head.weight.grad.abs().sum() > 0


# -- mutant 6: λ on every parameter group --------------------------------------------------------------


def test_lambda_scales_every_parameter_group_of_each_agent(tmp_path, tiny_lm, tokenizer, planner_dir):
    trainer = make_trainer(
        tmp_path, tiny_lm, tokenizer, planner_dir, max_steps=3, stage2_start_step=1, learning_rate=1e-3, planner_learning_rate=1e-2,
        lr_scheduler_type="constant", weight_decay=0.01,
    )
    trainer.create_optimizer_and_scheduler(num_training_steps=3)
    *reasoner_groups, planner_group = trainer.optimizer.param_groups
    # TRL's two groups over the reasoner: decayed weights, and (this model has no biases) norm weights without decay
    assert len(reasoner_groups) == 2 and all(g["params"] for g in reasoner_groups)
    assert [g["weight_decay"] for g in reasoner_groups] == [0.01, 0.0]
    no_decay = {id(p) for p in reasoner_groups[1]["params"]}
    names = [n for n, p in trainer.model.named_parameters() if id(p) in no_decay]
    assert "model.norm.weight" in names and all("norm" in n for n in names), names
    assert {id(p) for p in planner_group["params"]} == trainer.planner_ids

    seen = []
    for step in range(3):
        seen.append([g["lr"] for g in trainer.optimizer.param_groups])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a scheduler step without an optimizer step
            trainer.lr_scheduler.step()
    stage1 = [0.3 * 1e-3] * len(reasoner_groups) + [0.7 * 1e-2]
    stage2 = [0.7 * 1e-3] * len(reasoner_groups) + [0.3 * 1e-2]
    for step, lrs in enumerate(seen):
        assert lrs == pytest.approx(stage1 if step < 1 else stage2), (step, lrs)


# -- mutant 7: the warm-up's filter ------------------------------------------------------------------


class WarmupReasoner(ScriptedReasoner):
    """Per question, a final step (and a first step) that is formatted or not, right or wrong."""

    WRITES = {  # question: (first step, final step); golds are 2 * i for "What is i+i?"
        "What is 1+1?": ("1+1 makes two", "\\boxed{3}"),  # formatted, wrong: a sample
        "What is 2+2?": ("2+2 makes four", "the sum is five"),  # no answer stated: unformatted (and wrong)
        "What is 3+3?": ("", "\\boxed{7}"),  # an empty step: unformatted (and wrong)
        "What is 4+4?": ("4+4 makes eight", "\\boxed{8}"),  # formatted and right: not a sample
        "What is 5+5?": ("\\boxed{1}", "\\boxed{11}"),  # two boxes: unformatted (and wrong)
        "What is 6+6?": ("6+6 makes twelve", "#### 13"),  # formatted, wrong: a sample
    }

    def step(self, request):
        self.requests.append(request)
        first, final = self.WRITES[request.question]
        text = final if request.strategy == "terminate" else first
        return StepOutput(text=text, question_ids=[1, 2, 3], prompt_ids=[7], completion_ids=[9] * 3, logprobs=[-0.5] * 3)


def test_warmup_keeps_formatted_wrong_trajectories_only(library):
    from rsim_graph.scoring.rewards import accuracy_reward, format_reward
    from trainers.sft import collect_warmup

    questions = list(WarmupReasoner.WRITES)
    golds = [str(2 * (i + 1)) for i in range(len(questions))]
    reasoner = WarmupReasoner()
    samples, drawn = collect_warmup(ScriptedPlanner(["deep-think"]), reasoner, library, questions, golds, 100, chunk=4)
    assert drawn == len(questions) and {r.question for r in reasoner.requests} == set(questions)
    # the rewards agree with the comments above
    texts = [list(WarmupReasoner.WRITES[q]) for q in questions]
    assert format_reward([""] * 6, step_texts=texts) == [1.0, 0.0, 0.0, 1.0, 0.0, 1.0]
    assert accuracy_reward([""] * 6, golds, step_texts=texts) == [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    got = dict(samples)
    assert sorted(got) == ["What is 1+1?", "What is 6+6?"]
    assert got["What is 1+1?"] == [("deep-think", "1+1 makes two"), ("terminate", "\\boxed{3}")]
    assert got["What is 6+6?"] == [("deep-think", "6+6 makes twelve"), ("terminate", "#### 13")]


# -- mutant 9: the warm-up's SFT loss -----------------------------------------------------------------


def test_warm_up_sft_loss_skips_the_injected_text(tmp_path, tiny_lm, tokenizer, planner_dir, library, monkeypatch):
    import trainers.marl
    from trl import SFTTrainer

    from rsim_graph.reasoners.hf import HFReasoner
    from trainers.marl import MARLScriptArguments, warm_up, warmup_config
    from trainers.sft import tokenize_sample

    samples = [
        ("What is 1+2?", [("deep-think", "1+2 = 3"), ("terminate", "\\boxed{4}")]),
        ("What is 5*3?", [("understand", "5 times 3"), ("validate", "check 15"), ("terminate", "\\boxed{16}")]),
    ]
    monkeypatch.setattr(trainers.marl, "collect_warmup", lambda *a, **k: (samples, 7))
    seen = []
    real_loss = SFTTrainer.compute_loss

    def compute_loss(self, model, inputs, *args, **kwargs):
        seen.append({k: v.detach().clone() for k, v in inputs.items() if isinstance(v, torch.Tensor)})
        return real_loss(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(SFTTrainer, "compute_loss", compute_loss)
    script_args = MARLScriptArguments(warmup_learning_rate=1e-4)
    training_args = tiny_args(tmp_path, per_device_train_batch_size=2, injection="prefill", use_cpu=True)
    assert warmup_config(script_args, training_args).completion_only_loss is True
    model = deepcopy(tiny_lm)
    result = warm_up(script_args, training_args, model, tokenizer, None, library, {"prompt": [], "solution": []})
    assert result["samples"] == 2 and result["rollouts"] == 7 and math.isfinite(result["loss"])
    assert len(seen) == 1  # one step of two samples

    batch = seen[0]
    reference = HFReasoner(tiny_lm, tokenizer)
    wanted = [tokenize_sample(reference, q, steps, library, "prefill") for q, steps in samples]
    assert sorted(batch["input_ids"].shape) == sorted((2, max(len(w["input_ids"]) for w in wanted)))
    matched = 0
    for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist(), strict=True):
        (w,) = [w for w in wanted if ids[: len(w["input_ids"])] == w["input_ids"]]
        n = len(w["input_ids"])
        assert labels[:n] == [t if m else -100 for t, m in zip(w["input_ids"], w["completion_mask"], strict=True)]
        assert all(x == -100 for x in labels[n:])  # padding
        matched += 1
    assert matched == 2
    own = [tokenizer.decode([t for t in labels if t != -100]) for labels in batch["labels"].tolist()]
    assert sorted(own) == sorted(["1+2 = 3\n\n\\boxed{4}\n\n", "5 times 3\n\ncheck 15\n\n\\boxed{16}\n\n"])


# -- mutant 8 and fix (a): validation keeps the best pair --------------------------------------------------


def run_validations(monkeypatch, trainer, accuracies: list[float]):
    """Validate at steps 0, 1, ... with `accuracies`, the agents' weights set to step + 1 at each."""
    import trainers.validation
    from trainers.validation import Validation

    scores = iter(accuracies)
    monkeypatch.setattr(trainers.validation, "greedy_accuracy", lambda *a: next(scores))
    validation = Validation(trainer, [], every=1, limits={})
    for step in range(len(accuracies)):
        mark(trainer, step + 1.0)
        validation.validate(step)
    return validation


def mark(trainer, value: float) -> None:
    with torch.no_grad():
        trainer.planner.head.weight.fill_(value)
        trainer.model.model.layers[0].mlp.up_proj.weight.fill_(value)


def marks(trainer) -> tuple[float, float]:
    head, up = trainer.planner.head.weight, trainer.model.model.layers[0].mlp.up_proj.weight
    assert head.min() == head.max() and up.min() == up.max()
    return head[0, 0].item(), up[0, 0].item()


def test_validation_keeps_and_restores_the_best_pair(tmp_path, tiny_lm, tokenizer, planner_dir, monkeypatch, caplog):
    from safetensors.torch import load_file

    trainer = make_trainer(tmp_path, tiny_lm, tokenizer, planner_dir)
    validation = run_validations(monkeypatch, trainer, [0.25, 0.75, 0.5, 0.125])
    assert validation.best == {"step": 1, "accuracy": 0.75}
    record = json.loads((validation.best_dir / "validation.json").read_text())
    assert record["best"] == {"step": 1, "accuracy": 0.75}
    assert [(h["step"], h["accuracy"]) for h in record["history"]] == [(0, 0.25), (1, 0.75), (2, 0.5), (3, 0.125)]
    # best/ holds the step-1 pair
    saved_planner = PolicyPlanner.from_pretrained(validation.best_dir / "planner")
    assert torch.all(saved_planner.head.weight == 2.0)
    saved_reasoner = load_file(validation.best_dir / "reasoner" / "model.safetensors")
    assert torch.all(saved_reasoner["model.layers.0.mlp.up_proj.weight"] == 2.0)

    mark(trainer, 9.0)
    with caplog.at_level(logging.WARNING, logger="trainers.validation"):
        best = validation.load_best()
    assert best == {"step": 1, "accuracy": 0.75, "improved": True}
    assert marks(trainer) == (2.0, 2.0)
    assert "no validation beat" not in caplog.text


def test_validation_says_when_no_step_beat_step_0(tmp_path, tiny_lm, tokenizer, planner_dir, monkeypatch, caplog):
    trainer = make_trainer(tmp_path, tiny_lm, tokenizer, planner_dir)
    validation = run_validations(monkeypatch, trainer, [0.5, 0.5, 0.25])  # a tie does not beat step 0
    mark(trainer, 9.0)
    with caplog.at_level(logging.WARNING, logger="trainers.validation"):
        best = validation.load_best()
    assert best == {"step": 0, "accuracy": 0.5, "improved": False}
    assert "no validation beat step 0 (50.0%): the final pair is the step-0 pair" in caplog.text
    assert marks(trainer) == (1.0, 1.0)  # the step-0 weights are back


# -- fix (b): a checkpoint without marl_state.json --------------------------------------------------------


def test_checkpoint_without_marl_state_is_incomplete(tmp_path, tiny_lm, tokenizer, planner_dir):
    import shutil

    from safetensors.torch import save_file

    ckpt = tmp_path / "checkpoint-2"
    ckpt.mkdir()
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    save_file({"w": torch.zeros(2)}, ckpt / "model.safetensors")
    torch.save({"state": {}, "param_groups": []}, ckpt / "optimizer.pt")
    shutil.copytree(planner_dir, ckpt / "planner")
    (ckpt / STATE_FILE).write_text(json.dumps({"stage": 2, "lambda": 0.3, "stage2_start_step": 1}))
    check_checkpoint(ckpt)  # whole: no error

    (ckpt / STATE_FILE).write_text("{")
    with pytest.raises(CheckpointError, match=r"is corrupt \(marl_state.json"):
        check_checkpoint(ckpt)
    (ckpt / STATE_FILE).unlink()
    with pytest.raises(CheckpointError, match=r"checkpoint .*checkpoint-2 is incomplete \(no marl_state.json\); resume from an earlier"):
        check_checkpoint(ckpt)
    # resuming past check_checkpoint (the trainer called directly) refuses it too, before loading anything
    trainer = make_trainer(tmp_path, tiny_lm, tokenizer, planner_dir)
    before = {k: v.clone() for k, v in trainer.planner.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"incomplete \(no marl_state.json\): its stage schedule is unknown"):
        trainer._load_from_checkpoint(str(ckpt))
    assert trainer.saved_stage2_step is None
    assert all(torch.equal(v, before[k]) for k, v in trainer.planner.state_dict().items())
