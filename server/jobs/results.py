"""A finished job's result: the body the synchronous route would return."""

from __future__ import annotations

import time
from typing import Any


def completion_body(
    *,
    job_id: str,
    model: str,
    chat: bool,
    texts: list[str],
    reasons: list[str | None],
    usage: dict[str, int],
) -> dict[str, Any]:
    choices: list[dict[str, Any]] = []
    for index, text in enumerate(texts):
        choice: dict[str, Any] = {"index": index, "logprobs": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        choice["finish_reason"] = reasons[index] or "stop"
        choices.append(choice)
    return {
        "id": job_id,
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": choices,
        "usage": usage,
    }
