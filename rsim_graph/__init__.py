"""rSIM: reinforced strategy injection (arXiv 2512.08300) as a LangGraph graph.

    from rsim_graph import RuntimeConfig, load_runtime

    runtime = load_runtime(RuntimeConfig(max_reasoning_steps=8))   # the bundled tiny planner and reasoner
    reply = runtime.reply("Compute (12+7)*3.")                     # a `runs.Reply`
    reply.content, reply.trace()["steps"], reply.done.answer

`RuntimeConfig` holds what the commands' shared flags set; `load_runtime` is the one constructor of a
runnable graph; `rsim_graph.events` are what a run emits and `rsim_graph.runs` how they are read.
"""

from rsim_graph.integrations.chat_model import RSIMChatModel
from rsim_graph.config import RuntimeConfig
from rsim_graph.events import Event, Finished, StepWritten, StrategyChosen
from rsim_graph.graph import build_graph, run_batch
from rsim_graph.loading import Runtime, load_planner, load_reasoner, load_runtime
from rsim_graph.planners.base import Planner, PlannerChoice
from rsim_graph.reasoners.base import Reasoner, StepOutput, StepRequest
from rsim_graph.runs import Reply, run_events
from rsim_graph.strategies import Strategy, StrategyLibrary, load_strategies
from rsim_graph.integrations.tool import rsim_tool

__all__ = [
    "Event",
    "Finished",
    "Planner",
    "PlannerChoice",
    "RSIMChatModel",
    "Reasoner",
    "Reply",
    "Runtime",
    "RuntimeConfig",
    "StepOutput",
    "StepRequest",
    "StepWritten",
    "Strategy",
    "StrategyChosen",
    "StrategyLibrary",
    "build_graph",
    "load_planner",
    "load_reasoner",
    "load_runtime",
    "load_strategies",
    "rsim_tool",
    "run_batch",
    "run_events",
]
