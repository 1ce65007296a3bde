"""GET /admin/audit: the tenant's audit log, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from auth import audit
from auth.context import Caller
from auth.policy import Scoped
from auth.scopes import ADMIN
from server.deps import PoolDep

router = APIRouter(prefix="/admin", tags=["admin"])


@router.get("/audit")
async def read_audit(
    caller: Annotated[Caller, Depends(Scoped(ADMIN))],
    pool: PoolDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
) -> dict:
    """Events of this tenant; page back with ``before`` set to the last id."""
    events = await audit.read(
        pool, tenant=caller.tenant, limit=limit, before_id=before, action=action
    )
    return {"object": "list", "data": events}
