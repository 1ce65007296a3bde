"""Request ids and the one log line per request."""

from __future__ import annotations

import re
import time
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("server.access")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _treat_body_as_json(scope: Scope) -> None:
    """Read an untyped or form-typed POST body as JSON.

    ``curl -d`` labels JSON as a form; OpenAI's API reads it as JSON anyway,
    and so do we. Multipart uploads keep their type.
    """
    if scope["method"] != "POST":
        return
    headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
    given = dict(scope["headers"]).get(b"content-type", b"")
    if given and not given.startswith(b"application/x-www-form-urlencoded"):
        return
    scope["headers"] = [*headers, (b"content-type", b"application/json")]


class RequestContext:
    """Give every request an id, echo it back, and log how it went.

    A pure ASGI middleware: it must not buffer streamed responses.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        _treat_body_as_json(scope)
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _SAFE_ID.match(given) else f"req-{uuid.uuid4().hex}"
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )
            structlog.contextvars.unbind_contextvars("request_id")
