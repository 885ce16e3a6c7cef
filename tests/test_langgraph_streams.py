"""The reasoner's steps on LangGraph's own streams: `stream_mode="messages"` and `astream_events`."""

from __future__ import annotations

import asyncio

from conftest import ScriptedReasoner
from langchain_core.messages import AIMessageChunk

from rsim_graph.graph import build_graph
from rsim_graph.messages import NAME, token_pieces
from rsim_graph.planners.simple import ScriptedPlanner

TEXTS = {"understand": "Known: 2 and 3.", "deep-think": "2+3 = 5"}


def graph():
    return build_graph(ScriptedPlanner(["understand", "deep-think"]), ScriptedReasoner(answer="5", texts=TEXTS))


def test_stream_mode_messages_yields_every_step_as_chat_model_chunks():
    steps: dict[int, list[str]] = {}
    for message, meta in graph().stream({"question": "What is 2+3?"}, stream_mode="messages"):
        assert isinstance(message, AIMessageChunk) and meta["langgraph_node"] == "reason"
        steps.setdefault(meta["rsim_step"], []).append(message.content)
        assert meta["rsim_strategy"] == ["understand", "deep-think", "terminate"][meta["rsim_step"]]
    assert ["".join(v) for _, v in sorted(steps.items())] == ["Known: 2 and 3.", "2+3 = 5", "\\boxed{5}"]


def test_astream_events_shows_a_chat_model_run_per_step():
    async def events():
        return [e async for e in graph().astream_events({"question": "What is 2+3?"}, version="v2") if "chat_model" in e["event"]]

    got = asyncio.run(events())
    assert [e["event"] for e in got if e["event"] != "on_chat_model_stream"] == ["on_chat_model_start", "on_chat_model_end"] * 3
    assert {e["name"] for e in got} == {NAME}
    ends = [e["data"]["output"].content for e in got if e["event"] == "on_chat_model_end"]
    assert ends == ["Known: 2 and 3.", "2+3 = 5", "\\boxed{5}"]


def test_token_pieces_are_one_per_token_and_join_to_the_step(tokenizer):
    ids = tokenizer("s1 12+7 = 19\n\n").input_ids  # the step with its delimiter, as the reasoner wrote it
    pieces = token_pieces("s1 12+7 = 19", ids, tokenizer)
    assert "".join(pieces) == "s1 12+7 = 19" and len(pieces) == len("s1 12+7 = 19")  # a character tokenizer
    assert token_pieces("whole", None, None) == ["whole"] and token_pieces("", [1], tokenizer) == []
