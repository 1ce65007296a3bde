"""OpenAI's error envelope, and the handlers that put every error in it.

FastAPI answers invalid bodies with 422 and its own shape; OpenAI clients
expect 400 and ``{"error": {...}}``, so validation errors are translated too.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.errors import HearthError

log = structlog.get_logger(__name__)


def error_body(
    message: str, *, type_: str, code: str | None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(exc: HearthError) -> JSONResponse:
    headers = dict(exc.headers)
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    body = error_body(exc.message, type_=exc.type, code=exc.code, param=exc.param)
    return JSONResponse(body, status_code=exc.status, headers=headers)


def _describe(error: dict[str, Any]) -> tuple[str, str | None]:
    loc = [str(p) for p in error.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    if error.get("type") == "json_invalid":
        return "The request body is not valid JSON; send a JSON object.", None
    if error.get("type") == "missing":
        return f"Missing required parameter: '{param}'.", param
    message = error.get("msg", "invalid value")
    if param:
        bad = error.get("input")
        shown = repr(bad) if not isinstance(bad, dict | list) else type(bad).__name__
        return f"Invalid value for '{param}': {message} (got {shown[:80]}).", param
    return f"Invalid request: {message}.", None


async def _validation_handler(request: Request, exc: RequestValidationError):
    message, param = _describe(exc.errors()[0])
    body = error_body(
        message,
        type_="invalid_request_error",
        code="invalid_request_error",
        param=param,
    )
    return JSONResponse(body, status_code=400)


async def _hearth_handler(request: Request, exc: HearthError):
    if exc.status >= 500:
        log.warning("request failed", code=exc.code, error=exc.message)
    return error_response(exc)


async def _http_handler(request: Request, exc: StarletteHTTPException):
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    type_ = "invalid_request_error" if exc.status_code < 500 else "server_error"
    message = str(exc.detail)
    if exc.status_code == 404:
        message = f"No route for {request.method} {request.url.path}."
    body = error_body(message, type_=type_, code=code)
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _bad_text_handler(request: Request, exc: asyncpg.DataError):
    # PostgreSQL refuses some text a JSON body or a query string can carry
    # (NUL characters, invalid UTF-8); that is the client's input, not ours.
    body = error_body(
        "A value in the request cannot be stored or searched: "
        f"{exc.args[0] if exc.args else exc}. Remove NUL characters and "
        "invalid text, then retry.",
        type_="invalid_request_error",
        code="invalid_request_error",
    )
    return JSONResponse(body, status_code=400)


async def _unexpected_handler(request: Request, exc: Exception):
    log.exception("unhandled error")
    body = error_body(
        "The server hit an unexpected error; the request id is in the logs.",
        type_="server_error",
        code="internal_error",
    )
    return JSONResponse(body, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(HearthError, _hearth_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    app.add_exception_handler(asyncpg.DataError, _bad_text_handler)
    app.add_exception_handler(Exception, _unexpected_handler)
