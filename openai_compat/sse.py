"""Server-sent events in OpenAI's streaming format."""

from __future__ import annotations

import json
from typing import Any, Literal

DONE = b"data: [DONE]\n\n"

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
