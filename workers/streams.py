"""The worker's side of a request's event stream (see workers.protocol)."""

from __future__ import annotations

import base64
import time
from typing import Any

import numpy as np
import redis

from workers import protocol

_CANCEL_CHECK_S = 0.02


class EventStream:
    """Writes one request's events to Redis; implements backends' Sink."""

    def __init__(self, client: redis.Redis, *, namespace: str, request_id: str):
        self._client = client
        self._key = protocol.events_key(namespace, request_id)
        self._cancel_key = protocol.cancel_key(namespace, request_id)
        self._checked_at = 0.0
        self._cancelled = False
        self._expiry_set = False

    def _emit(self, event: dict[str, Any]) -> None:
        self._client.xadd(self._key, protocol.encode_event(event))
        if not self._expiry_set:
            self._client.expire(self._key, protocol.EVENTS_TTL_S)
            self._expiry_set = True

    def delta(self, index: int, text: str) -> None:
        self._emit({"type": "delta", "index": index, "text": text})

    def choice_end(self, index: int, finish_reason: str) -> None:
        self._emit(
            {"type": "choice_end", "index": index, "finish_reason": finish_reason}
        )

    def embeddings(self, vectors: np.ndarray) -> None:
        data = np.ascontiguousarray(vectors, dtype="<f4")
        self._emit(
            {
                "type": "embeddings",
                "rows": int(data.shape[0]),
                "dim": int(data.shape[1]),
                "b64": base64.b64encode(data.tobytes()).decode(),
            }
        )

    def done(self, usage: dict[str, int]) -> None:
        self._emit({"type": "done", "usage": usage})

    def error(self, error: dict[str, Any]) -> None:
        self._emit({"type": "error", "error": error})

    def cancelled(self) -> bool:
        # Polled by the engine every step; one GET per 20 ms is plenty.
        now = time.monotonic()
        if not self._cancelled and now - self._checked_at >= _CANCEL_CHECK_S:
            self._checked_at = now
            self._cancelled = bool(self._client.exists(self._cancel_key))
        return self._cancelled
