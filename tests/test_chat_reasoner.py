"""ChatModelReasoner with a deterministic fake and with ChatOpenAI against a small OpenAI-compatible server on loopback."""

import pytest
from conftest import OpenAIHandler
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_openai import ChatOpenAI

from rsim_graph.errors import ReasonerError
from rsim_graph.graph import build_graph
from rsim_graph.planners.simple import ScriptedPlanner
from rsim_graph.reasoners.base import StepRequest
from rsim_graph.reasoners.chat import ChatModelReasoner


def fake(*replies):
    return GenericFakeChatModel(messages=iter([AIMessage(r) for r in replies]))


def test_prefill_mode_continues_the_assistant_message():
    model = fake("Known: 2 and 3.\n\nignored tail", "\\boxed{5}")
    r = ChatModelReasoner(model, mode="prefill")
    out = build_graph(ScriptedPlanner(["understand"]), r).invoke({"question": "2+3?"})
    assert [s["text"] for s in out["steps"]] == ["Known: 2 and 3.", "\\boxed{5}"]  # cut at the delimiter
    assert out["answer"] == "5" and out["steps"][0]["completion_ids"] is None
    msgs = r.messages(StepRequest("2+3?", out["steps"][:1], "understand", "T\n", 8, "\n\n"))
    assert [m.type for m in msgs] == ["human", "ai"]
    assert msgs[1].content == out["steps"][0]["injected"] + "Known: 2 and 3.\n\nT\n"


def test_turns_mode_injects_each_strategy_as_a_user_message():
    r = ChatModelReasoner(fake("a", "\\boxed{1}"), mode="turns")
    out = build_graph(ScriptedPlanner(["decompose"]), r).invoke({"question": "q"})
    req = StepRequest("q", out["steps"][:1], "terminate", "Terminate: x\n", 8, "\n\n", history=[{"role": "system", "content": "Be brief."}])
    assert [(m.type, m.content) for m in r.messages(req)] == [
        ("system", "Be brief."), ("human", "q"), ("human", out["steps"][0]["injected"].strip()), ("ai", "a"), ("human", "Terminate: x"),
    ]


def test_chat_openai_against_a_loopback_server(openai_server):
    chat = ChatOpenAI(model="tiny", base_url=openai_server, api_key="k", max_retries=0)
    r = ChatModelReasoner(chat, mode="turns")
    out = build_graph(ScriptedPlanner(["understand"]), r, max_step_tokens=64).invoke({"question": "2+3?"})
    assert out["answer"] == "5" and out["steps"][0]["text"] == "Known: 2 and 3."
    sent = OpenAIHandler.requests[0]
    assert sent["stop"] == ["\n\n"] and sent["model"] == "tiny"
    assert sent.get("max_completion_tokens", sent.get("max_tokens")) == 64  # langchain-openai renames it
    assert out["usage"]["reasoner_tokens"] == 3 + 3  # the server's own completion_tokens for each of the two steps
    assert r.complete("2+3?", 16).meta["usage"]["output_tokens"] == 3


def test_prefill_sends_vllm_continue_final_message(openai_server):
    chat = ChatOpenAI(model="tiny", base_url=openai_server, api_key="k", max_retries=0)
    r = ChatModelReasoner(chat, mode="prefill", continue_final_message=True)
    build_graph(ScriptedPlanner([]), r).invoke({"question": "q"})
    sent = OpenAIHandler.requests[0]
    assert sent["continue_final_message"] is True and sent["add_generation_prompt"] is False
    assert sent["messages"][-1]["role"] == "assistant"


def test_unreachable_server_is_a_one_line_error():
    chat = ChatOpenAI(model="m", base_url="http://127.0.0.1:9/v1", api_key="k", max_retries=0, timeout=5)
    with pytest.raises(ReasonerError, match="cannot reach the reasoner's server.*--reasoner_base_url"):
        build_graph(ScriptedPlanner([]), ChatModelReasoner(chat)).invoke({"question": "q"})


def test_the_terminating_step_keeps_every_paragraph():
    seen = []

    class Recording(GenericFakeChatModel):
        def invoke(self, messages, **kwargs):
            seen.append(kwargs)
            return super().invoke(messages, **kwargs)

    model = Recording(messages=iter([AIMessage("First, 2 and 3.\n\nnot this"), AIMessage("Adding them gives 5.\n\nSo \\boxed{5}.")]))
    out = build_graph(ScriptedPlanner(["understand"]), ChatModelReasoner(model, mode="prefill")).invoke({"question": "2+3?"})
    assert [s["text"] for s in out["steps"]] == ["First, 2 and 3.", "Adding them gives 5.\n\nSo \\boxed{5}."]
    assert seen[0]["stop"] == ["\n\n"] and "stop" not in seen[1]  # the terminating step runs to EOS or its budget
    assert out["answer"] == "5"
