"""Where a job's generation goes: collected in memory, not streamed.

Implements the backends' Sink. Progress (tokens so far) is noted in the
job row at most once a second, without blocking the engine thread that
calls ``delta``; cancellation is the same Redis key interactive requests
use, set by POST /v1/jobs/{id}/cancel.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from workers import protocol

_CANCEL_CHECK_S = 0.1
_PROGRESS_EVERY_S = 1.0


class JobCancelled(Exception):
    """The job was cancelled while it ran; its row already says so."""


def cancel_requested(client: redis.Redis, *, namespace: str, job_id: str) -> bool:
    """Whether POST /v1/jobs/{id}/cancel (or a file batch's cancel) asked
    the job to stop. Redis down: no, and the result row decides."""
    try:
        return bool(client.exists(protocol.cancel_key(namespace, job_id)))
    except redis.RedisError:
        return False


class JobSink:
    def __init__(
        self,
        client: redis.Redis,
        *,
        namespace: str,
        job_id: str,
        n: int,
        on_progress: Callable[[dict[str, int]], None],
    ) -> None:
        self.texts = [""] * n
        self.reasons: list[str | None] = [None] * n
        self.tokens = 0
        self._client = client
        self._namespace, self._job_id = namespace, job_id
        self._on_progress = on_progress
        self._checked_at = 0.0
        self._noted_at = time.monotonic()
        self._cancelled = False

    def delta(self, index: int, text: str) -> None:
        self.texts[index] += text
        self.tokens += 1
        now = time.monotonic()
        if now - self._noted_at >= _PROGRESS_EVERY_S:
            self._noted_at = now
            self._on_progress({"completion_tokens": self.tokens})

    def choice_end(self, index: int, finish_reason: str) -> None:
        self.reasons[index] = finish_reason

    def cancelled(self) -> bool:
        now = time.monotonic()
        if not self._cancelled and now - self._checked_at >= _CANCEL_CHECK_S:
            self._checked_at = now
            self._cancelled = cancel_requested(
                self._client, namespace=self._namespace, job_id=self._job_id
            )
        return self._cancelled
