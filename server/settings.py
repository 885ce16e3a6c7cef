"""Server settings: flags (`python -m server --port 8001`) or environment variables (`RSIM_PORT=8001`).

pydantic-settings reads both; flags win. With no settings at all the server serves the bundled tiny
ArithWorld models, offline.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RSIM_", extra="forbid", cli_kebab_case=False, cli_prog_name="python -m server")

    host: str = Field("127.0.0.1", description="interface to listen on (0.0.0.0 for all)")
    port: int = Field(8000, ge=0, le=65535, description="port to listen on")
    model_name: str = Field("rsim", min_length=1, description="the model name clients send and /v1/models lists")

    planner: str | None = Field(None, description="planner checkpoint directory or spec (smollm2, random, heuristic, ...); default: the bundled planner")
    sample_planner: bool = Field(False, description="sample the planner's strategy instead of taking its most likely one")
    reasoner: str | None = Field(None, description="local model directory, hub id, .gguf file, smollm2, smollm2-rsim, or vllm:<model>; default: the bundled reasoner")
    reasoner_base_url: str | None = Field(None, description="OpenAI-compatible upstream (vLLM, SGLang, Ollama) for the reasoner")
    reasoner_model: str | None = Field(None, description="model name at --reasoner_base_url")
    reasoner_api_key: str | None = Field(None, description="key for --reasoner_base_url")
    reasoner_mode: Literal["prefill", "turns"] = Field("prefill", description="how a chat upstream sees injected strategies")
    injection: Literal["auto", "prefill", "system", "headers"] = Field(
        "auto", description="how the reasoner sees a strategy (auto: prefill for the bundled tiny models, system for others)"
    )
    strategies: str | None = Field(None, description="strategy library YAML; default: the nine built-in strategies")

    api_key: list[str] = Field(default_factory=list, description="accepted bearer keys (repeat the flag); none means no auth")
    public_metrics: bool = Field(False, description="serve /metrics without a key (for a scraper that sends none); /health is always open")
    max_concurrent_requests: int = Field(64, ge=1, description="requests generating at once")
    max_queue: int = Field(256, ge=0, description="requests waiting beyond those; more are refused with 429")
    request_timeout: float = Field(300.0, gt=0, description="seconds a request may take, queueing included (then 504)")
    read_timeout: float = Field(30.0, gt=0, description="seconds a client has to send a whole request, headers and body (then the connection closes)")
    max_tokens: int = Field(2048, ge=1, description="cap on a request's max_tokens (reasoner tokens per answer)")
    max_steps: int = Field(12, ge=1, description="cap on a request's max_steps (reasoning steps per answer)")
    max_step_tokens: int = Field(256, ge=1, description="reasoner tokens per step")
    max_n: int = Field(8, ge=1, description="cap on a request's n")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="largest request body (then 413)")
    temperature: float = Field(0.0, ge=0, description="the reasoner's temperature when a request sets none")

    @model_validator(mode="after")
    def _check(self) -> ServerSettings:
        if self.reasoner_base_url and not self.reasoner_model:
            raise ValueError("--reasoner_base_url needs --reasoner_model: the model name that server serves")
        if self.reasoner_base_url and self.reasoner:
            raise ValueError("pass either --reasoner (a local or vLLM model) or --reasoner_base_url (an upstream server), not both")
        if self.max_tokens < self.max_step_tokens:
            raise ValueError(
                f"max_tokens ({self.max_tokens}) is below max_step_tokens ({self.max_step_tokens}); "
                "raise --max_tokens or lower --max_step_tokens so one full step fits"
            )
        return self
