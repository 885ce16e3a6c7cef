"""HTTP routes: chat completions (JSON or SSE), models, health. Dependencies are overridable in tests."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.sse import EventSourceResponse, format_sse_event

from rsim_graph.errors import ContextLengthError, InputError, ReasonerError, UpstreamError
from rsim_graph.graph import clean_text
from rsim_graph.reasoners.hf import HFReasoner
from rsim_graph.runs import Reply
from server.engine import Busy, Engine, Job
from server.errors import APIError
from server.protocol import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    Choice,
    ChunkChoice,
    Delta,
    DeltaTrace,
    ErrorResponse,
    Health,
    ModelCard,
    ModelList,
    Trace,
    Usage,
    completion_id,
)
from server.settings import ServerSettings

logger = logging.getLogger(__name__)

router = APIRouter()
bearer = HTTPBearer(auto_error=False)

ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 429, 502, 503, 504)}


def get_settings(request: Request) -> ServerSettings:
    return request.app.state.settings


def get_engine(request: Request) -> Engine:
    engine = request.app.state.engine
    if engine is None:
        status = request.app.state.status
        raise APIError(503, f"the model is {status.status}: {status.detail or 'try again shortly'}", "service_unavailable")
    return engine


SettingsDep = Annotated[ServerSettings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]


def check_key(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)], settings: SettingsDep) -> None:
    if not settings.api_key:
        return
    if credentials is None:
        raise APIError(401, "missing API key: send it as 'Authorization: Bearer <key>'", "authentication_error", code="invalid_api_key")
    if credentials.credentials not in settings.api_key:
        raise APIError(401, "invalid API key", "authentication_error", code="invalid_api_key")


def jobs_for(req: ChatCompletionRequest, settings: ServerSettings, cap: int | None = None) -> list[Job]:
    """Check the request against the server's caps (`cap`: its max_tokens cap, the settings' unless the model's
    context window is smaller) and turn it into one job per choice."""
    cap = cap or settings.max_total_tokens
    if req.model != settings.model_name:
        raise APIError(404, f"the model {req.model!r} does not exist; this server serves {settings.model_name!r}", "not_found_error", "model", "model_not_found")
    if req.n > settings.max_n:
        raise APIError(400, f"n is {req.n}, over this server's cap of {settings.max_n}; ask for fewer choices", param="n")
    max_tokens = req.token_limit() or cap
    if max_tokens > cap:
        raise APIError(400, f"max_tokens is {max_tokens}, over this server's cap of {cap}", param="max_tokens")
    if req.max_steps is not None and req.max_steps > settings.max_reasoning_steps:
        raise APIError(400, f"max_steps is {req.max_steps}, over this server's cap of {settings.max_reasoning_steps}", param="max_steps")
    sampling = {k: v for k, v in (("temperature", req.temperature), ("top_p", req.top_p)) if v is not None}
    jobs = []
    for i in range(req.n):
        s = dict(sampling)
        if req.seed is not None:
            s["seed"] = req.seed + i
        jobs.append(
            Job(
                question=req.messages[-1].text(),
                history=[history_turn(m) for m in req.messages[:-1]],
                sampling=s,
                budget={"max_total_tokens": max_tokens, **({"max_steps": req.max_steps} if req.max_steps else {})},
                injection=req.strategy_injection,
                max_tokens=max_tokens,
                stops=req.stop or [],
            )
        )
    return jobs


def history_turn(m: ChatMessage) -> dict:
    return {"role": "system" if m.role == "developer" else m.role, "content": m.text()}


async def run_reply(engine: Engine, job: Job) -> Reply:
    reply = engine.reply(job)
    async for _ in engine.events(job, reply):
        pass
    return reply


def total_usage(replies: list[Reply]) -> Usage:
    """OpenAI's usage over `n` choices: the question counted once (as OpenAI does), each choice's injected strategy
    text and written tokens added."""
    tokens = [r.tokens for r in replies]
    prompt = max((q for q, _, _ in tokens), default=0) + sum(p - q for q, p, _ in tokens)
    completion = sum(c for _, _, c in tokens)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def queue_full() -> APIError:
    # Retry-After: the openai SDK waits this long between its retries (without it, its backoff gives up in about 1.3 s).
    return APIError(429, "the server's queue is full; retry later", "rate_limit_error", code="queue_full", headers={"Retry-After": "2"})


def seen(future: asyncio.Future) -> asyncio.Future:
    """Retrieve a gather's outcome when it ends: after a disconnect or timeout nobody awaits it, and asyncio
    would log its exception as an ERROR traceback ("exception was never retrieved")."""
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    return future


async def until_disconnect(request: Request) -> None:
    while not await request.is_disconnected():
        await asyncio.sleep(0.05)


def run_error(e: Exception) -> APIError:
    if isinstance(e, ContextLengthError):
        return APIError(400, str(e), param="messages", code="context_length_exceeded")
    if isinstance(e, InputError):
        return APIError(400, str(e), param="messages")
    if isinstance(e, UpstreamError):  # the upstream's own words, as a gateway reports them
        return APIError(502, str(e), "upstream_error", code=str(e.status))
    if isinstance(e, ReasonerError):
        return APIError(503, str(e), "service_unavailable")
    logger.error("request failed", exc_info=e)  # the 500 tells the client to look here
    return APIError(500, f"internal error ({type(e).__name__}); see the server log", "server_error")


@router.post("/v1/chat/completions", response_model=ChatCompletion, responses=ERRORS, dependencies=[Depends(check_key)])
async def chat_completions(
    body: ChatCompletionRequest,
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
):
    """OpenAI's chat completions, answered by strategy-injected reasoning: the planner picks a strategy before
    each step and the reasoner writes it. The last message is the question; earlier ones are context.

    JSON, or with `stream` server-sent events (one content delta per step). Each choice carries the strategy
    trace in `message.rsim` (`delta.rsim` when streamed); `strategy_injection: false` asks the reasoner alone.
    `max_tokens` caps what the reasoner writes: a small budget shortens the steps, and `finish_reason` is
    `length` only when the answer itself ran out of tokens."""
    jobs = jobs_for(body, settings, engine.max_total_tokens)
    if not clean_text(jobs[0].question, engine.backend.library).strip():
        # Caught here so a stream is refused with a 400 rather than failing after its 200 status line.
        raise APIError(400, "the question holds nothing but strategy prompts or control tokens; send the problem to solve", param="messages")
    if isinstance(engine.backend.reasoner, HFReasoner):  # OpenAI's check, before queueing or streaming
        budget = body.token_limit() or settings.max_step_tokens  # unset: the first step must fit
        try:
            await asyncio.to_thread(engine.backend.reasoner.check_prompt, jobs[0].question, jobs[0].history, budget)
        except ContextLengthError as e:
            raise run_error(e) from None
    if body.stream:
        if engine.full():  # refused before the 200 status line, so SDKs raise RateLimitError
            raise queue_full()
        return EventSourceResponse(stream_chunks(engine, jobs, body))
    try:
        async with asyncio.timeout(settings.request_timeout):
            async with engine.admit():
                work = seen(asyncio.gather(*(run_reply(engine, job) for job in jobs)))
                watch = asyncio.ensure_future(until_disconnect(request))
                try:
                    done, _ = await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
                finally:  # on a timeout too: the runs must stop, not finish unseen
                    for task in (work, watch):
                        if not task.done():
                            task.cancel()
                if watch in done:  # the client left: stop generating for it
                    logger.info("client disconnected; cancelled its generation")
                    return JSONResponse({"error": {"message": "client disconnected", "type": "cancelled"}}, status_code=499)
                replies = work.result()
    except Busy:
        raise queue_full() from None
    except TimeoutError:
        raise APIError(504, f"the request took longer than {settings.request_timeout:g} s and was cancelled", "timeout_error") from None
    except APIError:
        raise
    except Exception as e:
        engine.backend_error = str(e) if isinstance(e, ReasonerError) else engine.backend_error
        raise run_error(e) from e
    engine.backend_error = None
    choices = [
        Choice(index=i, message=AssistantMessage(content=r.content, rsim=Trace(**r.trace(body.strategy_injection))), finish_reason=r.finish_reason)
        for i, r in enumerate(replies)
    ]
    return ChatCompletion(model=body.model, choices=choices, usage=total_usage(replies))


async def stream_chunks(engine: Engine, jobs: list[Job], body: ChatCompletionRequest) -> AsyncIterator[bytes]:
    """SSE in OpenAI's chunk format: a role chunk per choice, content deltas, a finish chunk per choice,
    an optional usage chunk, then [DONE]. Errors after the stream started arrive as an error event."""
    cid, created = completion_id(), int(time.time())

    def chunk(choices: list[ChunkChoice], usage: Usage | None = None) -> bytes:
        c = ChatCompletionChunk(id=cid, created=created, model=body.model, choices=choices, usage=usage)
        return format_sse_event(data_str=c.model_dump_json(exclude_none=True))

    queue: asyncio.Queue = asyncio.Queue()
    replies: list[Reply | None] = [None] * len(jobs)

    async def pump(i: int) -> None:
        replies[i] = reply = engine.reply(jobs[i])
        async for step, delta in engine.events(jobs[i], reply):
            if not delta:
                continue  # a step that a stop sequence cut to nothing sends no chunk
            trace_delta = DeltaTrace(step=step.step, strategy=step.strategy, forced=step.forced)
            await queue.put(chunk([ChunkChoice(index=i, delta=Delta(content=delta, rsim=trace_delta))]))
        final = DeltaTrace(answer=reply.done.answer if reply.done else None, stop_reason=reply.stop_reason)
        await queue.put(chunk([ChunkChoice(index=i, delta=Delta(rsim=final), finish_reason=replies[i].finish_reason)]))

    try:
        async with asyncio.timeout(engine.settings.request_timeout):
            async with engine.admit():
                for i in range(len(jobs)):
                    yield chunk([ChunkChoice(index=i, delta=Delta(role="assistant", content=""))])
                tasks = [asyncio.ensure_future(pump(i)) for i in range(len(jobs))]
                getter: asyncio.Future | None = None
                try:
                    gathered = seen(asyncio.gather(*tasks))
                    while not (gathered.done() and queue.empty()):
                        getter = asyncio.ensure_future(queue.get())
                        await asyncio.wait({getter, gathered}, return_when=asyncio.FIRST_COMPLETED)
                        if getter.done():
                            yield getter.result()
                        else:
                            getter.cancel()
                    gathered.result()  # re-raise a run's failure
                finally:  # a timeout or disconnect lands in the wait above: nothing may be left pending
                    for t in [*tasks, *([getter] if getter else [])]:
                        t.cancel()
        engine.backend_error = None
        if body.stream_options and body.stream_options.include_usage:
            yield chunk([], total_usage([r for r in replies if r is not None]))
    except Busy:
        yield error_event(queue_full())
    except TimeoutError:
        yield error_event(APIError(504, f"the request took longer than {engine.settings.request_timeout:g} s and was cancelled", "timeout_error"))
    except Exception as e:
        if isinstance(e, ReasonerError):
            engine.backend_error = str(e)
        yield error_event(run_error(e))
    yield format_sse_event(data_str="[DONE]")


def error_event(e: APIError) -> bytes:
    return format_sse_event(data_str=e.response().model_dump_json())


@router.get("/v1/models", response_model=ModelList, responses=ERRORS, dependencies=[Depends(check_key)])
async def models(request: Request, settings: SettingsDep) -> ModelList:
    """The one model this server serves (`--model_name`)."""
    return ModelList(data=[ModelCard(id=settings.model_name, created=request.app.state.started)])


@router.get("/v1/models/{model_id:path}", response_model=ModelCard, responses=ERRORS, dependencies=[Depends(check_key)])
async def model(model_id: str, request: Request, settings: SettingsDep) -> ModelCard:
    """The served model's card; any other id is a 404."""
    if model_id != settings.model_name:
        raise APIError(404, f"the model {model_id!r} does not exist; this server serves {settings.model_name!r}", "not_found_error", "model", "model_not_found")
    return ModelCard(id=settings.model_name, created=request.app.state.started)


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(request: Request):
    """200 when the models are loaded and the reasoner answers; 503 while they load, after a failed load, or
    while the reasoner's upstream fails (the detail says why). Open without a key."""
    status: Health = request.app.state.status
    engine: Engine | None = request.app.state.engine
    if status.status == "ok" and engine is not None and engine.backend_error:
        return JSONResponse(Health(status="failed", detail=engine.backend_error).model_dump(), status_code=503)
    if status.status != "ok":
        return JSONResponse(status.model_dump(), status_code=503)
    return status
