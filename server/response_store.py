"""Stored responses (server/migrations/0007): saved when a response
completes unless the request said ``"store": false``, read back by id,
continued with ``previous_response_id``. Every query filters by tenant,
so another tenant's response is as unknown as one that never existed.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from openai_compat.lists import page
from retrieval.store import Conn, dumps, row_of
from server.errors import DatabaseUnavailable, NotFound


async def save(
    conn: Conn, *, tenant: str, response: dict[str, Any],
    conversation: list[dict[str, Any]],
) -> None:  # fmt: skip
    """Raises DatabaseUnavailable, so that a stream ends with an error
    event rather than a completed response that cannot be retrieved."""
    try:
        await conn.execute(
            "INSERT INTO responses (id, tenant, response, conversation,"
            " previous_response_id) VALUES ($1, $2, $3::jsonb, $4::jsonb, $5)",
            response["id"], tenant, dumps(response), dumps(conversation),
            response["previous_response_id"],
        )  # fmt: skip
    except (OSError, asyncpg.PostgresError) as exc:
        raise DatabaseUnavailable(
            f'the response could not be stored ({exc}); retry, or send "store": false'
        ) from exc


async def find(conn: Conn, *, tenant: str, response_id: str) -> dict | None:
    record = await conn.fetchrow(
        "SELECT response, conversation FROM responses WHERE id = $1 AND tenant = $2",
        response_id, tenant,
    )  # fmt: skip
    return row_of(record, ("response", "conversation"))


async def get(conn: Conn, *, tenant: str, response_id: str) -> dict[str, Any]:
    """The stored row; NotFound names the id (another tenant's included)."""
    row = await find(conn, tenant=tenant, response_id=response_id)
    if row is None:
        raise NotFound(_missing(response_id))
    return row


async def delete(conn: Conn, *, tenant: str, response_id: str) -> dict[str, Any]:
    deleted = await conn.fetchval(
        "DELETE FROM responses WHERE id = $1 AND tenant = $2 RETURNING id",
        response_id, tenant,
    )  # fmt: skip
    if deleted is None:
        raise NotFound(_missing(response_id))
    return {"id": response_id, "object": "response", "deleted": True}


def input_items(
    conversation: list[dict[str, Any]], *, limit: int, order: str,
    after: str | None,
) -> dict[str, Any]:  # fmt: skip
    """The response's input (every item but its own output, which is last)
    as OpenAI's list, newest first unless ``order`` is ``asc``."""
    items = conversation[:-1]
    if order == "desc":
        items = items[::-1]
    if after is not None:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    return page(items[:limit], has_more=len(items) > limit)


def _missing(response_id: str) -> str:
    return (
        f'No response {response_id!r}: it was never stored ("store": false), '
        "was deleted, or belongs to another key's tenant."
    )
