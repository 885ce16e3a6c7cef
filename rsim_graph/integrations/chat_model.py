"""`RSIMChatModel`: the rSIM graph as a LangChain chat model, for chains and agents.

    from rsim_graph import RSIMChatModel, RuntimeConfig
    llm = RSIMChatModel.load()                 # the bundled tiny ArithWorld planner and reasoner
    llm = RSIMChatModel.load(RuntimeConfig(reasoner="smollm2-rsim", planner="smollm2"))
    reply = llm.invoke("Compute (12+7)*3.")
    reply.response_metadata["rsim"]            # {"steps": [{"strategy", "text", "forced"}, ...], "answer", ...}

The last message is the question; earlier ones (a system prompt, earlier turns) are context for the
reasoner. `stream` yields one chunk per reasoning step; merged, the chunks carry the same trace.
The reasoner writes text steps and cannot call tools: to give a tool-calling agent rSIM reasoning,
hand it rSIM as a tool (`rsim_graph.integrations.tool.rsim_tool`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextvars import ContextVar
from contextlib import closing, contextmanager, suppress
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config
from pydantic import ConfigDict, Field

from rsim_graph.config import RuntimeConfig
from rsim_graph.errors import InputError
from rsim_graph.events import Event
from rsim_graph.loading import Runtime, load_runtime
from rsim_graph.planners.base import Planner
from rsim_graph.reasoners.base import Reasoner
from rsim_graph.runs import Reply, run_events
from rsim_graph.state import RSIMState
from rsim_graph.strategies import StrategyLibrary


_CALLER_CONFIG: ContextVar[RunnableConfig | None] = ContextVar("rsim_caller_config", default=None)


@contextmanager
def caller_config(config: RunnableConfig | None) -> Iterator[None]:
    token = _CALLER_CONFIG.set(config)
    try:
        yield
    finally:
        with suppress(ValueError):  # a stream closed from another context (garbage collection) cannot reset it there
            _CALLER_CONFIG.reset(token)


class RSIMChatModel(BaseChatModel):
    """A chat model whose every reply is a strategy-injected rSIM trajectory.

    Build it with `load` (a `RuntimeConfig`) or `from_runtime` (a `Runtime` from `load_runtime`).

    Args:
        graph (`CompiledStateGraph`): the runtime's graph.
        reasoner (`Reasoner`): the graph's reasoner (answers alone when `strategy_injection` is off,
            and forgets abandoned trajectories).
        planner (`Planner`, *optional*): the graph's planner, which forgets abandoned trajectories too.
        delimiter (`str`): joins steps in the reply text: the strategy library's step delimiter.
        strategy_injection (`bool`, *optional*, defaults to `True`): False asks the reasoner alone (A/B).
        max_steps, max_tokens (`int`, *optional*): per-reply budgets, tighter than the graph's own.
        temperature, top_p (`float`, *optional*), seed (`int`, *optional*): the reasoner's sampling.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    graph: Any = Field(exclude=True)
    reasoner: Any = Field(exclude=True)
    planner: Any = Field(None, exclude=True)
    delimiter: str
    strategy_injection: bool = True
    max_steps: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None

    @classmethod
    def from_runtime(cls, runtime: Runtime, **kwargs) -> RSIMChatModel:
        """Answer with `runtime` (from `load_runtime`); `kwargs` are this model's fields."""
        return cls(graph=runtime.graph, reasoner=runtime.reasoner, planner=runtime.planner, delimiter=runtime.library.step_delimiter, **kwargs)

    @classmethod
    def load(cls, config: RuntimeConfig | None = None, **kwargs) -> RSIMChatModel:
        """The runtime `config` names (default: the bundled tiny planner, greedy, and reasoner, offline)."""
        return cls.from_runtime(load_runtime(config), **kwargs)

    @classmethod
    def from_components(cls, planner: Planner, reasoner: Reasoner, strategies: StrategyLibrary | None = None, **kwargs) -> RSIMChatModel:
        """A planner and a reasoner already in memory, with the default budgets (`load_runtime` with objects)."""
        return cls.from_runtime(load_runtime(planner=planner, reasoner=reasoner, library=strategies or StrategyLibrary.default()), **kwargs)

    @property
    def _llm_type(self) -> str:
        return "rsim"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"strategy_injection": self.strategy_injection, "max_steps": self.max_steps, "max_tokens": self.max_tokens}

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any):
        if tools:
            raise InputError(
                "RSIMChatModel cannot call tools: its reasoner writes plain reasoning steps. Give the agent a "
                "tool-calling model and hand it rSIM as a tool instead: rsim_graph.integrations.tool.rsim_tool(graph)"
            )
        return self.bind(**kwargs)

    # -- running ------------------------------------------------------------------------------------
    def _inputs(self, messages: list[BaseMessage], overrides: dict) -> RSIMState:
        if not messages or not isinstance(messages[-1], HumanMessage):
            got = type(messages[-1]).__name__ if messages else "no messages"
            raise InputError(f"RSIMChatModel answers the last message, which must be a HumanMessage (got {got})")
        opts = check_options({k: overrides.get(k, getattr(self, k)) for k in ("temperature", "top_p", "seed", "max_steps", "max_tokens")})
        roles = {SystemMessage: "system", HumanMessage: "user", AIMessage: "assistant"}
        history = [{"role": roles[type(m)], "content": text_of(m)} for m in messages[:-1] if type(m) in roles]
        return {
            "question": text_of(messages[-1]),
            "history": history,
            "sampling": {k: opts[k] for k in ("temperature", "top_p", "seed") if opts[k] is not None},
            "budget": {k: v for k, v in (("max_steps", opts["max_steps"]), ("max_total_tokens", opts["max_tokens"])) if v},
        }

    def _events(self, messages: list[BaseMessage], kwargs: dict, run_manager: CallbackManagerForLLMRun | None) -> Iterator[Event]:
        inputs = self._inputs(messages, kwargs)
        injection = kwargs.get("strategy_injection", self.strategy_injection)
        return run_events(
            self.graph, self.reasoner, inputs, injection=injection, max_tokens=inputs["budget"].get("max_total_tokens") or 2048,
            config=self._thread(run_manager), planner=self.planner,
        )

    def _thread(self, run_manager: CallbackManagerForLLMRun | None) -> dict | None:
        """A checkpointed graph runs on a thread: the caller's `configurable.thread_id` (the config passed to
        `invoke`/`stream`, or the enclosing LangGraph node's), else a new thread for this reply alone."""
        if getattr(self.graph, "checkpointer", None) is None:
            return None
        config = _CALLER_CONFIG.get() or ensure_config()
        thread_id = (config.get("configurable") or {}).get("thread_id") or uuid.uuid4().hex
        return {"configurable": {"thread_id": str(thread_id)}}

    # BaseChatModel hands `_generate` the config's callbacks, tags and metadata, not its `configurable`: these keep
    # the caller's config where `_thread` can read it.
    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AIMessage:
        with caller_config(config):
            return super().invoke(input, config, **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AIMessage:
        with caller_config(config):
            return await super().ainvoke(input, config, **kwargs)

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[AIMessageChunk]:
        with caller_config(config):
            yield from super().stream(input, config, **kwargs)

    async def astream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AsyncIterator[AIMessageChunk]:
        with caller_config(config):
            async for chunk in super().astream(input, config, **kwargs):
                yield chunk

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        reply = Reply(self.delimiter, stop).collect(self._events(messages, kwargs, run_manager))
        injection = kwargs.get("strategy_injection", self.strategy_injection)
        message = AIMessage(
            content=reply.content,
            response_metadata={"rsim": reply.trace(injection), "finish_reason": reply.finish_reason, "model_name": "rsim"},
            usage_metadata=_usage(reply),
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        reply = Reply(self.delimiter, stop)
        with closing(reply.follow(self._events(messages, kwargs, run_manager))) as steps:  # a consumer that stops early ends the run now
            for event, delta in steps:
                if not delta and reply.stopped:  # cut to nothing by a stop sequence: no chunk, as the server
                    break
                step = {"strategy": event.strategy or "", "text": reply.steps[-1].text, "forced": event.forced}
                # Lists in response_metadata concatenate when chunks are merged: the merged message holds every step.
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=delta, response_metadata={"rsim": {"steps": [step]}}))
                if run_manager:
                    run_manager.on_llm_new_token(delta, chunk=chunk)
                yield chunk
        injection = kwargs.get("strategy_injection", self.strategy_injection)
        trace = {k: v for k, v in reply.trace(injection).items() if k != "steps"}
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                response_metadata={"rsim": trace, "finish_reason": reply.finish_reason, "model_name": "rsim"},
                usage_metadata=_usage(reply),
                chunk_position="last",
            )
        )


def check_options(opts: dict) -> dict:
    """Per-call options are checked like the model's own fields (a call's kwargs bypass pydantic)."""
    for key in ("max_steps", "max_tokens"):
        v = opts[key]
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise InputError(f"{key}={v!r} is not a budget; pass a whole number of at least 1, or leave it unset")
    t, p = opts["temperature"], opts["top_p"]
    if t is not None and not (isinstance(t, int | float) and 0 <= t <= 2):
        raise InputError(f"temperature={t!r} is outside [0, 2]; 0 is greedy")
    if p is not None and not (isinstance(p, int | float) and 0 < p <= 1):
        raise InputError(f"top_p={p!r} is outside (0, 1]")
    return opts


def text_of(message: BaseMessage) -> str:
    """A message's text; other content (images, audio) is refused, not dropped: the reasoners read text."""
    if isinstance(message.content, list):
        kinds = {part.get("type", "?") if isinstance(part, dict) else "text" for part in message.content} - {"text"}
        if kinds:
            raise InputError(f"RSIMChatModel reads text only; the message holds {', '.join(sorted(kinds))} content: describe it in text")
    return message.text


def _usage(reply: Reply) -> UsageMetadata:
    _, prompt, completion = reply.tokens
    return UsageMetadata(input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion)
