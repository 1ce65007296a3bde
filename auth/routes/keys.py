"""/admin/keys: create, list, read, revoke and rotate the tenant's keys."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from auth import audit, keys
from auth.authenticate import client_ip
from auth.context import Caller
from auth.policy import Scoped
from auth.schemas import KeyCreate
from auth.scopes import ADMIN, parse_scopes
from server.deps import PoolDep
from server.errors import NotFound, PermissionDenied

router = APIRouter(prefix="/admin/keys", tags=["admin"])

AdminCaller = Annotated[Caller, Depends(Scoped(ADMIN))]


def actor(caller: Caller) -> str:
    return f"key:{caller.key_id}" if caller.key_id else caller.tenant


def _tenant_for(wanted: str | None, caller: Caller) -> str:
    if wanted is None or wanted == caller.tenant:
        return caller.tenant
    # Without keys the server's own user is everyone's operator; after
    # that, crossing tenants is the CLI's job (it holds the database).
    if caller.via == "open":
        return keys.check_tenant(wanted)
    raise PermissionDenied(
        f"An admin key of tenant {caller.tenant!r} manages only that tenant's "
        f"keys; create keys for {wanted!r} with `hearth keys create --tenant`.",
        param="tenant",
    )


def _not_found(key_id: str) -> NotFound:
    return NotFound(
        f"No key {key_id!r} in this tenant; list them at GET /admin/keys.",
        param="key_id",
    )


async def _audit(conn, request: Request, caller: Caller, **fields) -> None:
    await audit.record(
        conn,
        actor=actor(caller),
        actor_key_id=caller.key_id,
        client_ip=client_ip(request),
        outcome="success",
        **fields,
    )


@router.post("", status_code=201)
async def create_key(
    body: KeyCreate, caller: AdminCaller, request: Request, pool: PoolDep
) -> dict:
    """Create a key. The response is the only time its secret is shown."""
    tenant = _tenant_for(body.tenant, caller)
    scopes = parse_scopes(body.scopes)
    expires_in = timedelta(days=body.expires_in_days) if body.expires_in_days else None

    async with pool.acquire() as conn, conn.transaction():
        key, plaintext = await keys.create_key(
            conn,
            tenant=tenant,
            scopes=scopes,
            name=body.name,
            expires_in=expires_in,
            limits=body.limits.model_dump(),
        )
        await _audit(
            conn, request, caller, action=audit.KEY_CREATE, tenant=key.tenant,
            target=key.id, detail={"scopes": list(scopes), "name": body.name},
        )  # fmt: skip
    return {**key.public(), "key": plaintext}


@router.get("")
async def list_keys(caller: AdminCaller, pool: PoolDep) -> dict:
    """The tenant's keys, revoked and expired ones included; never secrets."""
    found = await keys.list_keys(pool, tenant=caller.tenant)
    return {"object": "list", "data": [key.public() for key in found]}


@router.get("/{key_id}")
async def get_key(key_id: str, caller: AdminCaller, pool: PoolDep) -> dict:
    """One of the tenant's keys."""
    key = await keys.get_key(pool, key_id=key_id, tenant=caller.tenant)
    if key is None:
        raise _not_found(key_id)
    return key.public()


@router.post("/{key_id}/revoke")
async def revoke_key(
    key_id: str, caller: AdminCaller, request: Request, pool: PoolDep
) -> dict:
    """Stop a key working, at once and for good."""
    async with pool.acquire() as conn, conn.transaction():
        key = await keys.revoke_key(conn, key_id=key_id, tenant=caller.tenant)
        if key is None:
            raise _not_found(key_id)
        await _audit(
            conn, request, caller, action=audit.KEY_REVOKE, tenant=key.tenant,
            target=key.id,
        )  # fmt: skip
    request.app.state.auth.forget_keys_exist()
    return key.public()


@router.post("/{key_id}/rotate", status_code=201)
async def rotate_key(
    key_id: str, caller: AdminCaller, request: Request, pool: PoolDep
) -> dict:
    """Replace a key with a new secret; the old one stops working at once."""
    async with pool.acquire() as conn, conn.transaction():
        rotated = await keys.rotate_key(conn, key_id=key_id, tenant=caller.tenant)
        if rotated is None:
            raise _not_found(key_id)
        old, new, plaintext = rotated
        await _audit(
            conn, request, caller, action=audit.KEY_ROTATE, tenant=old.tenant,
            target=old.id, detail={"new_key_id": new.id},
        )  # fmt: skip
    return {**new.public(), "key": plaintext}
