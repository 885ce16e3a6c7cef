"""ArithWorld: procedural multi-step arithmetic where the choice of strategy decides the answer.

A problem starts from a number and applies `ops` operations left to right, given as an expression
(`Compute ((23+45)*3)-17.`) or as a short word problem. The world's rules, which the teacher traces
below encode and the tiny reasoner learns from them:

- a step with no strategy (plain chain of thought) computes an operation in one go, and in one go an
  operation with a carry, a borrow or a multi-digit product comes out wrong with probability `slip`;
- `deep-think` computes the next operation column by column, and is always right;
- `validate` checks the last result with the inverse operation and says `ok` or `fails`;
- `self-reflect` re-derives the last operation column by column and corrects it when it differs;
- `backtrack` drops the last result and returns to the value before it;
- `sub-plan` plans the next operations and carries out the next one in one go (so it may slip);
- `understand`, `decompose` and `summarize` restate the question, the parts and the values so far,
  and compute nothing;
- `terminate` finishes any remaining operations in one go, then writes `\\boxed{}`.

So a planner that thinks deeply before every carry, or validates and repairs, beats plain chain of
thought; a planner that stops early or wastes steps does not.
"""

from __future__ import annotations

import random
import re
import zlib
from dataclasses import dataclass

from rsim_graph.errors import InputError
from rsim_graph.tasks.base import Problem

OPERATORS = ("+", "-", "*")
TRAIN_SEED_BASE = 0
TEST_SEED_BASE = 1_000_000_000  # held-out problems come from seeds that training never draws
WORDS = {
    "+": ["Add {n}.", "Then {n} more come.", "Increase it by {n}."],
    "-": ["Subtract {n}.", "Then {n} are taken away.", "Decrease it by {n}."],
    "*": ["Multiply by {n}.", "Then it grows {n} times.", "Make it {n} times as large."],
}
Op = tuple[str, int]  # ("+", 45)


@dataclass(frozen=True)
class ArithConfig:
    """What problems look like.

    Args:
        min_ops, max_ops (`int`): operations per problem.
        digits (`int`): most digits of the start value and of added or subtracted numbers.
        operators (`tuple[str, ...]`): a subset of `+`, `-`, `*` (multipliers are one digit, 2-9).
        word_share (`float`): share of problems written as word problems.
        slip (`float`): chance that a one-go computation with a carry, borrow or multi-digit product is wrong.
        disjoint_splits (`bool`): keep every question in one split only (by a hash of its text), for small
            problem spaces where the train and test seeds would otherwise draw the same questions.
    """

    min_ops: int = 2
    max_ops: int = 4
    digits: int = 2
    operators: tuple[str, ...] = OPERATORS
    word_share: float = 0.3
    slip: float = 0.4
    disjoint_splits: bool = False

    def __post_init__(self):
        if self.min_ops < 1 or self.max_ops < self.min_ops:
            raise InputError(
                f"ArithWorld needs 1 <= min_ops <= max_ops (got {self.min_ops}, {self.max_ops}): a problem has at least one operation"
            )
        if not 1 <= self.digits <= 4:
            raise InputError(f"ArithWorld digits must be 1 to 4 (got {self.digits})")
        bad = [o for o in self.operators if o not in OPERATORS]
        if bad or not self.operators:
            raise InputError(f"unknown ArithWorld operators {bad or '(none given)'}; choose from {', '.join(OPERATORS)}")
        if not 0 <= self.slip <= 1 or not 0 <= self.word_share <= 1:
            raise InputError("slip and word_share are probabilities: keep them between 0 and 1")


# Named ArithWorld tasks. `arith-easy` is sized for a 135M real LLM (SmolLM2-135M-Instruct): one-digit
# numbers, addition and subtraction, one to three operations, half of them word problems.
PRESETS: dict[str, ArithConfig] = {
    "arith": ArithConfig(),
    "arith-easy": ArithConfig(min_ops=1, max_ops=3, digits=1, operators=("+", "-"), word_share=0.5, disjoint_splits=True),
}


def arith_world(task: str, *, split: str = "test", seed: int = 0) -> ArithWorld:
    """The ArithWorld of a named task (`PRESETS`)."""
    if task not in PRESETS:
        raise InputError(f"unknown ArithWorld task {task!r}; choose from {', '.join(PRESETS)}")
    return ArithWorld(PRESETS[task], split=split, seed=seed)


def apply(v: int, op: Op) -> int:
    o, n = op
    return v + n if o == "+" else v - n if o == "-" else v * n


def hard(v: int, op: Op) -> bool:
    """Whether computing `op` in one go risks a slip: a carry, a borrow or a multi-digit product."""
    o, n = op
    a, b = str(v)[::-1], str(n)[::-1]
    if o == "*":
        return v >= 10
    if o == "+":
        return any(int(x) + int(y) >= 10 for x, y in zip(a, b, strict=False))
    return any(int(x) < int(y) for x, y in zip(a, b, strict=False))


class ArithWorld:
    """Problems from seeds: problem `i` of a split is drawn from its own seed, so any slice is reproducible.

    Args:
        config (`ArithConfig`, *optional*).
        split (`str`, *optional*, defaults to `"test"`): `"train"` or `"test"`; their seeds never overlap.
        seed (`int`, *optional*, defaults to `0`): offsets the split's seeds.
    """

    name = "arith"

    def __init__(self, config: ArithConfig | None = None, *, split: str = "test", seed: int = 0):
        if split not in ("train", "test"):
            raise InputError(f"split must be 'train' or 'test', got {split!r}")
        self.config = config or ArithConfig()
        self.split = split
        self.base = (TEST_SEED_BASE if split == "test" else TRAIN_SEED_BASE) + seed * 100_003

    def problem(self, i: int) -> Problem:
        rng = random.Random(self.base + i)
        while True:  # with disjoint splits, draw on until the question belongs to this split
            p = self._draw(rng)
            if not self.config.disjoint_splits or in_test_split(p.question) == (self.split == "test"):
                return p

    def _draw(self, rng: random.Random) -> Problem:
        c = self.config
        k = rng.randint(c.min_ops, c.max_ops)
        v = start = rng.randint(1, 10**c.digits - 1)
        ops: list[Op] = []
        while len(ops) < k:
            o = rng.choice(c.operators)
            n = rng.randint(2, 9) if o == "*" else rng.randint(1, 10**c.digits - 1)
            if (o == "-" and n > v) or (o == "*" and v * n >= 1000):
                continue
            ops.append((o, n))
            v = apply(v, (o, n))
        word = rng.random() < c.word_share
        q = word_question(start, ops, rng) if word else expr_question(start, ops)
        return Problem(q, str(v), {"start": start, "ops": ops})

    def problems(self, n: int, offset: int = 0) -> list[Problem]:
        return [self.problem(offset + i) for i in range(n)]


def in_test_split(question: str) -> bool:
    """One question in ten is a test question (a stable hash of its text, the same on every machine)."""
    return zlib.crc32(question.encode()) % 10 == 0


def expr_question(start: int, ops: list[Op]) -> str:
    e = str(start)
    for i, (o, n) in enumerate(ops):
        e = f"({e}{o}{n})" if i < len(ops) - 1 else f"{e}{o}{n}"
    return f"Compute {e}."


def word_question(start: int, ops: list[Op], rng: random.Random) -> str:
    parts = [f"Start with {start}."] + [rng.choice(WORDS[o]).format(n=n) for o, n in ops]
    return " ".join(parts) + " What is the result?"


def parse_question(q: str) -> tuple[int, list[Op]] | None:
    """Recover (start, ops) from an ArithWorld question; None for anything else.

    >>> parse_question("Compute ((23+45)*3)-17.")
    (23, [('+', 45), ('*', 3), ('-', 17)])
    """
    m = re.fullmatch(r"Compute ([()\d+\-*]+)\.", q.strip())
    if m:
        toks = re.findall(r"\d+|[+\-*]", m.group(1))
        if len(toks) < 3 or len(toks) % 2 == 0:
            return None
        return int(toks[0]), [(toks[i], int(toks[i + 1])) for i in range(1, len(toks), 2)]
    m = re.match(r"Start with (\d+)\.(.*) What is the result\?$", q.strip())
    if not m:
        return None
    ops = []
    for sentence in re.findall(r"[^.]+\.", m.group(2)):
        for o, forms in WORDS.items():
            for f in forms:
                mm = re.fullmatch(re.escape(f).replace(r"\{n\}", r"(\d+)"), sentence.strip())
                if mm:
                    ops.append((o, int(mm.group(1))))
    return (int(m.group(1)), ops) if ops else None
