"""rSIM as a LangChain tool, for agents whose own model calls tools.

    from langchain.agents import create_agent
    agent = create_agent(model=my_tool_calling_llm, tools=[rsim_tool(graph)])

The tool returns the answer and the strategy trace as text, so the calling model sees how the
answer was reached. A failure (an empty or unusable question, one too long for the reasoner's
context, an unreachable reasoner) comes back to the calling model as the tool's message, which says
what went wrong and what to do; it never ends the agent's run. (`graph.as_tool(arg_types={"question": str})`
also works; it returns the whole final state, and raises.)
"""

from __future__ import annotations

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from langgraph.graph.state import CompiledStateGraph

from rsim_graph.errors import RSIMError

DESCRIPTION = (
    "Solve a reasoning problem (math, logic) step by step with planner-guided reasoning. "
    "Pass the full problem statement; returns the final answer and the reasoning steps."
)


def rsim_tool(graph: CompiledStateGraph, *, name: str = "rsim_reason", description: str = DESCRIPTION) -> BaseTool:
    """Wrap a compiled rSIM graph as a tool that takes `question` and returns answer and steps as text."""

    def reason(question: str) -> str:
        try:
            state = graph.invoke({"question": question})
        except RSIMError as e:  # the calling model can rephrase or shorten the question; the agent goes on
            raise ToolException(f"{name} failed: {e}") from e
        steps = "\n".join(f"[{s['strategy']}] {s['text']}" for s in state["steps"])
        return f"answer: {state['answer']}\nsteps:\n{steps}"

    # handle_tool_error: a ToolException's message becomes the tool message (status "error") instead of raising.
    return StructuredTool.from_function(reason, name=name, description=description, handle_tool_error=True)
