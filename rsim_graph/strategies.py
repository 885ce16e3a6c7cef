"""The strategy library: what the planner chooses from and what gets injected into the reasoner.

The paper (arXiv 2512.08300, Sec. 3) defines nine human-written strategies but does not publish
their prompts. Our wordings live in `strategies.yaml` beside this file (deviation from the paper).

A library is an ordered list: the position of a strategy is the row of the planner's action head,
so adding a strategy at the end keeps every learned row in place.

Example (a tenth strategy, built in Python):

>>> lib = StrategyLibrary.default().extend([Strategy("estimate", "Estimate", "Estimate: guess the size of the answer.")])
>>> len(lib), lib.index("estimate")
(10, 9)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from rsim_graph.errors import StrategyError

DEFAULT_PATH = Path(__file__).with_name("strategies.yaml")
# Ends every reasoner step: backends stop generating there, and the planner is asked again.
DEFAULT_STEP_DELIMITER = "\n\n"


@dataclass(frozen=True)
class Strategy:
    """One reasoning strategy.

    Args:
        id (`str`): stable identifier, used in traces, metrics and checkpoints.
        name (`str`): human-readable name.
        prompt (`str`): the text injected into the reasoner's context before its step.
        description (`str`, *optional*): one line saying what the strategy is for.
        follow (`str`, *optional*, defaults to `""`): regex (case-insensitive) that a step must
            match to count as carrying out this strategy in `R_follow`. Empty means any non-empty step.
        terminal (`bool`, *optional*, defaults to `False`): the step under this strategy ends the trajectory.
    """

    id: str
    name: str
    prompt: str
    description: str = ""
    follow: str = ""
    terminal: bool = False

    def __post_init__(self):
        if not self.id or not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", self.id):
            raise StrategyError(
                f"strategy id {self.id!r} is invalid: ids are stable keys in checkpoints and metrics; "
                "use lowercase letters, digits, '-' or '_'"
            )
        if not self.prompt.strip():
            raise StrategyError(f"strategy {self.id!r} has an empty prompt: give it the text to inject")
        try:
            re.compile(self.follow)
        except re.error as e:
            raise StrategyError(f"strategy {self.id!r} has an invalid follow regex {self.follow!r}: {e}") from e

    def followed_by(self, text: str) -> bool:
        """Whether `text` carries out this strategy (see `follow`)."""
        if not text.strip():
            return False
        return not self.follow or re.search(self.follow, text, flags=re.IGNORECASE) is not None


# How the reasoner sees an injected strategy (measured on SmolLM2-135M-Instruct: docs/real-llm.md, "Injection formats"):
# - prefill: the strategy prompt continues the assistant's own turn (the paper's injection);
# - system: the same, plus a system message that states the step protocol;
# - headers: each prompt is a numbered Markdown step header.
# A chat upstream can instead get each prompt as a new user turn (`--reasoner_mode turns`).
INJECTIONS = ("prefill", "system", "headers")
STEP_PROTOCOL = (
    "You solve problems in short steps. Before each step you are given an instruction such as "
    "\"Deep-think: ...\". Carry out exactly that instruction in one or two sentences, with the numbers worked out. "
    "When the instruction is to terminate, end with \"The answer is N.\""
)


@dataclass(frozen=True)
class StrategyLibrary:
    """An ordered, validated set of strategies with exactly one terminating strategy.

    Args:
        strategies (`tuple[Strategy, ...]`): in action-head order.
        step_delimiter (`str`, *optional*, defaults to `"\\n\\n"`): text that ends a reasoner step.
    """

    strategies: tuple[Strategy, ...]
    step_delimiter: str = DEFAULT_STEP_DELIMITER
    _by_id: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "strategies", tuple(self.strategies))
        by_id: dict[str, int] = {}
        for i, s in enumerate(self.strategies):
            if s.id in by_id:
                raise StrategyError(
                    f"duplicate strategy id {s.id!r}: ids index the planner's action head, so each must be unique; "
                    "rename or remove one of them"
                )
            by_id[s.id] = i
        terminals = [s.id for s in self.strategies if s.terminal]
        if len(terminals) != 1:
            raise StrategyError(
                f"a strategy library needs exactly one terminating strategy (found {len(terminals)}: {terminals}); "
                "without one a trajectory cannot end with an answer. Mark one with `terminal: true`"
            )
        if not self.step_delimiter:
            raise StrategyError("step_delimiter is empty: backends need it to know where a step ends")
        object.__setattr__(self, "_by_id", by_id)

    @classmethod
    def default(cls) -> StrategyLibrary:
        """The nine strategies of the paper, with our prompt wordings."""
        return load_strategies(DEFAULT_PATH)

    def __len__(self) -> int:
        return len(self.strategies)

    def __iter__(self):
        return iter(self.strategies)

    def __contains__(self, strategy_id: object) -> bool:
        return strategy_id in self._by_id

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.strategies]

    @property
    def terminal_id(self) -> str:
        return next(s.id for s in self.strategies if s.terminal)

    def index(self, strategy_id: str) -> int:
        if strategy_id not in self._by_id:
            raise StrategyError(f"unknown strategy {strategy_id!r}; this library has: {', '.join(self.ids)}")
        return self._by_id[strategy_id]

    def get(self, strategy_id: str) -> Strategy:
        return self.strategies[self.index(strategy_id)]

    def render(self, strategy_id: str, *, injection: str = "prefill", step: int = 0) -> str:
        """The text injected into the reasoner's context before step `step` (0-based) under `strategy_id`.

        `injection="headers"` numbers the step as a Markdown header (`### Step 2. Deep-think: ...`); every other
        injection style injects the prompt alone (see `INJECTIONS`).
        """
        prompt = self.get(strategy_id).prompt
        return f"### Step {step + 1}. {prompt}\n" if injection == "headers" else prompt + "\n"

    def extend(self, new: list[Strategy]) -> StrategyLibrary:
        """A larger library; existing strategies keep their positions (and so their head rows)."""
        return replace(self, strategies=self.strategies + tuple(new))

    def to_records(self) -> list[dict]:
        return [
            {k: v for k, v in vars(s).items() if not (k == "terminal" and not v)} for s in self.strategies
        ]

    def save(self, path: str | Path) -> None:
        data = {"step_delimiter": self.step_delimiter, "strategies": self.to_records()}
        Path(path).write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def load_strategies(path: str | Path | None = None) -> StrategyLibrary:
    """Load a library from YAML: either a list of strategies, or a mapping with `strategies` and
    an optional `step_delimiter`. `None` loads the default library."""
    path = Path(path) if path is not None else DEFAULT_PATH
    if not path.is_file():
        raise StrategyError(f"strategy file {path} does not exist; pass a YAML file with a list of strategies")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise StrategyError(f"strategy file {path} is not valid YAML: {e}".splitlines()[0]) from e
    delimiter = DEFAULT_STEP_DELIMITER
    if isinstance(data, dict):
        delimiter = data.get("step_delimiter", delimiter)
        data = data.get("strategies")
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise StrategyError(f"strategy file {path} must hold a list of strategies (mappings with id, name, prompt)")
    known = set(Strategy.__dataclass_fields__)
    strategies = []
    for d in data:
        extra = set(d) - known
        if extra or not {"id", "name", "prompt"} <= set(d):
            raise StrategyError(
                f"strategy {d.get('id', d)!r} in {path}: needs id, name and prompt"
                + (f"; unknown keys {sorted(extra)} (allowed: {sorted(known)})" if extra else "")
            )
        strategies.append(Strategy(**d))
    return StrategyLibrary(tuple(strategies), step_delimiter=delimiter)
