"""Server-sent events in OpenAI's streaming format."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from fastapi.responses import StreamingResponse

from server.errors import HearthError

DONE = b"data: [DONE]\n\n"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

ChunkObject = Literal["chat.completion.chunk", "text_completion"]


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


def chunk(
    *,
    object: ChunkObject,
    id: str,
    created: int,
    model: str,
    choices: list[dict[str, Any]],
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    """One streamed chunk; ``usage`` only on the final usage chunk."""
    body: dict[str, Any] = {
        "id": id,
        "object": object,
        "created": created,
        "model": model,
        "choices": choices,
    }
    if object == "chat.completion.chunk":
        body["system_fingerprint"] = None
    if usage is not None:
        body["usage"] = usage
    return body


async def open_stream(
    events: AsyncIterator[dict],
    render: Callable[[dict, AsyncIterator[dict]], AsyncIterator[bytes]],
    *,
    on_error: Callable[[HearthError], None],
) -> StreamingResponse:
    """Wait for the first event before answering, so that an error such as
    a full queue, a dead worker or an over-long prompt still gets its own
    status code instead of a 200 stream; ``render`` writes the rest."""
    try:
        first = await anext(events)
    except HearthError as exc:
        on_error(exc)
        raise
    return StreamingResponse(
        render(first, events), media_type="text/event-stream", headers=HEADERS
    )
