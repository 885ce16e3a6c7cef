"""Any LangChain chat model as the reasoner, e.g. `ChatOpenAI` pointed at vLLM, SGLang or Ollama.

This is how a trained planner is plugged in front of an LLM it never trained with. Two modes:
- `prefill`: the steps so far plus the injected text form a partial assistant message that the
  model continues (vLLM/SGLang: `continue_final_message`; many local servers do this by default);
- `turns`: each injected strategy is a new user message, each step the assistant's reply.
Chat backends expose no token ids, so trajectories from them carry text only.
"""

from __future__ import annotations

import logging
from typing import Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from rsim_graph.errors import ReasonerError, UpstreamError
from rsim_graph.reasoners.base import StepOutput, StepRequest
from rsim_graph.state import ChatTurn

logger = logging.getLogger(__name__)


def _connection_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        import httpx

        errors.append(httpx.TransportError)
    except ImportError:
        pass
    try:
        import openai

        errors += [openai.APIConnectionError, openai.APITimeoutError]
    except ImportError:
        pass
    return tuple(errors)


CONNECTION_ERRORS = _connection_errors()


def _status_errors() -> tuple[type[BaseException], ...]:
    try:
        import openai

        return (openai.APIStatusError,)
    except ImportError:
        return ()


STATUS_ERRORS = _status_errors()


def upstream_message(e: BaseException) -> str:
    """The upstream's own error message (OpenAI's `{"error": {"message": ...}}`), else the exception's text."""
    body = getattr(e, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or e).splitlines()[0] if (message or str(e)) else type(e).__name__


class ChatModelReasoner:
    """Write steps with a LangChain chat model.

    Args:
        model (`BaseChatModel`): the chat model.
        mode (`str`, *optional*, defaults to `"prefill"`): `"prefill"` or `"turns"` (see the module docstring).
        continue_final_message (`bool`, *optional*, defaults to `False`): in prefill mode, send vLLM's
            `continue_final_message=True, add_generation_prompt=False` as extra body (for `ChatOpenAI` on vLLM/SGLang).
    """

    def __init__(self, model: BaseChatModel, *, mode: Literal["prefill", "turns"] = "prefill", continue_final_message: bool = False):
        if mode not in ("prefill", "turns"):
            raise ValueError(f"mode must be 'prefill' or 'turns', got {mode!r}")
        self.model = model
        self.mode = mode
        self.continue_final_message = continue_final_message

    def messages(self, request: StepRequest) -> list[BaseMessage]:
        msgs = [*history_messages(request.history), HumanMessage(request.question)]
        if self.mode == "turns":
            for s in request.steps:
                msgs += [HumanMessage(s["injected"].strip()), AIMessage(s["text"])]
            return msgs + [HumanMessage(request.injected.strip())]
        prefix = "".join(s["injected"] + s["text"] + request.delimiter for s in request.steps)
        return msgs + [AIMessage(prefix + request.injected)]

    def step(self, request: StepRequest) -> StepOutput:
        kwargs: dict = {"max_tokens": request.max_new_tokens, **sampling_kwargs(request)}
        if request.stop_at_delimiter:
            kwargs["stop"] = [request.delimiter]
        if self.mode == "prefill" and self.continue_final_message:
            kwargs["extra_body"] = {"continue_final_message": True, "add_generation_prompt": False}
        reply = self._invoke(self.messages(request), **kwargs)
        # Fakes and some servers ignore `stop`; cut at the delimiter so a step is one step.
        text = _content(reply)
        text = (text.split(request.delimiter)[0] if request.stop_at_delimiter else text).strip("\n")
        return StepOutput(text=text, meta=reply_meta(reply))

    def _invoke(self, messages: list[BaseMessage], **kwargs) -> AIMessage:
        try:
            return self.model.invoke(messages, **kwargs)
        except CONNECTION_ERRORS as e:
            raise ReasonerError(
                f"cannot reach the reasoner's server ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no reply'}); "
                "check --reasoner_base_url and that the server is running"
            ) from e
        except STATUS_ERRORS as e:  # a 4xx, or a 5xx after the client's retries
            raise UpstreamError(e.status_code, upstream_message(e)) from e

    def complete(self, question: str, max_new_tokens: int, **options) -> StepOutput:
        """The chat model alone (ZeroCoT): one reply to the question, nothing injected.
        `options` are `StepRequest` fields: `history`, `temperature`, `top_p`, `seed`."""
        request = StepRequest(question, [], "", "", max_new_tokens, "", **options)
        messages = [*history_messages(request.history), HumanMessage(question)]
        reply = self._invoke(messages, max_tokens=max_new_tokens, **sampling_kwargs(request))
        return StepOutput(text=_content(reply), meta=reply_meta(reply))

    def release(self, trajectory_id: str) -> None:
        pass


def history_messages(history: list[ChatTurn] | None) -> list[BaseMessage]:
    kinds = {"system": SystemMessage, "developer": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
    return [kinds[t["role"]](t["content"]) for t in history or [] if t["role"] in kinds]


def sampling_kwargs(request: StepRequest) -> dict:
    """The run's sampling settings as OpenAI request parameters (unset ones are left to the model's defaults)."""
    pairs = {"temperature": request.temperature, "top_p": request.top_p, "seed": request.seed}
    return {k: v for k, v in pairs.items() if v is not None}


def reply_meta(reply: AIMessage) -> dict:
    """The upstream's token counts and why it stopped ("length": the step ran out of tokens)."""
    return {"usage": reply.usage_metadata, "finish_reason": reply.response_metadata.get("finish_reason")}


def _content(reply: AIMessage) -> str:
    if isinstance(reply.content, str):
        return reply.content
    return "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in reply.content)
