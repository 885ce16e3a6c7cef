import pytest

from rsim_graph.scoring.rewards import (
    accuracy_reward,
    follow_reward,
    format_reward,
    make_follow_reward,
    planner_reward_funcs,
    reasoner_reward_funcs,
    strategy_penalty_reward,
    terminal_reward,
)
from rsim_graph.strategies import Strategy


def test_accuracy_reward_on_text_and_conversational_completions():
    comps = ["x \\boxed{12}", [{"role": "assistant", "content": "\\boxed{13}"}], "no box"]
    assert accuracy_reward(comps, ["12", "12", "12"]) == [1.0, 0.0, 0.0]
    assert accuracy_reward(["\\boxed{1}"], [None]) == [None]


def test_penalty_is_minus_the_share_of_the_most_used_strategy():
    used = [["deep-think"] * 3 + ["terminate"], ["understand", "validate", "terminate"], []]
    assert strategy_penalty_reward([""] * 3, used) == [-0.75, pytest.approx(-1 / 3), None]


def test_terminal_reward_counts_forced_terminate_as_failure():
    used = [["a", "terminate"], ["a", "terminate"], ["terminate", "a"]]
    forced = [[False, False], [False, True], [False, False]]
    assert terminal_reward([""] * 3, used, forced=forced) == [1.0, -1.0, -1.0]
    assert terminal_reward([""], [["terminate"]]) == [1.0]


def test_format_reward():
    steps = [["a = 1", "\\boxed{1}"], ["\\boxed{1}", "\\boxed{2}"], ["", "\\boxed{1}"], ["a = 1", "1"]]
    assert format_reward([""] * 4, step_texts=steps) == [1.0, 0.0, 0.0, 0.0]


def test_follow_reward_judges_each_step_by_its_strategy(library):
    used = [["validate", "deep-think", "terminate"], ["validate", "terminate"]]
    texts = [["Check 68-45=23 ok.", "68*3 = 204", "\\boxed{204}"], ["looks fine", "204"]]
    assert follow_reward(["", ""], used, texts) == [1.0, 0.0]
    lib = library.extend([Strategy("estimate", "Estimate", "Estimate.", follow="about")])
    assert make_follow_reward(lib)([""], [["estimate"]], [["about 5"]]) == [1.0]


def test_reward_sets_match_the_paper():
    assert [f.__name__ for f in planner_reward_funcs()] == ["accuracy_reward", "strategy_penalty_reward", "terminal_reward"]
    assert [f.__name__ for f in reasoner_reward_funcs()] == ["accuracy_reward", "format_reward", "follow_reward"]
