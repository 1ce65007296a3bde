"""Job states, priorities, endpoints, and the wait before the next attempt."""

from __future__ import annotations

import random

from server.errors import InvalidRequest
from workers import protocol

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
EXPIRED = "expired"

STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, EXPIRED)
ACTIVE = (QUEUED, RUNNING)
FINISHED = (SUCCEEDED, FAILED, CANCELLED, EXPIRED)

# Higher runs sooner. Numbers 5-9 go to a model's interactive queue and
# 0-4 to its batch queue: those two queues are the only priority the broker
# knows (see README, "Queues and priority").
PRIORITIES = {"interactive": 9, "default": 5, "background": 1}
BATCH_PRIORITY = PRIORITIES["background"]

CHAT = "/v1/chat/completions"
COMPLETION = "/v1/completions"
EMBEDDING = "/v1/embeddings"
ENDPOINT_TYPES = {CHAT: "chat", COMPLETION: "completion", EMBEDDING: "embedding"}

# Error codes worth another attempt: the work itself was fine, something
# under it was not. Bad input (invalid_request_error, context_length_...)
# fails at once.
TRANSIENT_CODES = frozenset(
    {
        "worker_lost",
        "model_unavailable",
        "broker_unavailable",
        "database_unavailable",
        "service_unavailable",
        "upstream_error",
        "timeout",
        "model_error",
        "internal_error",
    }
)


def parse_priority(value: str | int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 9:
        return value
    if isinstance(value, str) and value in PRIORITIES:
        return PRIORITIES[value]
    raise InvalidRequest(
        f"Invalid priority {value!r}; use interactive, default, background "
        "or a number from 0 (last) to 9 (first).",
        param="priority",
    )


def queue_class(priority: int) -> protocol.Priority:
    return "interactive" if priority >= PRIORITIES["default"] else "batch"


def endpoint_type(endpoint: str) -> str:
    try:
        return ENDPOINT_TYPES[endpoint]
    except KeyError:
        raise InvalidRequest(
            f"Unsupported endpoint {endpoint!r}; use one of "
            f"{', '.join(ENDPOINT_TYPES)}.",
            param="endpoint",
        ) from None


def backoff_s(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff with equal jitter: between half and all of
    ``base * 2**(attempt-1)``, capped, so retries of jobs that failed
    together spread out instead of arriving together."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def is_transient(code: str | None) -> bool:
    return code in TRANSIENT_CODES
