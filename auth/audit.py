"""The audit log: who did what to which object, from where, and how it went.

One row per audited action, written on the same connection (and so in the
same transaction) as the change it records. The table refuses UPDATE,
DELETE and TRUNCATE (see the migration).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg

KEY_CREATE = "key.create"
KEY_ROTATE = "key.rotate"
KEY_REVOKE = "key.revoke"
AUTH_FAILURE = "auth.failure"


async def record(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    actor: str,
    action: str,
    outcome: str,
    actor_key_id: str | None = None,
    tenant: str | None = None,
    target: str | None = None,
    client_ip: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (actor, actor_key_id, tenant, action, target,"
        " client_ip, outcome, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        actor, actor_key_id, tenant, action, target, client_ip, outcome,
        json.dumps(detail or {}),
    )  # fmt: skip


def _unix(value: datetime) -> float:
    return round(value.timestamp(), 3)


async def read(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    tenant: str | None,
    limit: int = 100,
    before_id: int | None = None,
    action: str | None = None,
) -> list[dict[str, Any]]:
    """Newest first. ``tenant=None`` (every tenant) is for the CLI only."""
    rows = await conn.fetch(
        "SELECT id, at, actor, actor_key_id, tenant, action, target, client_ip,"
        " outcome, detail FROM audit_log"
        " WHERE ($1::text IS NULL OR tenant = $1)"
        " AND ($2::bigint IS NULL OR id < $2)"
        " AND ($3::text IS NULL OR action = $3)"
        " ORDER BY id DESC LIMIT $4",
        tenant, before_id, action, limit,
    )  # fmt: skip
    return [
        {
            "object": "audit_event",
            "id": row["id"],
            "at": _unix(row["at"]),
            "actor": row["actor"],
            "actor_key_id": row["actor_key_id"],
            "tenant": row["tenant"],
            "action": row["action"],
            "target": row["target"],
            "client_ip": row["client_ip"],
            "outcome": row["outcome"],
            "detail": json.loads(row["detail"]),
        }
        for row in rows
    ]
