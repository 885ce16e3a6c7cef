"""The agents' advantages (`trainers/advantages.py`): GRPO's group baseline, and the reasoner's plan and prefix credit."""

from __future__ import annotations

import pytest
import torch

from trainers.advantages import between_plan_share, group_advantages, peer_baselines, reasoner_advantages

# Two prompts x 4 trajectories. Group 1: plans a,a,b,b; group 2: a,a,a,c.
REWARDS = torch.tensor([1.0, 0.0, 3.0, 3.0, 2.0, 0.0, 1.0, 5.0])
PLANS = [("u", "d"), ("u", "d"), ("u", "t"), ("u", "t"), ("d",), ("d",), ("d",), ("s",)]


def test_group_advantages_are_centred_per_group_and_scaled_by_the_groups_std():
    adv = group_advantages(REWARDS, 4, "group")
    expected = torch.cat([(g - g.mean()) / (g.std() + 1e-4) for g in (REWARDS[:4], REWARDS[4:])])
    assert adv.tolist() == pytest.approx(expected.tolist())
    assert group_advantages(REWARDS, 4, "none").tolist() == pytest.approx([-0.75, -1.75, 1.25, 1.25, 0.0, -2.0, -1.0, 3.0])
    batch = group_advantages(REWARDS, 4, "batch")
    assert batch.tolist() == pytest.approx((group_advantages(REWARDS, 4, "none") / (REWARDS.std() + 1e-4)).tolist())
    with pytest.raises(ValueError, match="scale='rank' is not one of group, batch, none"):
        group_advantages(REWARDS, 4, "rank")


def test_peer_baselines_compare_only_within_a_group_and_key():
    # Row 7 has plan ("s",) alone in its group; rows 0-3 never see group 2's rewards.
    assert peer_baselines(REWARDS.tolist(), PLANS, 4) == [0.5, 0.5, 3.0, 3.0, 1.0, 1.0, 1.0, None]


def test_plan_credit_compares_each_trajectory_with_its_groups_same_plan_trajectories():
    adv = reasoner_advantages(REWARDS, PLANS, 4, credit="plan", scale="none")
    assert adv.tolist() == pytest.approx([0.5, -0.5, 0.0, 0.0, 1.0, -1.0, 0.0, 0.0])
    # The same divisor as GRPO: only the baseline differs.
    scaled = reasoner_advantages(REWARDS, PLANS, 4, credit="plan", scale="group")
    assert scaled.tolist() == pytest.approx((adv / (REWARDS.view(2, 4).std(-1, keepdim=True) + 1e-4).repeat_interleave(4).view(-1)).tolist())
    # Nothing of the planner's choices is left in it; the group baseline is mostly the planner's here.
    assert between_plan_share(adv, PLANS, 4) == pytest.approx(0.0, abs=1e-9)
    assert between_plan_share(reasoner_advantages(REWARDS, PLANS, 4, credit="group", scale="none"), PLANS, 4) > 0.8


def test_group_credit_is_grpos():
    assert reasoner_advantages(REWARDS, PLANS, 4, credit="group", scale="group").tolist() == pytest.approx(group_advantages(REWARDS, 4).tolist())


def test_prefix_credit_gives_each_steps_tokens_the_advantage_of_its_plan_so_far():
    rewards = torch.tensor([1.0, 0.0, 0.0, 4.0])
    plans = [("u", "d", "t"), ("u", "d", "t"), ("u", "s", "t"), ("v", "t")]
    lengths = [[2, 3, 1], [2, 1, 2], [1, 1, 1], [2, 2]]  # tokens per step (injected + generated)
    adv = reasoner_advantages(rewards, plans, 4, credit="prefix", scale="none", step_lengths=lengths, width=7)
    assert adv.shape == (4, 7)
    # Step 1 ("u"): rows 0-2 share it (mean 1/3). Step 2: rows 0-1 share ("u","d") (mean 0.5); row 2 is alone.
    # Row 3's "v" is shared by no one: its tokens get 0.
    first, second = 1 - 1 / 3, 0.5
    assert adv[0].tolist() == pytest.approx([first, first, second, second, second, second, 0.0])
    assert adv[1].tolist() == pytest.approx([-1 / 3, -1 / 3, -0.5, -0.5, -0.5, 0.0, 0.0])
    assert adv[2].tolist() == pytest.approx([-1 / 3, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert adv[3].tolist() == [0.0] * 7
    with pytest.raises(ValueError, match="needs each row's step_lengths"):
        reasoner_advantages(rewards, plans, 4, credit="prefix")


def test_unknown_credit_is_refused():
    with pytest.raises(ValueError, match="reasoner_credit='steps' is not one of group, plan, prefix"):
        reasoner_advantages(REWARDS, PLANS, 4, credit="steps")


def fixed_rollout(tokenizer, rows: list[tuple[list[str], list[str], list[int]]]):
    """A `rollout_func` stand-in returning, per trajectory, `(strategies, step texts, tokens per step)` in that order."""

    def rollout(prompts, trainer):
        assert len(prompts) == len(rows)
        cols: dict[str, list] = {}
        for strategies, texts, lengths in rows:
            ids = [5 + (i % 20) for i in range(sum(lengths))]
            row = {
                "prompt_ids": tokenizer.encode("Compute 1+1."), "completion_ids": ids, "env_mask": [1] * len(ids), "logprobs": [-1.0] * len(ids),
                "strategies": strategies, "forced": [False] * len(strategies), "step_texts": texts, "step_lengths": lengths,
                "answer": "", "stop_reason": "terminate", "planner_texts": ["q"] * len(strategies),
                "planner_actions": [0] * len(strategies), "planner_logps": [-2.0] * len(strategies),
            }
            for k, v in row.items():
                cols.setdefault(k, []).append(v)
        return cols

    return rollout


@pytest.mark.parametrize("credit", ["group", "plan", "prefix"])
def test_trainer_hands_the_reasoner_its_credits_advantages(tmp_path, tiny_lm, tokenizer, planner_dir, credit):
    from copy import deepcopy

    from rsim_graph.planners.policy import PolicyPlanner
    from rsim_graph.scoring.rewards import reasoner_reward_funcs
    from tests.conftest import tiny_args
    from trainers.data import arith_dataset
    from trainers.marl_trainer import MARLTrainer

    args = tiny_args(tmp_path, per_device_train_batch_size=8, num_generations=4, reasoner_credit=credit)
    trainer = MARLTrainer(deepcopy(tiny_lm).train(), PolicyPlanner.from_pretrained(planner_dir, seed=0), args,
                          train_dataset=arith_dataset(16), processing_class=tokenizer)
    u, d, t = "understand", "deep-think", "terminate"
    rows = [  # prompt 1 (gold 7): two share a plan and differ in the answer; prompt 2 (gold 9): all plans differ
        ([u, d, t], ["Known: 3.", "3+4=7", "\\boxed{7}"], [2, 3, 2]),
        ([u, d, t], ["Known: 3.", "3+4=8", "\\boxed{8}"], [2, 4, 2]),
        ([d, t], ["3+4=7", "\\boxed{7}"], [3, 1]),
        ([t], ["\\boxed{5}"], [2]),
        ([d, t], ["4+5=9", "\\boxed{9}"], [2, 2]),
        ([u, t], ["Known: 4.", "\\boxed{9}"], [3, 1]),
        ([t], ["\\boxed{8}"], [1]),
        ([u, d, t], ["Known: 4.", "4+5=9", "\\boxed{9}"], [1, 1, 1]),
    ]
    trainer.rollout = fixed_rollout(tokenizer, rows)
    golds = ["7"] * 4 + ["9"] * 4
    out = trainer._generate_and_score_completions([{"prompt": "Compute 1+1.", "solution": g} for g in golds])

    # The reasoner's reward, computed here from the rows: R_acc + R_format + R_follow.
    kw = {"completions": [""] * 8, "solution": golds, "strategies": [r[0] for r in rows], "forced": [[False] * len(r[0]) for r in rows],
          "step_texts": [r[1] for r in rows], "stop_reason": ["terminate"] * 8}
    rewards = torch.tensor([sum(v) for v in zip(*(f(**kw) for f in reasoner_reward_funcs()), strict=True)])
    expected = reasoner_advantages(rewards, [tuple(r[0]) for r in rows], 4, credit=credit, scale="group",
                                   step_lengths=[r[2] for r in rows], width=out["completion_ids"].shape[1])
    torch.testing.assert_close(out["advantages"], expected, atol=1e-5, rtol=0)
    if credit == "plan":  # only the pair that shared a plan is credited, in opposite directions
        assert out["advantages"][0] > 0 > out["advantages"][1] and out["advantages"][2:].tolist() == [0.0] * 6
    if credit == "prefix":
        assert out["advantages"].shape == out["completion_ids"].shape
    logged = trainer._metrics["train"]["credit/between_plan_share"][-1]
    assert logged == pytest.approx(between_plan_share(expected, [tuple(r[0]) for r in rows], 4))
    if credit == "plan":
        assert logged == pytest.approx(0.0, abs=1e-9)
    if credit == "group":  # the planner's part, credited to the reasoner
        assert logged > 0.5
    assert trainer._metrics["train"]["credit/shared_plan_share"][-1] == pytest.approx(2 / 8)


def test_unscorable_rows_are_left_out_of_their_groups_baseline_and_scale():
    rewards = torch.tensor([1.0, float("nan"), 0.0, 2.0, 1.0, 0.0, 1.0, 0.0])
    adv = group_advantages(rewards, 4, "group")
    kept = torch.tensor([1.0, 0.0, 2.0])
    assert adv[1] == 0.0 and not torch.isnan(adv).any()
    assert adv[[0, 2, 3]].tolist() == pytest.approx(((kept - kept.mean()) / (kept.std() + 1e-4)).tolist())
    assert adv[4:].tolist() == pytest.approx(group_advantages(rewards[4:], 4, "group").tolist())  # the other group untouched
    plan = reasoner_advantages(rewards, [("a",)] * 8, 4, credit="plan", scale="none")
    assert plan.tolist() == pytest.approx([0.0, 0.0, -1.0, 1.0, 0.5, -0.5, 0.5, -0.5])


def test_credit_takes_this_processes_rows_and_pads_them_to_its_width(tmp_path, tiny_lm, tokenizer, planner_dir, monkeypatch):
    """Process 1 of 2: the gathered rows are both processes', the advantages are rows 4-7, as wide as its completions."""
    from copy import deepcopy

    import trainers.marl_trainer as mt
    from rsim_graph.planners.policy import PolicyPlanner
    from tests.conftest import tiny_args
    from trainers.data import arith_dataset

    args = tiny_args(tmp_path, per_device_train_batch_size=4, num_generations=4, reasoner_credit="prefix")
    trainer = mt.MARLTrainer(deepcopy(tiny_lm).train(), PolicyPlanner.from_pretrained(planner_dir, seed=0), args,
                             train_dataset=arith_dataset(16), processing_class=tokenizer)
    plans = [["u", "d", "t"], ["u", "d", "t"], ["u", "t"], ["t"], ["d", "t"], ["d", "t"], ["d", "s", "t"], ["u", "t"]]
    lengths = [[1, 2, 1], [2, 2, 1], [1, 1], [3], [2, 3], [1, 1], [1, 1, 1], [4, 1]]
    monkeypatch.setattr(mt, "gather_object", lambda local: plans if isinstance(local[0][0], str) else lengths)
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0, 3.0, 1.0, 0.0, 2.0])
    trainer._reasoner_rewards = torch.stack([rewards, torch.zeros(8), torch.zeros(8)], 1)  # R_acc, R_format, R_follow
    output = {"completion_ids": torch.zeros(4, 9, dtype=torch.long)}  # padded past the longest row (5 tokens)
    trainer._credit_reasoner(output, plans[4:], lengths[4:], 4, slice(4, 8), "train")
    assert output["advantages"].shape == (4, 9)
    expected = reasoner_advantages(rewards, [tuple(p) for p in plans], 4, credit="prefix", step_lengths=lengths, width=9)[4:]
    torch.testing.assert_close(output["advantages"], expected)
    # Row 4 took (d, t) in 2 + 3 tokens: its "d" is shared with rows 5 and 6 (mean 4/3), its (d, t) with row 5 (mean 2).
    scale = rewards[4:].std().item() + 1e-4
    assert output["advantages"][0].tolist() == pytest.approx([(3 - 4 / 3) / scale] * 2 + [(3 - 2) / scale] * 3 + [0.0] * 4)
