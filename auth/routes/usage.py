"""GET /admin/usage: requests and tokens per key and model, for the tenant."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from auth.context import Caller
from auth.policy import Scoped
from auth.scopes import ADMIN
from server.deps import PoolDep

router = APIRouter(prefix="/admin", tags=["admin"])


@router.get("/usage")
async def usage_totals(
    caller: Annotated[Caller, Depends(Scoped(ADMIN))],
    pool: PoolDep,
    since: Annotated[int | None, Query(ge=0, le=2**33)] = None,
    until: Annotated[int | None, Query(ge=0, le=2**33)] = None,
) -> dict:
    """Totals from the usage records, between unix times ``since`` and ``until``."""
    rows = await pool.fetch(
        "SELECT tenant, key_id, model, count(*) AS requests,"
        " count(*) FILTER (WHERE status >= 400) AS errors,"
        " coalesce(sum(prompt_tokens), 0) AS prompt_tokens,"
        " coalesce(sum(completion_tokens), 0) AS completion_tokens"
        " FROM requests WHERE tenant = $1"
        " AND ($2::bigint IS NULL OR created_at >= to_timestamp($2))"
        " AND ($3::bigint IS NULL OR created_at < to_timestamp($3))"
        " GROUP BY tenant, key_id, model ORDER BY key_id NULLS FIRST, model",
        caller.tenant,
        since,
        until,
    )
    data = [
        {
            "tenant": row["tenant"],
            "key_id": row["key_id"],
            "model": row["model"],
            "requests": row["requests"],
            "errors": row["errors"],
            "prompt_tokens": row["prompt_tokens"],
            "completion_tokens": row["completion_tokens"],
            "total_tokens": row["prompt_tokens"] + row["completion_tokens"],
        }
        for row in rows
    ]
    return {"object": "list", "data": data}
