"""Recent requests and per-minute throughput, from the ``requests`` table."""

from __future__ import annotations

from typing import Any

import asyncpg

_PER_MINUTE = """
SELECT date_trunc('minute', created_at) AS minute,
       count(*) AS requests,
       count(*) FILTER (WHERE status >= 400) AS errors,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95_ms,
       sum(prompt_tokens + completion_tokens) AS tokens
FROM requests
WHERE created_at > now() - interval '1 hour'
  AND ($1::text IS NULL OR tenant = $1)
GROUP BY 1 ORDER BY 1
"""

_RECENT = """
SELECT request_id, created_at, endpoint, model, status, error_code,
       latency_ms, prompt_tokens, completion_tokens, streamed
FROM requests
WHERE ($1::text IS NULL OR tenant = $1)
ORDER BY id DESC LIMIT $2
"""


async def request_stats(
    pool: asyncpg.Pool, *, tenant: str | None, recent: int = 20
) -> dict[str, Any]:
    """The last hour by minute, and the newest requests (``tenant=None``: all)."""
    minutes = await pool.fetch(_PER_MINUTE, tenant)
    rows = await pool.fetch(_RECENT, tenant, recent)
    return {
        "per_minute": [
            {
                "minute": int(row["minute"].timestamp()),
                "requests": row["requests"],
                "errors": row["errors"],
                "p50_ms": round(row["p50_ms"], 1),
                "p95_ms": round(row["p95_ms"], 1),
                "tokens": row["tokens"],
            }
            for row in minutes
        ],
        "recent": [
            {
                **dict(row),
                "created_at": round(row["created_at"].timestamp(), 3),
                "latency_ms": round(row["latency_ms"], 1),
            }
            for row in rows
        ],
    }
