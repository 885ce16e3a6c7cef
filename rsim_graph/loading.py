"""Turn command-line specs into planners and reasoners; knows where the bundled tiny models live."""

from __future__ import annotations

from pathlib import Path

from rsim_graph.errors import CheckpointError, InputError
from rsim_graph.planners.base import Planner
from rsim_graph.reasoners.base import Reasoner
from rsim_graph.strategies import StrategyLibrary

ASSETS = Path(__file__).with_name("assets")
BUNDLED_REASONER = ASSETS / "reasoner"  # the tiny ArithWorld reasoner
BUNDLED_REASONER_B = ASSETS / "reasoner-b"  # a second, smaller one for plug-in transfer
BUNDLED_PLANNER = ASSETS / "planner"  # the planner trained by the default `python -m trainers.marl`
BUNDLED_RSIM_REASONER = ASSETS / "reasoner-rsim"  # the reasoner trained jointly with it

PLANNER_SPECS = (
    "a planner checkpoint directory, 'smollm2' (the trained SmolLM2 planner), 'random', 'ps+', 'heuristic', 'heuristic-check', 'scripted:ID,ID,...' or 'prompt:<model>'"
)


def resolve_injection(injection: str, reasoner: str | None, base_url: str | None) -> str:
    """`auto`: `prefill` for the bundled tiny models (trained that way), `system` for any other model (it scored
    best on SmolLM2-135M-Instruct: README, "Injection formats"); other values are returned unchanged."""
    if injection != "auto":
        return injection
    tiny = not (reasoner or base_url) or Path(reasoner or "").expanduser().resolve().is_relative_to(ASSETS)
    return "prefill" if tiny else "system"


def bundled(path: Path) -> Path:
    if not (path / "config.json").is_file() and not (path / "planner.json").is_file():
        raise CheckpointError(
            f"the bundled model {path.name!r} is missing from {path.parent}; rebuild it with "
            "`python -m trainers.pretrain_tiny`, or pass a model with --reasoner/--planner"
        )
    return path


def default_planner_spec() -> str:
    """The trained bundled planner once it ships, else the ArithWorld heuristic."""
    return str(BUNDLED_PLANNER) if (BUNDLED_PLANNER / "planner.json").is_file() else "heuristic"


def default_reasoner_path() -> Path:
    """The reasoner trained with the bundled planner once it ships, else the pretrained tiny reasoner."""
    return BUNDLED_RSIM_REASONER if (BUNDLED_RSIM_REASONER / "config.json").is_file() else bundled(BUNDLED_REASONER)


def load_planner(
    spec: str | None,
    library: StrategyLibrary,
    *,
    seed: int | None = None,
    greedy: bool = False,
    base_url: str | None = None,
    api_key: str | None = None,
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
        return PromptPlanner(ChatOpenAI(model=model, base_url=base_url, api_key=api_key or "EMPTY", max_retries=1, timeout=60))
    from rsim_graph.models import SMOLLM2, shipped

    path = shipped("planner", "planner.json") if spec == SMOLLM2 else Path(spec).expanduser()
    if not path.exists():
        raise CheckpointError(f"planner {spec!r} is neither a directory nor a known planner; pass {PLANNER_SPECS}")
    from rsim_graph.planners.policy import PolicyPlanner

    planner = PolicyPlanner.from_pretrained(path, greedy=greedy, seed=seed)
    if planner.library.ids != library.ids:
        planner.grow(library)
    return planner


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

    path = spec or str(default_reasoner_path())
    return HFReasoner.from_pretrained(path, temperature=temperature, seed=seed)


def load_runtime(
    *,
    planner: str | None = None,
    reasoner: str | None = None,
    strategies: str | None = None,
    greedy: bool = False,
    seed: int | None = 0,
    planner_base_url: str | None = None,
    base_url: str | None = None,
    model_name: str | None = None,
    api_key: str | None = None,
    mode: str = "prefill",
    temperature: float = 0.0,
    max_steps: int = 12,
    max_step_tokens: int = 256,
    max_total_tokens: int = 2048,
    injection: str = "auto",
):
    """Everything a caller of the runtime needs from command-line specs: `(graph, reasoner, library)`.

    `planner` and `reasoner` are specs as for `load_planner` and `load_reasoner` (None: the bundled ones);
    `planner_base_url` defaults to `base_url`, for a `prompt:<model>` planner.
    """
    from rsim_graph.graph import build_graph
    from rsim_graph.strategies import load_strategies

    library = load_strategies(strategies)
    plan = load_planner(planner, library, seed=seed, greedy=greedy, base_url=planner_base_url or base_url, api_key=api_key)
    reason = load_reasoner(
        reasoner, base_url=base_url, model_name=model_name, api_key=api_key, mode=mode, temperature=temperature, seed=seed
    )
    graph = build_graph(
        plan, reason, library, max_steps=max_steps, max_step_tokens=max_step_tokens, max_total_tokens=max_total_tokens,
        injection=resolve_injection(injection, reasoner, base_url),
    )
    return graph, reason, library
