import threading

import pytest

from rsim_graph.grading import extract_answer, extract_boxed, grade, grade_completion


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
