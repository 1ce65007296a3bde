"""API keys: their format, their hash, and their rows in PostgreSQL.

A key reads ``hk-<id>.<secret>``. The id is public (listings, logs, audit);
only the SHA-256 of the secret is stored. A slow password hash (bcrypt,
argon2) exists to make guessing a low-entropy password expensive; the
secret here is 256 random bits, beyond any guessing, and a deliberately
slow hash would cost every request tens of milliseconds of CPU.

Functions that read or change keys take ``tenant``: the API always passes
the caller's, so the SQL itself keeps tenants apart; ``None`` (every
tenant) is only for the operator's CLI, which holds the database password.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from auth.limits import LIMIT_NAMES
from server.errors import InvalidRequest

PREFIX = "hk-"
_KEY = re.compile(r"^hk-([0-9a-f]{16})\.([A-Za-z0-9_-]{43})$")
TENANT = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")

_KEY_COLUMNS = (
    "id, tenant, name, scopes, created_at, expires_at, revoked_at, last_used_at, "
    "rotated_from, requests_per_minute, tokens_per_minute, tokens_per_day, "
    "max_concurrent"
)


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def new_secret() -> tuple[str, str]:
    """A fresh (id, secret) pair."""
    return secrets.token_hex(8), secrets.token_urlsafe(32)


def split_key(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed key, else None."""
    match = _KEY.match(token)
    return (match.group(1), match.group(2)) if match else None


def secret_matches(secret: str, stored: bytes) -> bool:
    return hmac.compare_digest(hash_secret(secret), bytes(stored))


def check_tenant(tenant: str) -> str:
    if not TENANT.match(tenant):
        raise InvalidRequest(
            f"Invalid tenant {tenant!r}: use 1-64 lowercase letters, digits, "
            "'.', '_' or '-', starting with a letter or digit.",
            param="tenant",
        )
    return tenant


def _unix(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


@dataclass(frozen=True, kw_only=True)
class ApiKey:
    id: str
    tenant: str
    name: str | None
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    rotated_from: str | None
    limits: dict[str, int | None] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ApiKey:
        return cls(
            id=row["id"],
            tenant=row["tenant"],
            name=row["name"],
            scopes=tuple(row["scopes"]),
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            revoked_at=row["revoked_at"],
            last_used_at=row["last_used_at"],
            rotated_from=row["rotated_from"],
            limits={name: row[name] for name in LIMIT_NAMES},
        )

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= datetime.now(UTC):
            return "expired"
        return "active"

    def public(self) -> dict[str, Any]:
        """What the admin API and the CLI show: never the secret or its hash."""
        return {
            "object": "api_key",
            "id": self.id,
            "tenant": self.tenant,
            "name": self.name,
            "scopes": list(self.scopes),
            "status": self.status,
            "created_at": _unix(self.created_at),
            "expires_at": _unix(self.expires_at),
            "revoked_at": _unix(self.revoked_at),
            "last_used_at": _unix(self.last_used_at),
            "rotated_from": self.rotated_from,
            "limits": self.limits,
        }


async def create_key(
    conn: asyncpg.Connection,
    *,
    tenant: str,
    scopes: tuple[str, ...],
    name: str | None = None,
    expires_in: timedelta | None = None,
    limits: dict[str, int | None] | None = None,
    rotated_from: str | None = None,
) -> tuple[ApiKey, str]:
    """Insert a key; returns it and its plaintext, which is never stored."""
    check_tenant(tenant)
    limits = {name: (limits or {}).get(name) for name in LIMIT_NAMES}
    key_id, secret = new_secret()
    expires_at = datetime.now(UTC) + expires_in if expires_in is not None else None

    await conn.execute(
        "INSERT INTO tenants (name) VALUES ($1) ON CONFLICT DO NOTHING", tenant
    )
    row = await conn.fetchrow(
        "INSERT INTO api_keys (id, secret_sha256, tenant, name, scopes, expires_at,"
        " rotated_from, requests_per_minute, tokens_per_minute, tokens_per_day,"
        " max_concurrent)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        f" RETURNING {_KEY_COLUMNS}",
        key_id, hash_secret(secret), tenant, name, list(scopes), expires_at,
        rotated_from, *limits.values(),
    )  # fmt: skip
    return ApiKey.from_row(row), f"{PREFIX}{key_id}.{secret}"


async def list_keys(conn: asyncpg.Connection, *, tenant: str | None) -> list[ApiKey]:
    rows = await conn.fetch(
        f"SELECT {_KEY_COLUMNS} FROM api_keys"
        " WHERE ($1::text IS NULL OR tenant = $1) ORDER BY created_at, id",
        tenant,
    )
    return [ApiKey.from_row(row) for row in rows]


async def get_key(
    conn: asyncpg.Connection, *, key_id: str, tenant: str | None
) -> ApiKey | None:
    row = await conn.fetchrow(
        f"SELECT {_KEY_COLUMNS} FROM api_keys"
        " WHERE id = $1 AND ($2::text IS NULL OR tenant = $2)",
        key_id,
        tenant,
    )
    return ApiKey.from_row(row) if row else None


async def revoke_key(
    conn: asyncpg.Connection, *, key_id: str, tenant: str | None
) -> ApiKey | None:
    """Revoke at once; revoking twice keeps the first time."""
    row = await conn.fetchrow(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())"
        " WHERE id = $1 AND ($2::text IS NULL OR tenant = $2)"
        f" RETURNING {_KEY_COLUMNS}",
        key_id,
        tenant,
    )
    return ApiKey.from_row(row) if row else None


async def rotate_key(
    conn: asyncpg.Connection, *, key_id: str, tenant: str | None
) -> tuple[ApiKey, ApiKey, str] | None:
    """Replace a key with a new one of the same tenant, scopes and limits.

    The old key stops working at once. Returns (old, new, new plaintext), or
    None when no such key is visible to ``tenant``. Call inside a
    transaction so a failure leaves the old key alone.
    """
    row = await conn.fetchrow(
        f"SELECT {_KEY_COLUMNS} FROM api_keys"
        " WHERE id = $1 AND ($2::text IS NULL OR tenant = $2) FOR UPDATE",
        key_id,
        tenant,
    )
    if row is None:
        return None
    old = ApiKey.from_row(row)
    if old.revoked_at is not None:
        raise InvalidRequest(
            f"Key {old.id!r} is revoked and cannot be rotated; create a new key.",
            param="key_id",
        )

    # A rotated key keeps the lifetime the old one was given.
    lifetime = old.expires_at - old.created_at if old.expires_at else None
    new, plaintext = await create_key(
        conn,
        tenant=old.tenant,
        scopes=old.scopes,
        name=old.name,
        expires_in=lifetime,
        limits=old.limits,
        rotated_from=old.id,
    )
    old = await revoke_key(conn, key_id=old.id, tenant=old.tenant)
    return old, new, plaintext


async def find_for_auth(conn: asyncpg.Connection, key_id: str) -> asyncpg.Record:
    """The key with its hash and its tenant's default limits."""
    return await conn.fetchrow(
        "SELECT k.id, k.tenant, k.scopes, k.secret_sha256, k.expires_at,"
        " k.revoked_at, k.last_used_at,"
        " coalesce(k.requests_per_minute, t.requests_per_minute)"
        "   AS requests_per_minute,"
        " coalesce(k.tokens_per_minute, t.tokens_per_minute) AS tokens_per_minute,"
        " coalesce(k.tokens_per_day, t.tokens_per_day) AS tokens_per_day,"
        " coalesce(k.max_concurrent, t.max_concurrent) AS max_concurrent"
        " FROM api_keys k JOIN tenants t ON t.name = k.tenant WHERE k.id = $1",
        key_id,
    )


async def active_keys_exist(conn: asyncpg.Connection) -> bool:
    return await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL"
        " AND (expires_at IS NULL OR expires_at > now()))"
    )


async def touch(conn: asyncpg.Connection, key_id: str) -> None:
    """Record use, at most about once a minute per key."""
    await conn.execute(
        "UPDATE api_keys SET last_used_at = now() WHERE id = $1"
        " AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
        key_id,
    )


async def set_limits(
    conn: asyncpg.Connection,
    *,
    table: str,
    name: str,
    limits: dict[str, int | None],
) -> bool:
    """Set limits on a key (``table="api_keys"``) or a tenant; True if found."""
    if table not in ("api_keys", "tenants"):
        raise ValueError(f"no limits on table {table!r}")
    column = "id" if table == "api_keys" else "name"
    if table == "tenants":
        check_tenant(name)
        await conn.execute(
            "INSERT INTO tenants (name) VALUES ($1) ON CONFLICT DO NOTHING", name
        )
    given = {k: v for k, v in limits.items() if k in LIMIT_NAMES}
    if not given:
        return bool(await conn.fetchval(
            f"SELECT 1 FROM {table} WHERE {column} = $1", name
        ))  # fmt: skip
    sets = ", ".join(f"{k} = ${i}" for i, k in enumerate(given, start=2))
    status = await conn.execute(
        f"UPDATE {table} SET {sets} WHERE {column} = $1", name, *given.values()
    )
    return status != "UPDATE 0"
