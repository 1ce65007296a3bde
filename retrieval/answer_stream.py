"""A cited answer as server-sent events.

    data: {"type": "citations", "id": ..., "abstained": false, "citations": [...]}
    data: {"type": "delta", "text": "..."}            (as the model writes)
    data: {"type": "done", "answer": ..., "cited": [1], "finish_reason": ...,
           "usage": {...}}
    data: [DONE]

Citations come first so a client can show the sources while the answer is
still being written; ``done`` says which of them the answer used.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import structlog
from fastapi.responses import StreamingResponse

from openai_compat import sse
from retrieval.answer import Answer
from server.errors import HearthError

log = structlog.get_logger(__name__)


async def streamed(answer: Answer) -> StreamingResponse:
    return await sse.open_stream(
        answer.events(),
        lambda first, events: _sse(answer, first, events),
        on_error=lambda exc: answer.record(
            status=exc.status, usage=None, code=exc.code, streamed=True
        ),
    )


async def _sse(
    answer: Answer, first: dict, events: AsyncIterator[dict]
) -> AsyncIterator[bytes]:
    text, reason, usage = "", None, {}
    status, code, finished = 200, None, False
    try:
        yield sse.sse({
            "type": "citations", "id": answer.request_id,
            "abstained": answer.grounding.abstains,
            "citations": answer.grounding.citations,
        })  # fmt: skip
        event: dict | None = first
        while event is not None:
            if event["type"] == "delta":
                text += event["text"]
                yield sse.sse({"type": "delta", "text": event["text"]})
            elif event["type"] == "choice_end":
                reason = event["finish_reason"]
            elif event["type"] == "done":
                usage = event["usage"]
            event = await anext(events, None)
        body = answer.body(text, reason, usage)
        yield sse.sse({
            "type": "done", "answer": text, "cited": body["cited"],
            "finish_reason": body["finish_reason"], "usage": usage,
        })  # fmt: skip
        yield sse.DONE
        finished = True
    except HearthError as exc:
        status, code = exc.status, exc.code
        yield sse.sse({"error": {"message": exc.message, "type": exc.type,
                                 "param": exc.param, "code": exc.code}})  # fmt: skip
        yield sse.DONE
        finished = True
    finally:
        if not finished:
            status, code = 499, "client_disconnected"
            await answer.cancel()
            log.info("client disconnected; answer cancelled",
                     request_id=answer.request_id)  # fmt: skip
        answer.record(status=status, usage=usage, code=code, streamed=True)
