"""LangChain and LangGraph integration: RSIMChatModel, create_agent, subgraph, tool, checkpointer, custom stream."""

from __future__ import annotations

from typing import TypedDict

import pytest
from conftest import ScriptedReasoner
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from rsim_graph.integrations.chat_model import RSIMChatModel
from rsim_graph.errors import ContextLengthError, InputError, ReasonerError
from rsim_graph.graph import build_graph
from rsim_graph.planners.simple import ScriptedPlanner
from rsim_graph.strategies import STEP_PROTOCOL
from rsim_graph.integrations.tool import rsim_tool

TEXTS = {"understand": "Known: 2 and 3.", "deep-think": "2+3 = 5"}
CONTENT = "Known: 2 and 3.\n\n2+3 = 5\n\n\\boxed{5}"


@pytest.fixture
def reasoner():
    return ScriptedReasoner(answer="5", texts=TEXTS)


@pytest.fixture
def llm(reasoner):
    return RSIMChatModel.from_components(ScriptedPlanner(["understand", "deep-think"]), reasoner)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"max_steps": 0}, "max_steps=0 is not a budget"), ({"max_tokens": 2.5}, "max_tokens=2.5 is not a budget"),
     ({"temperature": -1}, "temperature=-1 is outside [0, 2]"), ({"top_p": 0}, "top_p=0 is outside (0, 1]")],
)
def test_per_call_options_are_checked(llm, reasoner, kwargs, words):
    with pytest.raises(InputError, match=words.replace("[", r"\[").replace("(", r"\(")):
        llm.invoke("What is 2+3?", **kwargs)
    assert reasoner.requests == []  # refused before any step ran


def test_image_parts_are_refused_not_dropped(llm):
    image = HumanMessage(content=[{"type": "text", "text": "What is in this picture?"}, {"type": "image_url", "image_url": {"url": "data:,"}}])
    with pytest.raises(InputError, match="reads text only; the message holds image_url content"):
        llm.invoke([image])


def test_max_tokens_caps_the_reply(reasoner):
    llm = RSIMChatModel.from_components(ScriptedPlanner(["understand", "deep-think"]), reasoner, max_tokens=1)
    reply = llm.invoke("What is 2+3?")
    assert reply.response_metadata["rsim"]["stop_reason"] == "max_total_tokens"
    assert [(r.strategy, r.max_new_tokens) for r in reasoner.requests] == [("terminate", 1)]  # was a full step of 256


def test_invoke_returns_reply_trace_and_usage(llm):
    reply = llm.invoke("What is 2+3?")
    assert reply.content == CONTENT
    trace = reply.response_metadata["rsim"]
    assert [s["strategy"] for s in trace["steps"]] == ["understand", "deep-think", "terminate"]
    assert trace["answer"] == "5" and trace["stop_reason"] == "terminate"
    assert reply.usage_metadata == {"input_tokens": 6, "output_tokens": 15, "total_tokens": 21}


def test_stream_yields_step_deltas_that_merge_into_the_invoke_reply(llm):
    chunks = list(llm.stream("What is 2+3?"))
    assert [c.content for c in chunks] == ["Known: 2 and 3.", "\n\n2+3 = 5", "\n\n\\boxed{5}", ""]
    merged = chunks[0]
    for c in chunks[1:]:
        merged += c
    reply = llm.invoke("What is 2+3?")
    assert merged.content == reply.content and merged.response_metadata == reply.response_metadata
    assert merged.usage_metadata == reply.usage_metadata


def test_batch_history_stop_and_options(llm, reasoner):
    replies = llm.batch(["a?", "b?", "c?"])
    assert [r.response_metadata["rsim"]["answer"] for r in replies] == ["5", "5", "5"]
    reasoner.requests.clear()
    llm.invoke([SystemMessage("Be brief."), HumanMessage("hi"), AIMessage("hello"), HumanMessage("2+3?")], temperature=0.7, seed=3)
    req = reasoner.requests[0]
    # A reasoner without a tokenizer is a chat model: `auto` injection is `system`, the step protocol after the caller's own.
    protocol = {"role": "system", "content": "Be brief.\n\n" + STEP_PROTOCOL}
    assert req.history == [protocol, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert (req.question, req.temperature, req.seed) == ("2+3?", 0.7, 3)
    reasoner.requests.clear()
    cut = llm.invoke("2+3?", stop=["= 5"])
    assert cut.content == "Known: 2 and 3.\n\n2+3 " and cut.response_metadata["rsim"]["stop_reason"] == "stop_sequence"
    assert len(reasoner.requests) == 2  # the run ended at the stop sequence
    plain = llm.invoke("2+3?", strategy_injection=False)
    assert plain.content == "plain \\boxed{5}" and plain.response_metadata["rsim"]["strategy_injection"] is False
    short = llm.invoke("2+3?", max_steps=2)  # the budget forced the answer, which is whole: not a truncation
    assert short.response_metadata["finish_reason"] == "stop" and short.response_metadata["rsim"]["stop_reason"] == "max_steps"
    assert cut.usage_metadata["output_tokens"] == 2 * 5 and cut.usage_metadata["input_tokens"] > 0  # billed up to the stop


def test_the_question_must_be_last(llm):
    with pytest.raises(InputError, match="must be a HumanMessage"):
        llm.invoke([HumanMessage("q"), AIMessage("a")])


def test_works_as_the_model_of_create_agent(llm):
    agent = create_agent(model=llm, tools=[], system_prompt="Solve the problem.")
    out = agent.invoke({"messages": [HumanMessage("What is 2+3?")]})
    last = out["messages"][-1]
    assert isinstance(last, AIMessage) and last.content == CONTENT
    assert last.response_metadata["rsim"]["answer"] == "5"


def test_binding_tools_fails_with_a_clear_error(llm, reasoner):
    with pytest.raises(InputError, match="cannot call tools.*rsim_tool"):
        create_agent(model=llm, tools=[rsim_tool(llm.graph)]).invoke({"messages": [HumanMessage("2+3?")]})


class ToolCallingFake(GenericFakeChatModel):
    """A scripted tool-calling model, standing in for the user's own LLM."""

    def bind_tools(self, tools, **kwargs):
        return self


def test_as_a_tool_of_an_agent_and_via_as_tool(reasoner):
    graph = build_graph(ScriptedPlanner(["deep-think"]), reasoner)
    call = AIMessage("", tool_calls=[{"name": "rsim_reason", "args": {"question": "What is 2+3?"}, "id": "call-1"}])
    agent_llm = ToolCallingFake(messages=iter([call, AIMessage("It is 5.")]))
    out = create_agent(model=agent_llm, tools=[rsim_tool(graph)]).invoke({"messages": [HumanMessage("2+3?")]})
    tool_msg = next(m for m in out["messages"] if isinstance(m, ToolMessage))
    assert tool_msg.content == "answer: 5\nsteps:\n[deep-think] 2+3 = 5\n[terminate] \\boxed{5}"
    assert out["messages"][-1].content == "It is 5."

    as_tool = graph.as_tool(name="rsim", description="reason", arg_types={"question": str})
    assert as_tool.invoke({"question": "What is 2+3?"})["answer"] == "5"


@pytest.mark.parametrize(
    ("question", "reasoner_error", "words"),
    [
        ("   ", None, "question is empty"),
        ("<|im_start|><|im_end|>", None, "question is empty"),  # only control tokens
        ("What is 2+3?", ContextLengthError("the messages take 2000 tokens, over this model's context window of 1024"), "context window"),
        ("What is 2+3?", ReasonerError("cannot reach the reasoner's server"), "cannot reach"),
    ],
)
def test_a_failing_tool_call_reports_to_the_agent_instead_of_crashing_it(reasoner, question, reasoner_error, words):
    if reasoner_error is not None:
        reasoner.step = lambda request: (_ for _ in ()).throw(reasoner_error)
    graph = build_graph(ScriptedPlanner(["deep-think"]), reasoner)
    call = AIMessage("", tool_calls=[{"name": "rsim_reason", "args": {"question": question}, "id": "call-1"}])
    agent_llm = ToolCallingFake(messages=iter([call, AIMessage("I could not solve it.")]))
    out = create_agent(model=agent_llm, tools=[rsim_tool(graph)]).invoke({"messages": [HumanMessage("2+3?")]})
    tool_msg = next(m for m in out["messages"] if isinstance(m, ToolMessage))
    assert tool_msg.status == "error" and tool_msg.content.startswith("rsim_reason failed: ") and words in tool_msg.content
    assert out["messages"][-1].content == "I could not solve it."  # the agent went on


def test_as_a_subgraph_node(reasoner):
    class Outer(TypedDict, total=False):
        question: str
        answer: str
        report: str

    rsim = build_graph(ScriptedPlanner(["deep-think"]), reasoner)
    g = StateGraph(Outer)
    g.add_node("rsim", rsim)
    g.add_node("report", lambda s: {"report": f"{s['question']} -> {s['answer']}"})
    g.add_edge(START, "rsim")
    g.add_edge("rsim", "report")
    g.add_edge("report", END)
    out = g.compile().invoke({"question": "What is 2+3?"})
    assert out == {"question": "What is 2+3?", "answer": "5", "report": "What is 2+3? -> 5"}


def test_checkpointer_threads_keep_each_question_apart(reasoner):
    graph = build_graph(ScriptedPlanner(["understand"]), reasoner, checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "t1"}}
    first = graph.invoke({"question": "What is 2+3?"}, cfg)
    reasoner.answer = "7"
    second = graph.invoke({"question": "What is 3+4?"}, cfg)
    assert first["answer"] == "5" and second["answer"] == "7"
    assert [s["strategy"] for s in second["steps"]] == ["understand", "terminate"]  # not 4 steps
    assert second["trajectory_id"] != first["trajectory_id"]
    assert graph.get_state(cfg).values["question"] == "What is 3+4?"
    history = list(graph.get_state_history(cfg))
    assert any(h.values.get("answer") == "5" for h in history)  # the first question stays in the thread
    other = graph.invoke({"question": "What is 1+1?"}, {"configurable": {"thread_id": "t2"}})
    assert len(other["steps"]) == 2


def test_a_question_after_a_cancelled_run_on_a_thread_starts_afresh(reasoner):
    graph = build_graph(ScriptedPlanner(["understand", "deep-think", "validate"]), reasoner, checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "t"}}
    for chunk in graph.stream({"question": "What is 2+3?"}, cfg, stream_mode="updates"):
        if "reason" in chunk:
            break  # the client went away after the first step
    assert len(graph.get_state(cfg).values["steps"]) == 1 and graph.get_state(cfg).values.get("answer") is None
    reasoner.requests.clear()
    out = graph.invoke({"question": "What is 3+4?"}, cfg)
    assert reasoner.requests[0].steps == [] and reasoner.requests[0].question == "What is 3+4?"  # nothing of the cut-off run
    assert [s["strategy"] for s in out["steps"]] == ["understand", "deep-think", "validate", "terminate"]
    assert out["question"] == "What is 3+4?" and out["stop_reason"] == "terminate"


def test_a_checkpointed_runtime_answers_on_the_callers_thread_or_a_new_one(reasoner):
    graph = build_graph(ScriptedPlanner(["understand"]), reasoner, checkpointer=InMemorySaver())
    llm = RSIMChatModel(graph=graph, reasoner=reasoner, delimiter="\n\n")
    assert llm.invoke("What is 2+3?").response_metadata["rsim"]["answer"] == "5"  # no thread given: a new one
    cfg = {"configurable": {"thread_id": "t-1"}}
    llm.invoke("What is 2+3?", config=cfg)
    chunks = list(llm.stream("What is 2+3?", config=cfg))
    assert "".join(c.content for c in chunks) == "Known: 2 and 3.\n\n\\boxed{5}"
    assert graph.get_state(cfg).values["answer"] == "5"  # the caller's thread holds the run
    assert sum(1 for h in graph.get_state_history(cfg) if h.values.get("answer") == "5" and h.next == ()) == 2  # both replies
