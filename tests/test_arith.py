import random
from collections import Counter

import pytest

from rsim_graph.errors import InputError
from rsim_graph.scoring.grading import extract_answer
from rsim_graph.strategies import StrategyLibrary
from rsim_graph.tasks.arith import ArithConfig, ArithWorld, apply, parse_question
from rsim_graph.tasks.arith_traces import (
    Trace,
    columns,
    injected_trace,
    zero_cot,
)


def test_generator_is_deterministic_and_splits_are_disjoint():
    a, b = ArithWorld(split="test").problems(50), ArithWorld(split="test").problems(50)
    assert [p.question for p in a] == [p.question for p in b]
    train = {p.question for p in ArithWorld(split="train").problems(2000)}
    test = ArithWorld(split="test").problems(500)
    assert len({p.question for p in test} & train) < 10  # only tiny problems can coincide by value
    assert ArithWorld(split="test", seed=1).problem(0).question != a[0].question


def test_answers_are_exact_and_questions_parse_back():
    for p in ArithWorld(ArithConfig(word_share=0.5), split="train").problems(300):
        start, ops = p.meta["start"], p.meta["ops"]
        v = start
        for op in ops:
            v = apply(v, op)
        assert p.answer == str(v) and v >= 0
        assert parse_question(p.question) == (start, ops)
        assert p.grade(str(v)) and not p.grade(str(v + 1))
    assert parse_question("What is the capital of France?") is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_ops": 0}, "at least one operation"),
        ({"digits": 0}, "digits must be 1 to 4"),
        ({"operators": ("/",)}, "unknown ArithWorld operators"),
        ({"slip": 1.5}, "probabilities"),
    ],
)
def test_impossible_configs_are_refused(kwargs, message):
    with pytest.raises(InputError, match=message):
        ArithConfig(**kwargs)


def test_column_work_is_right():
    rng = random.Random(0)
    for _ in range(500):
        v, o = rng.randint(0, 999), rng.choice("+-*")
        n = rng.randint(2, 9) if o == "*" else rng.randint(0, v if o == "-" else 99)
        assert columns(v, (o, n)).endswith(f"-> {apply(v, (o, n))}")


def test_every_strategy_has_its_behaviour_in_the_traces(library):
    world = ArithWorld(split="train")
    seen: dict[str, list[str]] = {s: [] for s in library.ids}
    for i in range(400):
        for s, text in injected_trace(world.problem(i), random.Random(i), 0.4, library, expert=i % 2 == 0):
            seen[s].append(text)
            assert library.get(s).followed_by(text), (s, text)
    joined = {s: "\n".join(t) for s, t in seen.items()}
    assert all(seen.values())
    assert "Known: start" in joined["understand"]
    assert "Parts: s1" in joined["decompose"]
    assert "Plan: next s" in joined["sub-plan"]
    assert " c1" in joined["deep-think"] and " b1" in joined["deep-think"]  # column by column, with carries and borrows
    assert " ok." in joined["validate"] and " fails." in joined["validate"]  # inverse-operation checks catch slips
    assert "; corrected " in joined["self-reflect"] and "; correct." in joined["self-reflect"]
    assert "Back: drop s" in joined["backtrack"]
    assert "Values so far:" in joined["summarize"]
    assert all("\\boxed{" in t for t in seen["terminate"])


def test_self_reflect_repairs_a_slip_and_backtrack_drops_it():
    t = Trace(76, [("*", 4)], slip=1.0, rng=random.Random(0))
    t.oneshot()
    assert t.value != 304
    assert "corrected" in t.step("self-reflect") and t.value == 304
    t.values[-1] = 999
    assert "fails" in t.step("validate")
    assert t.step("backtrack") == "Back: drop s1 = 999, return to 76." and t.value == 76


def test_plain_chain_of_thought_takes_short_cuts_and_slips():
    world = ArithWorld(split="train")
    right = Counter()
    for i in range(600):
        p = world.problem(i)
        zc = zero_cot(p, random.Random(i), 0.4)
        assert ":" not in zc  # no column work: every operation in one go
        right["zero-cot"] += extract_answer(zc) == p.answer
        expert = injected_trace(p, random.Random(i), 0.4, StrategyLibrary.default(), expert=True)
        right["expert"] += extract_answer(expert[-1][1]) == p.answer
    assert right["expert"] - right["zero-cot"] > 0.3 * 600


