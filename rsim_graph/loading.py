"""Turn command-line specs into planners and reasoners; knows where the bundled tiny models live."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from langgraph.graph.state import CompiledStateGraph

from rsim_graph.config import RuntimeConfig
from rsim_graph.errors import CheckpointError, InputError
from rsim_graph.planners.base import Planner
from rsim_graph.reasoners.base import Reasoner
from rsim_graph.strategies import StrategyLibrary

if TYPE_CHECKING:
    from rsim_graph.events import Event
    from rsim_graph.runs import Reply

ASSETS = Path(__file__).with_name("assets")
BUNDLED_REASONER = ASSETS / "reasoner"  # the tiny ArithWorld reasoner
BUNDLED_REASONER_B = ASSETS / "reasoner-b"  # a second, smaller one for plug-in transfer
BUNDLED_PLANNER = ASSETS / "planner"  # the planner trained by the default `python -m trainers.marl`
BUNDLED_RSIM_REASONER = ASSETS / "reasoner-rsim"  # the reasoner trained jointly with it

BUNDLED_PLANNER_INIT = ASSETS / "planner-init"  # the planner before training (the trainers' default start)
# Named specs of the bundled tiny models, for --planner and --reasoner.
TINY_PLANNERS = {"tiny": BUNDLED_PLANNER, "tiny-init": BUNDLED_PLANNER_INIT}
TINY_REASONERS = {"tiny": BUNDLED_REASONER, "tiny-b": BUNDLED_REASONER_B, "tiny-rsim": BUNDLED_RSIM_REASONER}

PLANNER_SPECS = (
    "a planner checkpoint directory, 'tiny' (the bundled trained planner), 'tiny-init', 'smollm2' (the trained SmolLM2 planner), "
    "'random', 'ps+', 'heuristic', 'heuristic-check', 'scripted:ID,ID,...' or 'prompt:<model>'"
)


def resolve_injection(injection: str, reasoner: str | None, base_url: str | None, tokenizer=None) -> str:
    """`auto`: `prefill` for rSIM's tiny models (the bundled ones, or any with their tokenizer: they were trained
    that way), `system` for any other model (it scored best on SmolLM2-135M-Instruct: docs/real-llm.md, "Injection
    formats"); other values are returned unchanged."""
    if injection != "auto":
        return injection
    from rsim_graph.engine.tiny_models import CHAT_TEMPLATE

    if tokenizer is not None:  # the loaded model itself says
        return "prefill" if getattr(tokenizer, "chat_template", None) == CHAT_TEMPLATE else "system"
    return "prefill" if is_bundled(reasoner, base_url) else "system"


def injection_for(config: RuntimeConfig, reasoner: Reasoner, *, loaded: bool) -> str:
    """`config.injection` resolved for `reasoner`: by its tokenizer when it has one, else by the spec it was loaded
    from; a reasoner object handed in without a tokenizer (a chat model) is not one of the tiny models."""
    tokenizer = getattr(reasoner, "tokenizer", None)  # HF and vLLM reasoners have one; chat-model reasoners do not
    if tokenizer is None and not loaded:
        return "system" if config.injection == "auto" else config.injection
    return resolve_injection(config.injection, config.reasoner, config.reasoner_base_url, tokenizer)


def is_bundled(reasoner: str | None, base_url: str | None = None) -> bool:
    """Whether a reasoner spec names one of the bundled tiny models (unset included)."""
    return not (reasoner or base_url) or reasoner in TINY_REASONERS or Path(reasoner or "").expanduser().resolve().is_relative_to(ASSETS)


def reasoner_path(spec: str | None) -> str:
    """A local reasoner spec as `HFReasoner.from_pretrained` reads it: the tiny names resolved to the bundled directories."""
    if spec is None:
        return str(default_reasoner_path())
    return str(bundled(TINY_REASONERS[spec])) if spec in TINY_REASONERS else spec


def bundled(path: Path) -> Path:
    if not (path / "config.json").is_file() and not (path / "planner.json").is_file():
        raise CheckpointError(
            f"the bundled model {path.name!r} is missing from {path.parent}; rebuild it with "
            "`python -m trainers.pretrain_tiny`, or pass a model with --reasoner/--planner"
        )
    return path


def default_planner_spec() -> str:
    """The trained bundled planner. Missing, it is an error: falling back to another planner would report its results as rSIM's."""
    if not (BUNDLED_PLANNER / "planner.json").is_file():
        raise CheckpointError(
            f"the bundled planner is missing from {BUNDLED_PLANNER}; train one with `python -m trainers.marl` and pass "
            "--planner <output_dir>/planner, or pass --planner heuristic (--method heuristic in evals)"
        )
    return str(BUNDLED_PLANNER)


def default_reasoner_path() -> Path:
    """The reasoner trained with the bundled planner once it ships, else the pretrained tiny reasoner."""
    return BUNDLED_RSIM_REASONER if (BUNDLED_RSIM_REASONER / "config.json").is_file() else bundled(BUNDLED_REASONER)


def load_planner(
    spec: str | None,
    library: StrategyLibrary,
    *,
    seed: int | None = None,
    greedy: bool = True,
    base_url: str | None = None,
    api_key: str | None = None,
    max_retries: int = 1,
) -> Planner:
    """Build a planner from `spec` (see `PLANNER_SPECS`)."""
    spec = spec or default_planner_spec()
    if spec == "random":
        from rsim_graph.planners.simple import RandomPlanner

        return RandomPlanner(seed)
    if spec in ("ps+", "plan-and-solve"):
        from rsim_graph.planners.simple import ScriptedPlanner

        return ScriptedPlanner.plan_and_solve()
    if spec.startswith("scripted:"):
        from rsim_graph.planners.simple import ScriptedPlanner

        ids = [s.strip() for s in spec.removeprefix("scripted:").split(",") if s.strip()]
        for s in ids:
            library.index(s)  # unknown ids fail here, with the library's ids in the message
        return ScriptedPlanner(ids)
    if spec in ("heuristic", "heuristic-check"):
        from rsim_graph.planners.heuristic import HeuristicPlanner

        return HeuristicPlanner(check=spec == "heuristic-check")
    if spec.startswith("prompt:"):
        from langchain_openai import ChatOpenAI

        from rsim_graph.planners.prompt import PromptPlanner

        model = spec.removeprefix("prompt:")
        if not base_url:
            raise InputError(f"planner {spec!r} needs an OpenAI-compatible server: pass --planner_base_url (or --reasoner_base_url)")
        return PromptPlanner(ChatOpenAI(model=model, base_url=base_url, api_key=api_key or "EMPTY", max_retries=max_retries, timeout=60))
    path = planner_path(spec)
    if not path.exists():
        raise CheckpointError(f"planner {spec!r} is neither a directory nor a known planner; pass {PLANNER_SPECS}")
    from rsim_graph.planners.policy import PolicyPlanner

    planner = PolicyPlanner.from_pretrained(path, greedy=greedy, seed=seed)
    if planner.library.ids != library.ids:
        planner.grow(library)
    return planner


def planner_path(spec: str) -> Path:
    """Where a planner checkpoint spec points: the named bundled and shipped planners, else the path itself."""
    from rsim_graph.engine.gguf import SMOLLM2, shipped

    if spec in TINY_PLANNERS:
        return bundled(TINY_PLANNERS[spec])
    return shipped("planner", "planner.json") if spec == SMOLLM2 else Path(spec).expanduser()


def load_reasoner(
    spec: str | None = None,
    *,
    base_url: str | None = None,
    model_name: str | None = None,
    api_key: str | None = None,
    mode: str = "prefill",
    temperature: float = 0.0,
    seed: int | None = None,
    max_retries: int = 1,
    timeout: float = 60,
) -> Reasoner:
    """A reasoner from a local path or hub id, `vllm:<model>`, or an OpenAI-compatible `base_url`."""
    if base_url:
        from langchain_openai import ChatOpenAI

        from rsim_graph.reasoners.chat import ChatModelReasoner

        if not model_name:
            raise InputError("--reasoner_base_url needs --reasoner_model: the model name the server serves")
        chat = ChatOpenAI(
            model=model_name, base_url=base_url, api_key=api_key or "EMPTY", temperature=temperature, max_retries=max_retries, timeout=timeout
        )
        return ChatModelReasoner(chat, mode=mode, continue_final_message=mode == "prefill")
    if spec and spec.startswith("vllm:"):
        from rsim_graph.reasoners.vllm import VLLMReasoner

        return VLLMReasoner(spec.removeprefix("vllm:"), temperature=temperature, seed=seed)
    from rsim_graph.reasoners.hf import HFReasoner

    return HFReasoner.from_pretrained(reasoner_path(spec), temperature=temperature, seed=seed)


@dataclass
class Runtime:
    """A runnable rSIM: the compiled graph and the parts it was built from."""

    graph: CompiledStateGraph
    planner: Planner
    reasoner: Reasoner
    library: StrategyLibrary
    config: RuntimeConfig

    def events(
        self, question: str, *, strategy_injection: bool = True, max_tokens: int | None = None, cancel: threading.Event | None = None, **inputs
    ) -> Iterator[Event]:
        """One run's events (`runs.run_events`): through the graph, or the reasoner alone (`strategy_injection=False`,
        `max_tokens`, default `max_total_tokens`); `inputs` are further state keys (`history`, `sampling`, `budget`)."""
        from rsim_graph.runs import run_events

        return run_events(
            self.graph, self.reasoner, {**inputs, "question": question}, injection=strategy_injection,
            max_tokens=max_tokens or self.config.max_total_tokens, cancel=cancel, planner=self.planner,
        )

    def reply(self, question: str, *, stops: list[str] | None = None, **kwargs) -> Reply:
        """Answer `question`: the finished `runs.Reply` (content, trace, `done`); `kwargs` as for `events`."""
        from rsim_graph.runs import Reply

        return Reply(self.library.step_delimiter, stops).collect(self.events(question, **kwargs))


def load_runtime(
    config: RuntimeConfig | None = None,
    *,
    planner: Planner | None = None,
    reasoner: Reasoner | None = None,
    library: StrategyLibrary | None = None,
    checkpointer=None,
) -> Runtime:
    """The one constructor of a runtime: the planner, reasoner and library that `config` names, and the graph over them.

    A ready `planner`, `reasoner` or `library` object replaces the one `config` names (tests, embedding a model
    already in memory); `config` still sets the budgets and the injection format.
    """
    from rsim_graph.graph import build_graph
    from rsim_graph.strategies import load_strategies

    config = config or RuntimeConfig()
    library = library or load_strategies(config.strategies)
    base_url = config.planner_base_url or config.reasoner_base_url
    planner = planner or load_planner(
        config.planner, library, seed=config.seed, greedy=not config.sample_planner, base_url=base_url, api_key=config.reasoner_api_key,
        max_retries=config.max_retries,
    )
    given = reasoner
    reasoner = reasoner or load_reasoner(
        config.reasoner, base_url=config.reasoner_base_url, model_name=config.reasoner_model, api_key=config.reasoner_api_key,
        mode=config.reasoner_mode, temperature=config.temperature, seed=config.seed, max_retries=config.max_retries,
    )
    graph = build_graph(
        planner, reasoner, library, max_steps=config.max_reasoning_steps, max_step_tokens=config.max_step_tokens,
        max_total_tokens=config.max_total_tokens, injection=injection_for(config, reasoner, loaded=given is None), checkpointer=checkpointer,
    )
    return Runtime(graph, planner, reasoner, library, config)
