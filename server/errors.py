"""OpenAI-shaped errors, `{"error": {"message", "type", "param", "code"}}`, and the handlers that make
every failure one (FastAPI's 422 becomes 400; unknown paths 404; a server bug 500 without a traceback)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.protocol import ErrorBody, ErrorResponse

logger = logging.getLogger(__name__)

TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
         405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error", 503: "service_unavailable"}


class APIError(Exception):
    def __init__(
        self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None, code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def response(self) -> ErrorResponse:
        return ErrorResponse(error=ErrorBody(message=self.message, type=self.type, param=self.param, code=self.code))


def error_json(e: APIError) -> JSONResponse:
    headers = {**e.headers, **({"WWW-Authenticate": "Bearer"} if e.status == 401 else {})}
    return JSONResponse(e.response().model_dump(), status_code=e.status, headers=headers)


def validation_message(err: dict) -> tuple[str, str | None]:
    """One line from pydantic's first error: where, and what is wrong."""
    loc = [str(p) for p in err.get("loc", ()) if p != "body"]
    if err.get("type") == "json_invalid":
        return f"the body is not valid JSON ({err.get('ctx', {}).get('error', 'parse error')}); send a JSON object", None
    where = ".".join(loc)
    msg = err.get("msg", "invalid value").removeprefix("Value error, ")
    if not loc:  # a check across fields names its field first ("tools: ...")
        head = msg.split(":", 1)[0]
        return msg, (head if head.isidentifier() else None)
    return f"{where}: {msg}", loc[0]


def unparsed_body_message(cause: BaseException) -> str:
    """What FastAPI's "There was an error parsing the body" was: its JSON parser raised something other than a
    JSON syntax error."""
    if isinstance(cause, UnicodeDecodeError):
        return f"the body is not valid UTF-8 ({cause.reason} at byte {cause.start}); send the JSON encoded as UTF-8"
    if isinstance(cause, RecursionError):
        return "the body's JSON is nested too deeply to parse; send a flatter JSON object"
    return f"the body could not be parsed ({type(cause).__name__}); send a JSON object"


def install(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError) -> JSONResponse:
        return error_json(e)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        # A check of ours (a value error) says more than the union branch it was tried against.
        errors = sorted(e.errors(), key=lambda err: err.get("type") != "value_error")
        message, param = validation_message(errors[0]) if errors else ("invalid request", None)
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
        return error_json(APIError(400, message, param=param))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> JSONResponse:
        message = unparsed_body_message(e.__cause__) if e.status_code == 400 and e.__cause__ is not None else str(e.detail)
        return error_json(APIError(e.status_code, message, TYPES.get(e.status_code, "invalid_request_error")))

    @app.exception_handler(Exception)
    async def _bug(request: Request, e: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s", request.url.path)
        return error_json(APIError(500, f"internal error ({type(e).__name__}); see the server log", "server_error"))
