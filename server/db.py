"""PostgreSQL access through asyncpg, and the schema migrations.

Migrations are the numbered ``*.sql`` files in ``server/migrations``, applied
in order, each in its own transaction, under an advisory lock so that
several processes starting at once apply each exactly once.
"""

from __future__ import annotations

from importlib import resources

import asyncpg
import structlog

from server.errors import DatabaseUnavailable

log = structlog.get_logger(__name__)

_MIGRATION_LOCK = 0x4845415254  # "HEART"


def _migration_files() -> list[tuple[str, str]]:
    folder = resources.files("server") / "migrations"
    files = [f for f in folder.iterdir() if f.name.endswith(".sql")]
    return [(f.name, f.read_text()) for f in sorted(files, key=lambda f: f.name)]


async def connect(database_url: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(database_url, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL ({exc}); check HEARTH_DATABASE_URL"
        ) from exc


async def create_pool(database_url: str, *, max_size: int = 10) -> asyncpg.Pool:
    try:
        return await asyncpg.create_pool(
            database_url, min_size=1, max_size=max_size, timeout=10
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL ({exc}); check HEARTH_DATABASE_URL"
        ) from exc


async def migrate_database(database_url: str) -> list[str]:
    """Apply pending migrations; returns the names applied now."""
    conn = await connect(database_url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {
            r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")
        }

        applied = []
        for name, sql in _migration_files():
            if name in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (name) VALUES ($1)", name
                )
            log.info("migration applied", migration=name)
            applied.append(name)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
        await conn.close()
