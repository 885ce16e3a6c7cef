"""Server settings: flags (`python -m server --port 8001`) or environment variables (`RSIM_PORT=8001`).

pydantic-settings reads both; flags win. With no settings at all the server serves the bundled tiny
ArithWorld models, offline.
"""

from __future__ import annotations

import os

from pydantic import Field, create_model, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rsim_graph.config import RuntimeConfig, config_from, runtime_settings_fields

# The variables renamed when the server's flags took the runtime's shared names.
RENAMED_ENV = {"RSIM_MAX_TOKENS": "RSIM_MAX_TOTAL_TOKENS", "RSIM_MAX_STEPS": "RSIM_MAX_REASONING_STEPS"}

# The runtime's flags (`RuntimeConfig`: the same names, meanings and defaults as solve and evals), as settings.
RuntimeSettings = create_model("RuntimeSettings", __base__=BaseSettings, **runtime_settings_fields())


class ServerSettings(RuntimeSettings):
    # Implicit flags: `--sample_planner` alone, as solve and evals take it.
    model_config = SettingsConfigDict(
        env_prefix="RSIM_", extra="forbid", cli_kebab_case=False, cli_prog_name="python -m server", cli_implicit_flags=True
    )

    host: str = Field("127.0.0.1", description="interface to listen on (0.0.0.0 for all)")
    port: int = Field(8000, ge=0, le=65535, description="port to listen on")
    model_name: str = Field("rsim", min_length=1, description="the model name clients send and /v1/models lists")

    api_key: list[str] = Field(default_factory=list, description="accepted bearer keys from clients (repeat the flag); none means no auth")
    public_metrics: bool = Field(False, description="serve /metrics without a key (for a scraper that sends none); /health is always open")
    max_concurrent_requests: int = Field(64, ge=1, description="requests generating at once")
    max_queue: int = Field(256, ge=0, description="requests waiting beyond those; more are refused with 429")
    request_timeout: float = Field(300.0, gt=0, description="seconds a request may take, queueing included (then 504)")
    read_timeout: float = Field(30.0, gt=0, description="seconds a client has to send a whole request, headers and body (then the connection closes)")
    max_n: int = Field(8, ge=1, description="cap on a request's n")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="largest request body (then 413)")

    @model_validator(mode="after")
    def _check(self) -> ServerSettings:
        for old, new in RENAMED_ENV.items():
            if old in os.environ:
                raise ValueError(f"the environment variable {old} is renamed; set {new} (the flag solve and evals share)")
        self.runtime()  # the runtime's own checks, with their what/why/how-to-fix messages
        return self

    def runtime(self) -> RuntimeConfig:
        """The runtime these settings serve. A request's `max_tokens`, `max_steps` and `temperature` default to
        `max_total_tokens`, `max_reasoning_steps` and `temperature`, and may not exceed the first two."""
        return config_from(self)
