"""Answer extraction and grading: the one grader that rewards and evals both use.

math-verify bounds its own run time with `signal.alarm`, which only works on the main thread; the
server and threaded evals grade in worker threads. So its timeouts are switched off and the time
is bounded here instead: inputs are capped in length, plain numbers take an exact fast path, and
math-verify runs in a daemon thread that is abandoned (graded wrong) when it overruns.
"""

from __future__ import annotations

import logging
import re
import threading
from fractions import Fraction

from math_verify import parse, verify

logger = logging.getLogger(__name__)


class _DropTimeoutDisabled(logging.Filter):
    """math-verify warns on every first use that its timeouts are off; we bound time ourselves (above)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropTimeoutDisabled())

MAX_ANSWER_CHARS = 1000  # longer "answers" are not graded: they are not answers, and sympy may stall on them
GRADE_TIMEOUT_S = 5.0
# Trailing words after a number: units ("128 apples", "18 dollars", "3 hours"), at most three words.
# Not single letters or "pi": "2 x" and "2 pi" are expressions, not 2.
_UNIT = re.compile(r"(?<=\d)\s*(?:%|(?:\s*(?!pi\b)[A-Za-z][A-Za-z.']+){1,3})$")
_NUMBER = re.compile(r"^[-+]?(\d{1,3}(,\d{3})+|\d+)?(\.\d+)?$|^[-+]?\d+/\d+$")


def extract_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}`, braces balanced.

    >>> extract_boxed(r"so \\boxed{\\frac{1}{2}} and \\boxed{7}")
    '7'
    >>> extract_boxed("no box") is None
    True
    """
    start = text.rfind("\\boxed")
    while start != -1:
        i = text.find("{", start)
        if i != -1 and text[start + len("\\boxed") : i].strip() == "":
            depth = 0
            for j in range(i, len(text)):
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                if depth == 0:
                    return text[i + 1 : j].strip()
        start = text.rfind("\\boxed", 0, start)
    return None


_HASHES = re.compile(r"####[ \t]*([^\n]*\S)")
# A number that opens a stated answer and is followed by a unit word, punctuation or nothing (not "2x + 3").
_LEADING_NUMBER = re.compile(r"^\$?-?\d[\d,]*(\.\d+)?(/\d+)?%?(?=\s*$|\s*[,;.(]|\s+[A-Za-z]{2,})")
_ANSWER_IS = re.compile(r"\b(?:the )?(?:final )?answer is\s*:?\s*([^\n]*?)\s*\.?\s*(?:\n|$)", re.IGNORECASE)


def extract_answer(text: str) -> str | None:
    """The answer a completion states, or None: never free prose.

    In order: the last `\\boxed{}` (MATH, AIME and our strategy prompts); else the last `#### N` line
    (GSM8K's reference format); else the last "The answer is X" (the chain-of-thought prompting
    convention). The last number of the text (lm-eval's "flexible extract") is deliberately not used:
    it grades a sentence such as "we need to find out how much feed 20 chickens need" as 20.

    >>> extract_answer("Natalia sold 48+24 = 72 clips.\\n#### 72")
    '72'
    >>> extract_answer("#### 3200\\nThe answer is: 3200"), extract_answer("So the answer is 42 apples.")
    ('3200', '42')
    >>> extract_answer("we need to find out how many cups feed 20 chickens.") is None
    True
    """
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    for pattern in (_HASHES, _ANSWER_IS):
        found = [m.group(1).strip() for m in pattern.finditer(text) if m.group(1).strip()]
        if found:
            lead = _LEADING_NUMBER.match(found[-1])  # "4 bolts in total, which is ..." states 4
            return lead.group(0).strip() if lead else found[-1]
    return None


def _as_number(s: str) -> Fraction | None:
    s = s.strip().strip("$").replace("\\!", "").strip()
    s = re.sub(r"^\\text\{(.*)\}$", r"\1", s)
    s = _UNIT.sub("", s).strip().strip("$").strip()  # "128 apples", "$18", "45%": the number is the answer
    if not _NUMBER.match(s) or s in {"", "+", "-", "."}:
        return None
    try:
        return Fraction(s.replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None


def math_equal(gold: str, pred: str) -> bool:
    """math-verify alone (no exact-match shortcut, no time bound): whether `pred` equals `gold`."""
    g = parse(f"${gold}$", parsing_timeout=None) or parse(gold, parsing_timeout=None)
    p = parse(f"${pred}$", parsing_timeout=None) or parse(pred, parsing_timeout=None)
    return bool(g and p and verify(g, p, timeout_seconds=None))


def grade(pred: str | None, gold: str, *, timeout_s: float = GRADE_TIMEOUT_S) -> bool:
    """Whether answer `pred` equals `gold` (both already extracted, e.g. by `extract_answer`).

    Safe in any thread. Numbers compare exactly; anything else goes to math-verify.

    >>> grade("1,000", "1000"), grade("\\\\frac{1}{2}", "0.5"), grade(None, "3")
    (True, True, False)
    """
    if pred is None or not pred.strip():
        return False
    if len(pred) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
        return False
    p, g = _as_number(pred), _as_number(gold)
    if p is not None and g is not None:
        return p == g
    if pred.strip() == gold.strip():
        return True
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(math_equal(gold, pred)), daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        logger.warning("grading %r against %r timed out after %.1fs; graded wrong", pred[:50], gold[:50], timeout_s)
        return False
    return bool(result and result[0])


_CHOICE = re.compile(r"^\(?([A-P])\)?(?:[.:)\s]|$)")


def grade_choice(pred: str | None, gold: str) -> bool:
    """Multiple choice: whether the option letter of `pred` (`"C"`, `"(C)"`, `"C. 42"`, `"\\text{C}"`) is `gold`.

    >>> grade_choice("(C) 42", "C"), grade_choice("\\text{B}", "C"), grade_choice(None, "C")
    (True, False, False)
    """
    if not pred:
        return False
    text = re.sub(r"^\\text\{(.*)\}$", r"\1", pred.strip())
    m = _CHOICE.match(text)
    return bool(m) and m.group(1) == gold.strip().upper()


def extract_choice(text: str) -> str | None:
    """The option letter a reply settles on when it has no `\\boxed{}`: the last "answer is (X)".

    >>> extract_choice("So the answer is (B). Check: fine."), extract_choice("no letter") is None
    ('B', True)
    """
    found = re.findall(r"answer is:?\s*\(?([A-P])\b", text)
    return found[-1] if found else None


def grade_completion(completion: str, gold: str) -> bool:
    """Extract the answer from a completion and grade it."""
    return grade(extract_answer(completion), gold)
