"""`create_app(settings)`: the FastAPI app, with a lifespan that loads the models in the background.

While the models load, `/health` answers 503 and completions 503; a load that fails keeps the
server up with 503s that say why, so an orchestrator sees the reason instead of a crash loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_fastapi_instrumentator import Instrumentator

from rsim_graph.errors import RSIMError
from rsim_graph.loading import Runtime
from server import errors
from server.engine import Engine, load_backend
from server.protocol import Health
from server.routes import check_key, router
from server.settings import ServerSettings

logger = logging.getLogger(__name__)


class BodyLimit:
    """Refuse bodies over `max_bytes` with 413 before the app reads them (chunked bodies are counted).

    Kept rather than FastAPI's own `FastAPI(max_body_size=...)` (fastapi 0.165): its 413 is sent from outside the
    app's exception handlers (`fastapi/_body_limit.py`), as `{"detail": "Content Too Large"}` or, for a declared
    Content-Length over the limit, as plain text, so an OpenAI client would get neither the `error` object its SDK
    reads nor the limit it went over (tried: tests/test_server.py::test_oversized_bodies_are_413 fails with it).
    """

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return await self._refuse(send, 400, "the Content-Length header is not a number")
            if int(length) > self.max_bytes:
                return await self._refuse(send, 413, f"the body is {int(length)} bytes, over this server's limit of {self.max_bytes}")
            return await self.app(scope, receive, send)
        # No length given (chunked): read and count it here, then replay it to the app.
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, receive, send)
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                return await self._refuse(send, 413, f"the body is over this server's limit of {self.max_bytes} bytes")
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send, status: int, message: str):
        body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}).encode()
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


def add_docs(app: FastAPI) -> None:
    """The OpenAPI schema and Swagger UI, behind the API key when the server has one (a browser cannot send
    it: fetch /openapi.json with the key instead)."""

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(check_key)])
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(check_key)])
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="rSIM")


def create_app(settings: ServerSettings | None = None, *, backend: Runtime | None = None) -> FastAPI:
    """Build the app.

    Args:
        settings (`ServerSettings`, *optional*): defaults to `ServerSettings()` (environment variables).
        backend (`Runtime`, *optional*): a ready runtime (tests, embedding); otherwise the lifespan
            loads one from `settings` on a worker thread.
    """
    settings = settings or ServerSettings()
    registry = CollectorRegistry()
    strategy_counter = Counter("rsim_strategy", "Steps written under each strategy", ["strategy"], registry=registry)

    def start(app: FastAPI, ready: Runtime) -> None:
        engine = Engine(ready, settings, on_strategy=lambda s: strategy_counter.labels(strategy=s).inc())
        Gauge("rsim_requests_running", "Requests generating", registry=registry).set_function(lambda: engine.running)
        Gauge("rsim_requests_waiting", "Requests queued", registry=registry).set_function(lambda: engine.waiting)
        app.state.engine = engine
        app.state.status = Health(status="ok")

    async def load(app: FastAPI) -> None:
        try:
            start(app, await asyncio.to_thread(load_backend, settings))
            logger.info("models loaded; serving %r", settings.model_name)
        except RSIMError as e:
            app.state.status = Health(status="failed", detail=str(e))
            logger.error("cannot load the models: %s", e)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loading = asyncio.create_task(load(app)) if app.state.engine is None else None
        try:
            yield
        finally:
            if loading is not None:
                loading.cancel()
            if app.state.engine is not None:
                app.state.engine.close()

    # /docs and /openapi.json are routes of our own so that --api_key guards them like the API.
    app = FastAPI(
        title="rSIM", version="0.1.0", lifespan=lifespan, summary="OpenAI-compatible chat completions with strategy-injected reasoning",
        docs_url=None, redoc_url=None, openapi_url=None,
    )
    app.state.settings = settings
    app.state.engine = None
    app.state.status = Health(status="loading")
    app.state.started = int(time.time())
    if backend is not None:
        start(app, backend)
    errors.install(app)
    app.include_router(router)
    add_docs(app)
    guard = [] if settings.public_metrics else [Depends(check_key)]
    Instrumentator(registry=registry, excluded_handlers=["/metrics"]).instrument(app).expose(app, include_in_schema=False, dependencies=guard)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app
