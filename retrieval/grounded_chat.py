"""Chat completions grounded in collections: ``/v1/chat/completions`` with
``collections`` (and optionally ``retrieval``) in the body, which the
``openai`` SDK sends through ``extra_body``.

The last user message is the question. The answer is an ordinary chat
completion (or chunk stream) with one extra field, ``citations``: on the
completion, or on a first chunk with no choices when streaming, so an SDK
that ignores the field still reads a normal answer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from auth.context import LOCAL, current_account
from openai_compat import sse
from retrieval import answer, citations, prompting
from server.dispatch import new_request_id
from server.errors import InvalidRequest
from server.generation import Generation
from workers import protocol

_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass(kw_only=True)
class _CitedGeneration(Generation):
    citations: list[dict[str, Any]] = field(default_factory=list)

    def _whole_body(self, texts, reasons, usage) -> dict[str, Any]:
        body = super()._whole_body(texts, reasons, usage)
        citations.mark_cited(self.citations, "\n".join(texts))
        body["citations"] = self.citations
        return body


def _options(raw: dict[str, Any] | None) -> answer.RetrievalOptions:
    try:
        return answer.RetrievalOptions.model_validate(raw or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(["retrieval", *map(str, first["loc"])])
        raise InvalidRequest(f"{where}: {first['msg']}", param=where) from exc


def _question(turns: list[dict[str, str]]) -> str:
    for turn in reversed(turns):
        if turn["role"] == "user" and turn["content"].strip():
            return turn["content"]
    raise InvalidRequest(
        "A chat over collections needs a user message to search for; add one.",
        param="messages",
    )


async def complete(*, body, spec, pool, dispatcher, catalog):
    """Answer ``body`` (a ChatCompletionRequest naming collections)."""
    # The route's policy has admitted the caller into this request's context.
    account = current_account()
    caller = account.caller if account else LOCAL
    options = _options(body.retrieval)
    collections = await answer.resolve(pool, caller=caller, refs=body.collections)
    turns = body.wire_messages()
    params = body.params()
    grounding = await answer.ground(
        pool=pool, dispatcher=dispatcher, catalog=catalog, caller=caller,
        collections=collections, question=_question(turns), options=options,
        spec=spec, max_tokens=params["max_tokens"] or spec.max_tokens,
    )  # fmt: skip
    request_id = new_request_id("chatcmpl")
    if grounding.abstains:
        return _abstain(request_id, body)

    payload = {
        "request_id": request_id, "model": spec.name,
        "messages": answer.messages(grounding, turns), "params": params,
    }  # fmt: skip
    await dispatcher.submit(task=protocol.GENERATE_TASK, spec=spec, payload=payload)
    generation = _CitedGeneration(
        dispatcher=dispatcher, request_id=request_id, model=body.model,
        endpoint="/v1/chat/completions", chat=True, n=body.n or 1,
        include_usage=body.include_usage, pool=pool,
        citations=grounding.citations,
    )  # fmt: skip
    if not body.stream:
        return await generation.whole()
    response = await generation.streamed()
    head = _citations_chunk(request_id, body.model, generation.created, grounding)
    response.body_iterator = _after(head, response.body_iterator)
    return response


def _citations_chunk(request_id, model, created, grounding) -> bytes:
    chunk = sse.chunk(
        object="chat.completion.chunk", id=request_id, created=created,
        model=model, choices=[],
    )  # fmt: skip
    chunk["citations"] = grounding.citations
    return sse.sse(chunk)


async def _after(head: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield head
    async for part in rest:
        yield part


def _abstain(request_id: str, body) -> JSONResponse | StreamingResponse:
    created = int(time.time())
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    if not body.stream:
        return JSONResponse({
            "id": request_id, "object": "chat.completion", "created": created,
            "model": body.model, "system_fingerprint": None,
            "choices": [{"index": 0, "logprobs": None, "finish_reason": "stop",
                         "message": {"role": "assistant",
                                     "content": prompting.ABSTAIN}}],
            "usage": usage, "citations": [],
        })  # fmt: skip

    def chunk(delta: dict, reason: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
        return sse.sse(sse.chunk(
            object="chat.completion.chunk", id=request_id, created=created,
            model=body.model, choices=[choice],
        ))  # fmt: skip

    async def stream() -> AsyncIterator[bytes]:
        head = sse.chunk(object="chat.completion.chunk", id=request_id,
                         created=created, model=body.model, choices=[])  # fmt: skip
        yield sse.sse({**head, "citations": []})
        yield chunk({"role": "assistant", "content": ""}, None)
        yield chunk({"content": prompting.ABSTAIN}, None)
        yield chunk({}, "stop")
        if body.include_usage:
            yield sse.sse(sse.chunk(object="chat.completion.chunk", id=request_id,
                                    created=created, model=body.model, choices=[],
                                    usage=usage))  # fmt: skip
        yield sse.DONE

    return StreamingResponse(stream(), media_type="text/event-stream", headers=_HEADERS)
