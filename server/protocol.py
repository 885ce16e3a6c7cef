"""The OpenAI chat-completions wire format, as pydantic models; limits are `Field` constraints.

rSIM extensions, which the OpenAI SDK passes through `extra_body` and keeps on its response objects:
- request `strategy_injection` (default true): false runs the reasoner alone, for A/B comparison;
- request `max_steps`: cap on reasoning steps;
- response `choices[i].message.rsim`: the strategy trace (each step's strategy and text, the answer);
- stream `choices[i].delta.rsim`: the step a content delta belongs to, and the answer on the last chunk.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

# Roles a request may use; tools are not supported (the reasoner writes text steps only).
Role = Literal["system", "developer", "user", "assistant"]
# OpenAI rejects `"n": 3.0`, `"stream": "yes"` and `"max_tokens": true`; pydantic's lax mode would coerce them.
Int = Annotated[int, Strict()]
Bool = Annotated[bool, Strict()]

# OpenAI fields this server cannot honour: refused with a 400 that says what to do, never silently dropped.
UNSUPPORTED = {
    "tools": "tool calling is not supported: the reasoner writes text steps; give the agent a tool-calling model, "
    "and use rSIM as a tool (rsim_graph.integrations.tool) or for the reasoning turns",
    "functions": "function calling is not supported: the reasoner writes text steps; use a tool-calling model for it",
    "response_format": "structured output is not supported: the answer is free text with a strategy trace; "
    "ask for the format in the prompt and parse choices[0].message.rsim.answer",
    "logprobs": "logprobs are not returned by this server; drop the field",
    "top_logprobs": "logprobs are not returned by this server; drop the field",
}


def _unset(name: str, value) -> bool:
    """Whether an OpenAI field asks for nothing (its off value), so it can be accepted."""
    if value is None or value is False or value == []:
        return True
    if name in ("tool_choice", "function_call"):
        return value == "none"
    if name == "response_format":
        return isinstance(value, dict) and value.get("type") == "text"
    return name == "top_logprobs" and value == 0


def valid_unicode(text: str, where: str) -> str:
    """JSON's `\\ud800` escapes decode to lone surrogates, which no tokenizer can encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{where} holds invalid Unicode (a lone surrogate escape); send valid UTF-8 text") from None
    return text


class TextPart(BaseModel):
    type: Literal["text"]
    text: str

    @field_validator("text")
    @classmethod
    def _unicode(cls, v: str) -> str:
        return valid_unicode(v, "the text part")


class ChatMessage(BaseModel):
    role: Role
    content: str | list[TextPart] | None = None
    name: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_only(cls, v):
        if isinstance(v, list):
            kinds = {str(p.get("type")) for p in v if isinstance(p, dict)} - {"text"}
            if kinds:
                raise ValueError(f"only text content parts are supported (got {', '.join(sorted(kinds))}): rSIM's reasoners read text")
        return valid_unicode(v, "content") if isinstance(v, str) else v

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    include_usage: Bool = False


class ChatCompletionRequest(BaseModel):
    # Unknown OpenAI parameters (presence_penalty, logit_bias, ...) are accepted and ignored, as vLLM does.
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    n: Int = Field(1, ge=1, le=128)
    max_tokens: Int | None = Field(None, ge=1)
    max_completion_tokens: Int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: Int | None = Field(None, ge=0, lt=2**63)
    stop: str | list[str] | None = None
    stream: Bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256)
    strategy_injection: Bool = True
    max_steps: Int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _supported(self):
        extra = self.model_extra or {}
        for name, why in UNSUPPORTED.items():
            if not _unset(name, extra.get(name)):
                raise ValueError(f"{name}: {why}")
        for name in ("tool_choice", "function_call"):
            if not _unset(name, extra.get(name)):
                raise ValueError(f"{name}: {UNSUPPORTED['tools']}")
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options: only allowed when stream is true; set stream or drop stream_options")
        return self

    @field_validator("n", "stream", mode="before")
    @classmethod
    def _null_is_default(cls, v, info):
        # OpenAI's spec makes these nullable: null asks for the default.
        return cls.model_fields[info.field_name].default if v is None else v

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> list[str]:
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop takes up to 4 non-empty strings")
        return [valid_unicode(s, "stop") for s in stops]

    @field_validator("messages")
    @classmethod
    def _last_is_user(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        if messages[-1].role != "user":
            raise ValueError(f"the last message must be from the user (got {messages[-1].role!r}): rSIM answers a question")
        if not messages[-1].text().strip():
            raise ValueError("the last user message is empty: send the question to answer")
        return messages

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class StepTrace(BaseModel):
    strategy: str
    text: str
    forced: bool = False


class Trace(BaseModel):
    """The strategy trace of one choice."""

    strategy_injection: bool
    steps: list[StepTrace]
    answer: str | None
    stop_reason: str


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    rsim: Trace


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


class ChatCompletion(BaseModel):
    id: str = Field(default_factory=completion_id)
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage


class DeltaTrace(BaseModel):
    step: int | None = None
    strategy: str | None = None
    forced: bool | None = None
    answer: str | None = None
    stop_reason: str | None = None


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    rsim: DeltaTrace | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "rsim"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    status: Literal["ok", "loading", "failed"]
    detail: str | None = None
