"""Relay a generation from the worker to the client: whole or as SSE."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog
from fastapi.responses import JSONResponse, StreamingResponse

from openai_compat import sse
from server.dispatch import Dispatcher
from server.errors import HearthError
from server.usage import UsageRecord, record_usage

log = structlog.get_logger(__name__)


@dataclass(kw_only=True)
class Generation:
    """One admitted request whose events are on their way."""

    dispatcher: Dispatcher
    request_id: str
    model: str
    endpoint: str
    chat: bool
    n: int
    include_usage: bool
    pool: Any
    created: int = field(default_factory=lambda: int(time.time()))
    started: float = field(default_factory=time.perf_counter)

    def _record(self, *, status: int, usage: dict | None, code: str | None, streamed):
        usage = usage or {}
        record_usage(
            self.pool,
            UsageRecord(
                request_id=self.request_id,
                endpoint=self.endpoint,
                model=self.model,
                status=status,
                error_code=code,
                latency_ms=(time.perf_counter() - self.started) * 1000,
                prompt_tokens=usage.get("prompt_tokens", 0),
                completion_tokens=usage.get("completion_tokens", 0),
                streamed=streamed,
            ),
        )

    def _events(self) -> AsyncIterator[dict]:
        return self.dispatcher.events(request_id=self.request_id, model=self.model)

    async def whole(self) -> JSONResponse:
        texts = [""] * self.n
        reasons: list[str | None] = [None] * self.n
        usage: dict[str, int] = {}
        try:
            async for event in self._events():
                kind = event["type"]
                if kind == "delta":
                    texts[event["index"]] += event["text"]
                elif kind == "choice_end":
                    reasons[event["index"]] = event["finish_reason"]
                elif kind == "done":
                    usage = event["usage"]
        except HearthError as exc:
            self._record(status=exc.status, usage=None, code=exc.code, streamed=False)
            raise
        self._record(status=200, usage=usage, code=None, streamed=False)
        return JSONResponse(self._whole_body(texts, reasons, usage))

    def _whole_body(self, texts, reasons, usage) -> dict[str, Any]:
        if self.chat:
            choices = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": reasons[i] or "stop",
                }
                for i, text in enumerate(texts)
            ]
            obj = "chat.completion"
        else:
            choices = [
                {
                    "index": i,
                    "text": text,
                    "logprobs": None,
                    "finish_reason": reasons[i] or "stop",
                }
                for i, text in enumerate(texts)
            ]
            obj = "text_completion"
        return {
            "id": self.request_id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
            "usage": usage,
        }

    async def streamed(self) -> StreamingResponse:
        return await sse.open_stream(
            self._events(),
            self._sse,
            on_error=lambda exc: self._record(
                status=exc.status, usage=None, code=exc.code, streamed=True
            ),
        )

    def _chunk(self, choices, usage=None) -> bytes:
        return sse.sse(
            sse.chunk(
                object="chat.completion.chunk" if self.chat else "text_completion",
                id=self.request_id,
                created=self.created,
                model=self.model,
                choices=choices,
                usage=usage,
            )
        )

    def _choice(self, index: int, *, text: str | None, reason: str | None) -> dict:
        if not self.chat:
            return {
                "index": index,
                "text": text or "",
                "logprobs": None,
                "finish_reason": reason,
            }
        delta = {} if text is None else {"content": text}
        return {
            "index": index,
            "delta": delta,
            "logprobs": None,
            "finish_reason": reason,
        }

    async def _sse(
        self, first: dict, events: AsyncIterator[dict]
    ) -> AsyncIterator[bytes]:
        finished = False
        usage: dict[str, int] | None = None
        status, code = 200, None
        try:
            if self.chat:
                yield self._chunk(
                    [
                        {
                            "index": i,
                            "delta": {"role": "assistant", "content": ""},
                            "logprobs": None,
                            "finish_reason": None,
                        }
                        for i in range(self.n)
                    ]
                )
            event: dict | None = first
            while event is not None:
                chunk = self._on_event(event)
                if event["type"] == "done":
                    usage = event["usage"]
                if chunk is not None:
                    yield chunk
                event = await anext(events, None)
            if self.include_usage:
                yield self._chunk([], usage=usage)
            yield sse.DONE
            finished = True
        except HearthError as exc:
            status, code = exc.status, exc.code
            yield sse.sse(
                {
                    "error": {
                        "message": exc.message,
                        "type": exc.type,
                        "param": exc.param,
                        "code": exc.code,
                    }
                }
            )
            yield sse.DONE
            finished = True
        finally:
            if not finished:
                status, code = 499, "client_disconnected"
                with anyio.CancelScope(shield=True):
                    await self.dispatcher.cancel(self.request_id)
                log.info(
                    "client disconnected; generation cancelled",
                    request_id=self.request_id,
                )
            self._record(status=status, usage=usage, code=code, streamed=True)

    def _on_event(self, event: dict) -> bytes | None:
        kind = event["type"]
        if kind == "delta":
            return self._chunk(
                [self._choice(event["index"], text=event["text"], reason=None)]
            )
        if kind == "choice_end":
            text = None if self.chat else ""
            return self._chunk(
                [self._choice(event["index"], text=text, reason=event["finish_reason"])]
            )
        return None
