"""Each reasoning step as a LangChain chat-model run, so LangGraph's own streams see the reasoner write.

`graph.stream(..., stream_mode="messages")`, `astream_events` and LangGraph Platform's `messages` streams
listen for chat-model callbacks. The reasoner is not a LangChain chat model (it batches trajectories
behind a micro-batcher), so the `reason` node reports each step itself: a chat-model run named
`rsim_reasoner`, one `on_llm_new_token` per token, then the whole step. The tokens are reported when the
step is written (the batched decoder returns whole steps), not as they are sampled. Nothing is done when
no callback listens: the trainer's rollouts and the server pay nothing.
"""

from __future__ import annotations

from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, LLMResult
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import get_callback_manager_for_config

from rsim_graph.state import Step

NAME = "rsim_reasoner"


def token_pieces(text: str, ids: list[int] | None, tokenizer) -> list[str]:
    """`text` cut where its tokens start (an incremental decode of `ids`), or whole without a tokenizer.

    The step's text is the decoded ids without the step delimiter and outer newlines, so the pieces are the
    decode's, clipped to where `text` lies in it; they always join to `text`.
    """
    if not text or not ids or tokenizer is None:
        return [text] if text else []
    pieces, before = [], ""
    for i in range(1, len(ids) + 1):
        now = tokenizer.decode(ids[:i], skip_special_tokens=True)
        if now.startswith(before) and len(now) > len(before):  # a partial multi-byte character decodes later
            pieces.append(now[len(before) :])
            before = now
    start = before.find(text)
    if start < 0:
        return [text]
    out, pos = [], 0
    for p in pieces:
        lo, hi = max(pos, start), min(pos + len(p), start + len(text))
        if lo < hi:
            out.append(before[lo:hi])
        pos += len(p)
    return out


def report_step(config: RunnableConfig | None, question: str, step: Step, index: int, tokenizer=None) -> None:
    """Report `step` as a finished chat-model run under the node's callbacks (no-op when none listen)."""
    manager = get_callback_manager_for_config(config or {})
    if not manager.handlers:
        return
    manager.add_metadata({"rsim_step": index, "rsim_strategy": step["strategy"], "ls_provider": "rsim", "ls_model_type": "chat"}, inherit=False)
    [run] = manager.on_chat_model_start({"name": NAME}, [[HumanMessage(question)]], name=NAME)
    message_id = f"rsim-{run.run_id}"
    for piece in token_pieces(step["text"], step.get("completion_ids"), tokenizer):
        run.on_llm_new_token(piece, chunk=ChatGenerationChunk(message=AIMessageChunk(content=piece, id=message_id)))
    info = {"rsim_strategy": step["strategy"], "forced": step["forced"], "finish_reason": "length" if step.get("cut") else "stop"}
    message = AIMessage(content=step["text"], id=message_id, response_metadata=info)
    run.on_llm_end(LLMResult(generations=[[ChatGeneration(message=message, generation_info=info)]]))
