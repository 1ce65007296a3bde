"""Usage records: one row per finished request, written off the hot path."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field

import asyncpg
import structlog

from auth.context import add_tokens, current_key_id, current_tenant
from server.metrics import COMPLETION_TOKENS, INFERENCE_REQUESTS, PROMPT_TOKENS

log = structlog.get_logger(__name__)

_pending: set[asyncio.Task] = set()


@dataclass(kw_only=True)
class UsageRecord:
    request_id: str
    endpoint: str
    model: str | None
    status: int
    latency_ms: float
    error_code: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    streamed: bool = False
    # The caller of the request being served (auth.context): records are
    # built deep in the relay, where the request itself is out of reach.
    tenant: str = field(default_factory=current_tenant)
    key_id: str | None = field(default_factory=current_key_id)


async def _insert(pool: asyncpg.Pool, record: UsageRecord) -> None:
    row = asdict(record)
    columns = ", ".join(row)
    marks = ", ".join(f"${i}" for i in range(1, len(row) + 1))
    try:
        await pool.execute(
            f"INSERT INTO requests ({columns}) VALUES ({marks})", *row.values()
        )
    except (OSError, asyncpg.PostgresError) as exc:
        log.warning("usage record lost", request_id=record.request_id, error=str(exc))


def record_usage(pool: asyncpg.Pool | None, record: UsageRecord) -> None:
    """Write ``record`` in the background; the response does not wait for it."""
    add_tokens(record.prompt_tokens + record.completion_tokens)
    model = record.model or "none"
    INFERENCE_REQUESTS.labels(record.endpoint, model, str(record.status)).inc()
    PROMPT_TOKENS.labels(model).inc(record.prompt_tokens)
    COMPLETION_TOKENS.labels(model).inc(record.completion_tokens)
    if pool is None:
        return
    task = asyncio.get_running_loop().create_task(_insert(pool, record))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


async def flush_usage() -> None:
    # Only this loop's writes: a task left from a loop already closed (an
    # app started and stopped before, as in tests) can never finish.
    loop = asyncio.get_running_loop()
    mine = [task for task in _pending if task.get_loop() is loop]
    if mine:
        await asyncio.gather(*mine, return_exceptions=True)
