"""`RSIMChatOpenAI`: langchain-openai's `ChatOpenAI` for an rSIM server, with the strategy trace kept.

    from rsim_graph.integrations.chat_openai import RSIMChatOpenAI
    llm = RSIMChatOpenAI(model="rsim", base_url="http://127.0.0.1:8000/v1", api_key="unused")
    reply = llm.invoke("Compute (12+7)*3.")
    reply.response_metadata["rsim"]     # {"steps": [{"strategy", "text", "forced"}, ...], "answer", "stop_reason", ...}

The server sends the trace as an extension field (`choices[i].message.rsim`, `choices[i].delta.rsim`);
`ChatOpenAI` drops fields it does not know, and langchain-openai's answer for provider fields is a subclass.
The trace has the shape `RSIMChatModel` gives in process, invoked or streamed (the streamed chunks merge
into the same steps list).
"""

from __future__ import annotations

from typing import Any

import openai
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_openai import ChatOpenAI


class RSIMChatOpenAI(ChatOpenAI):
    """`ChatOpenAI` that puts the server's strategy trace in `response_metadata["rsim"]`."""

    def _create_chat_result(self, response: dict | openai.BaseModel, generation_info: dict | None = None) -> ChatResult:
        result = super()._create_chat_result(response, generation_info)
        choices = (response if isinstance(response, dict) else response.model_dump()).get("choices") or []
        for generation, choice in zip(result.generations, choices, strict=False):
            trace = (choice.get("message") or {}).get("rsim")
            if trace is not None:
                generation.message.response_metadata["rsim"] = trace
        return result

    def _convert_chunk_to_generation_chunk(
        self, chunk: dict, default_chunk_class: type, base_generation_info: dict | None
    ) -> ChatGenerationChunk | None:
        out = super()._convert_chunk_to_generation_chunk(chunk, default_chunk_class, base_generation_info)
        choices = chunk.get("choices") or []
        delta = (choices[0].get("delta") or {}) if choices else {}
        if out is not None and delta.get("rsim"):
            out.message.response_metadata["rsim"] = stream_trace(delta["rsim"], delta.get("content") or "")
        return out


def stream_trace(rsim: dict[str, Any], content: str) -> dict[str, Any]:
    """One chunk's part of the trace: a step (a list, so merged chunks concatenate their steps), or the answer.

    >>> stream_trace({"step": 0, "strategy": "deep-think", "forced": False}, "12+7 = 19")
    {'steps': [{'strategy': 'deep-think', 'text': '12+7 = 19', 'forced': False}]}
    >>> stream_trace({"answer": "57", "stop_reason": "terminate"}, "")
    {'answer': '57', 'stop_reason': 'terminate'}
    """
    if rsim.get("strategy") is not None:
        # A step cut to pieces by the server's stop sequences is still one chunk: the server sends a step per chunk.
        return {"steps": [{"strategy": rsim["strategy"], "text": content.lstrip("\n"), "forced": bool(rsim.get("forced"))}]}
    return {k: v for k, v in rsim.items() if k in ("answer", "stop_reason") and v is not None}
