"""ArithWorld's teacher: the text each strategy produces in a given state (see `arith.py` for the rules).

The tiny reasoner is pretrained on these traces, so "what a strategy does" in this world is whatever
these functions write. Every strategy's text matches its `follow` regex in `strategies.yaml`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from rsim_graph.strategies import DEFAULT_STEP_DELIMITER, StrategyLibrary
from rsim_graph.tasks.arith import Op, apply, hard
from rsim_graph.tasks.base import Problem


def columns(v: int, op: Op) -> str:
    """Column-by-column working of `v op n`, ending in `-> result`.

    >>> columns(68, ("*", 3))
    '68*3: 8*3=24 c2, 6*3+2=20 -> 204'
    >>> columns(23, ("+", 45))
    '23+45: 3+5=8, 2+4=6 -> 68'
    """
    o, n = op
    a = [int(d) for d in str(v)[::-1]]
    b = [int(d) for d in str(n)[::-1]]
    parts, carry = [], 0
    if o == "*":
        for i, x in enumerate(a):
            r = x * n + carry
            last = i == len(a) - 1
            parts.append(f"{x}*{n}{'+' + str(carry) if carry else ''}={r}" + ("" if last or r < 10 else f" c{r // 10}"))
            carry = r // 10
    else:
        width = max(len(a), len(b))
        for i in range(width):
            x, y = (a[i] if i < len(a) else 0), (b[i] if i < len(b) else 0)
            if o == "+":
                r = x + y + carry
                last = i == width - 1
                parts.append(f"{x}+{y}{'+' + str(carry) if carry else ''}={r}" + ("" if last or r < 10 else " c1"))
                carry = 1 if r >= 10 and not last else 0
            else:
                r = x - y - carry
                borrow = r < 0
                parts.append(f"{x}-{y}{'-' + str(carry) if carry else ''}={r + 10 if borrow else r}" + (" b1" if borrow else ""))
                carry = int(borrow)
    return f"{v}{o}{n}: {', '.join(parts)} -> {apply(v, op)}"


def slipped(value: int, rng: random.Random) -> int:
    """A plausible wrong value: one digit too high. Slips only ever overshoot, so every shown value
    stays at or above the true one and subtractions never go negative."""
    return value + rng.randint(1, 3) * 10 ** rng.randrange(len(str(value)))


@dataclass
class Trace:
    """The teacher's state while writing a trajectory."""

    start: int
    ops: list[Op]
    slip: float
    rng: random.Random
    values: list[int] = field(default_factory=list)  # shown value after each computed op
    last: str = ""  # the previous step's strategy
    failed: bool = False  # the previous validate found a wrong value

    @property
    def j(self) -> int:
        return len(self.values)

    @property
    def value(self) -> int:
        return self.values[-1] if self.values else self.start

    @property
    def prev(self) -> int:
        return self.values[-2] if len(self.values) > 1 else self.start

    def oneshot(self) -> str:
        v, op = self.value, self.ops[self.j]
        w = apply(v, op)
        if hard(v, op) and self.rng.random() < self.slip:
            w = slipped(w, self.rng)
        self.values.append(w)
        return f"s{self.j} {v}{op[0]}{op[1]} = {w}"

    def step(self, strategy: str) -> str:
        """The text of one step under `strategy`; updates the state."""
        text = self._step(strategy)
        self.last, self.failed = strategy, text.endswith("fails.")
        return text

    def _step(self, strategy: str) -> str:
        ops_txt = " ".join(f"{o}{n}" for o, n in self.ops)
        k = len(self.ops)
        if strategy == "understand":
            return f"Known: start {self.start}, ops {ops_txt}. Find the result."
        if strategy == "decompose":
            return "Parts: " + "; ".join(f"s{i + 1} {o}{n}" for i, (o, n) in enumerate(self.ops)) + "."
        if strategy == "sub-plan":
            if self.j >= k:
                return "Plan: next give the answer."
            rest = [f"s{i + 1} {o}{n}" for i, (o, n) in enumerate(self.ops)][self.j + 1 : self.j + 2]
            return "Plan: next " + self.oneshot() + (f", then {rest[0]}." if rest else ".")
        if strategy == "deep-think":
            if self.j >= k:
                return f"All done = {self.value}."
            text = f"s{self.j + 1} " + columns(self.value, self.ops[self.j])
            self.values.append(apply(self.value, self.ops[self.j]))
            return text
        if strategy == "self-reflect":
            if self.j == 0:
                return f"Review: nothing computed yet, start {self.start}."
            right = apply(self.prev, self.ops[self.j - 1])
            text = f"Review s{self.j} " + columns(self.prev, self.ops[self.j - 1])
            text += f"; corrected {self.value} to {right}." if right != self.value else "; correct."
            self.values[-1] = right
            return text
        if strategy == "validate":
            if self.j == 0:
                return f"Check: start {self.start} ok."
            o, n = self.ops[self.j - 1]
            v, p = self.value, self.prev
            if o == "+":
                back, good = f"{v}-{n}={v - n}", v - n == p
            elif o == "-":
                back, good = f"{v}+{n}={v + n}", v + n == p
            else:
                back, good = f"{v}/{n}={v // n} r{v % n}", v % n == 0 and v // n == p
            return f"Check s{self.j}: {back} {'ok' if good else 'fails'}."
        if strategy == "backtrack":
            if self.j == 0:
                return f"Back: nothing to drop, start {self.start}."
            dropped = self.values.pop()
            return f"Back: drop s{self.j + 1} = {dropped}, return to {self.value}."
        if strategy == "summarize":
            vals = ", ".join(f"s{i + 1}={x}" for i, x in enumerate(self.values))
            return f"Values so far: start {self.start}" + (f", {vals}." if vals else ".")
        if strategy == "terminate":
            work = [self.oneshot() for _ in range(k - self.j)]
            return "; ".join(work + [f"\\boxed{{{self.value}}}"])
        raise ValueError(f"ArithWorld has no behaviour for strategy {strategy!r}")


def zero_cot(problem: Problem, rng: random.Random, slip: float) -> str:
    """Plain chain of thought: every operation in one go, then the answer."""
    t = Trace(problem.meta["start"], problem.meta["ops"], slip, rng)
    steps = [t.oneshot() for _ in t.ops]
    return DEFAULT_STEP_DELIMITER.join(steps + [f"\\boxed{{{t.value}}}"])


def behaviour_policy(trace: Trace, n_steps: int, expert: bool, rng: random.Random, library: StrategyLibrary) -> str:
    """Which strategy the teacher shows next: uniform over the library, or a noisy expert."""
    if not expert:
        return rng.choice(library.ids)
    if n_steps == 0 and rng.random() < 0.7:
        return "understand"
    if rng.random() < 0.2:
        return rng.choice(library.ids)
    last = trace.last
    if last == "sub-plan" and rng.random() < 0.7:
        return "validate"
    if last == "validate" and trace.failed:
        return "self-reflect" if rng.random() < 0.7 else "backtrack"
    if trace.j < len(trace.ops):
        return "deep-think" if rng.random() < 0.7 else "sub-plan"
    return "terminate"


def injected_trace(problem: Problem, rng: random.Random, slip: float, library: StrategyLibrary, *, expert: bool, max_steps: int = 12) -> list[tuple[str, str]]:
    """A strategy-injected trajectory: [(strategy, step text), ...], ending with the terminating strategy."""
    t = Trace(problem.meta["start"], problem.meta["ops"], slip, rng)
    steps: list[tuple[str, str]] = []
    while True:
        s = library.terminal_id if len(steps) >= max_steps - 1 else behaviour_policy(t, len(steps), expert, rng, library)
        steps.append((s, t.step(s)))
        if s == library.terminal_id:
            return steps
