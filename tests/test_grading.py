import threading

import pytest

from rsim_graph.scoring.grading import extract_answer, extract_boxed, grade, grade_completion


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so \\boxed{42}.", "42"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("first \\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed {7}", "7"),
        ("He has 5 + 3 = 8.\n#### 8", "8"),
        ("no answer here", None),
        ("\\boxed{unclosed", None),
        ("#### 3200\nThe answer is: 3200", "3200"),  # `#### N` need not end the text
        ("#### 12\nthen #### 13\n", "13"),
        ("Adding up, the final answer is 45 apples.\nDone.", "45"),
        ("The answer is 4 bolts in total, which is the result of multiplying", "4"),
        ("The answer is 2x + 3.", "2x + 3"),
        ("The answer is 24% ($37,500 / $80,000 * 100%)", "24%"),
        ("The answer is $1,250.50, paid in full", "$1,250.50"),
        ("The answer is \\frac{1}{2}.", "\\frac{1}{2}"),
        # prose that merely mentions a number is not an answer: this sentence once graded correct against gold 20
        ("To solve this problem, we need to find out how many cups of feed are needed to feed 20 chickens.", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("pred", "gold", "ok"),
    [
        ("1,000", "1000", True),
        ("72", "72.0", True),
        ("-3", "3", False),
        ("\\frac{1}{2}", "0.5", True),
        ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}{2}", True),
        ("x^2+1", "1+x^2", True),
        ("(1,2)", "(1, 2)", True),
        ("5", "6", False),
        (None, "6", False),
        ("", "6", False),
        ("9" * 2000, "9", False),
        ("128", "128 apples", True),  # golds and answers with units grade as numbers
        ("42 apples", "42", True),
        ("$18", "18", True),
        ("2 pi", "2", False),  # but an expression is not a unit
        ("2 x", "2", False),
    ],
)
def test_grade(pred, gold, ok):
    assert grade(pred, gold) is ok


def test_grading_works_off_the_main_thread():
    results = []
    threads = [threading.Thread(target=lambda: results.append(grade("\\frac{2}{4}", "\\frac{1}{2}"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 4


def test_grade_completion_and_boxed_nesting():
    assert grade_completion("steps...\n\\boxed{187}", "187")
    assert extract_boxed("\\boxed{a{b}c}") == "a{b}c"


def test_a_run_that_ends_in_prose_is_graded_wrong_like_a_single_reply():
    from rsim_graph.tasks.base import Problem

    prose = "To solve this problem, we need to find out how many cups of feed are needed to feed 20 chickens."
    assert not grade_completion(prose, "20")
    assert not Problem("How many cups?", "20", kind="numeric").grade_output(extract_answer(prose), prose)
    assert grade_completion("we feed 20 chickens.\n\nThe answer is 20.", "20")
