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
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Roles a request may use; tools are not supported (the reasoner writes text steps only).
Role = Literal["system", "developer", "user", "assistant"]


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


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
        return v

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    # Unknown OpenAI parameters (presence_penalty, logit_bias, ...) are accepted and ignored, as vLLM does.
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    n: int = Field(1, ge=1, le=128)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = Field(None, ge=0, lt=2**63)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256)
    strategy_injection: bool = True
    max_steps: int | None = Field(None, ge=1)

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> list[str]:
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop takes up to 4 non-empty strings")
        return stops

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
