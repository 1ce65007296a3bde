"""``hearth keys``, ``hearth limits`` and ``hearth audit``: the operator's
tools, talking straight to the database (whoever holds its URL is trusted
with every tenant)."""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

_LIMIT_OPTIONS = [
    click.option("--rpm", "requests_per_minute", type=click.IntRange(min=0),
                 help="Requests per minute (0: inherit)."),
    click.option("--tpm", "tokens_per_minute", type=click.IntRange(min=0),
                 help="Tokens per minute (0: inherit)."),
    click.option("--tpd", "tokens_per_day", type=click.IntRange(min=0),
                 help="Tokens per day (0: inherit)."),
    click.option("--max-concurrent", "max_concurrent", type=click.IntRange(min=0),
                 help="Requests in flight at once (0: inherit)."),
]  # fmt: skip


_DATABASE_OPTIONS = [
    click.option("--data-dir", type=click.Path(path_type=Path), default=None),
    click.option("--database-url", default=None, help="PostgreSQL URL."),
]


def _database_options(func):
    for option in reversed(_DATABASE_OPTIONS):
        func = option(func)
    return func


def _limit_options(func):
    for option in reversed(_LIMIT_OPTIONS):
        func = option(func)
    return func


def _database_url(data_dir: Path | None, database_url: str | None) -> str:
    from server.settings import Settings

    values = {"data_dir": data_dir, "database_url": database_url}
    settings = Settings(**{k: v for k, v in values.items() if v is not None})
    if settings.database_url:
        return settings.database_url
    return _embedded_url(settings.data_dir)


def _embedded_url(data_dir: Path) -> str:
    from server import embedded_postgres

    try:
        port = json.loads((data_dir / "ports.json").read_text())["postgres"]
    except (OSError, ValueError, KeyError) as exc:
        raise click.ClickException(
            f"no database URL and no embedded database in {data_dir}; pass "
            "--database-url (or HEARTH_DATABASE_URL), or --data-dir of a "
            "`hearth up`"
        ) from exc
    if not embedded_postgres.postgres_is_accepting(port):
        raise click.ClickException(
            f"the embedded database of {data_dir} is not running; start "
            "`hearth up` first, or pass --database-url"
        )
    return embedded_postgres.database_url(port)


def _run(url: str, work: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run ``work(conn)`` in one transaction on the database at ``url``."""
    import asyncpg

    from server.db import connect
    from server.errors import HearthError

    async def main() -> Any:
        conn = await connect(url)
        try:
            async with conn.transaction():
                return await work(conn)
        except asyncpg.UndefinedTableError as exc:
            raise click.ClickException(
                "the database has no key tables yet; run `hearth migrate`"
            ) from exc
        finally:
            await conn.close()

    try:
        return asyncio.run(main())
    except HearthError as exc:
        raise click.ClickException(exc.message) from exc


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _limits(values: dict[str, int | None]) -> dict[str, int | None]:
    """Given flags only; 0 clears a limit (the tenant's or server's applies)."""
    return {k: (v or None) for k, v in values.items() if v is not None}


def _when(stamp: int | None) -> str:
    if stamp is None:
        return "-"
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M")


@click.group()
def keys() -> None:
    """Create, list, revoke and rotate API keys."""


@keys.command("create")
@_database_options
@click.option("--tenant", required=True, help="The tenant the key acts for.")
@click.option("--scopes", required=True, help="Comma-separated: admin, inference, "
              "ingest, read.")  # fmt: skip
@click.option("--name", default=None, help="A label to recognise the key by.")
@click.option("--expires-in", "expires_in", type=click.IntRange(min=1),
              default=None, help="Days until the key expires.")  # fmt: skip
@_limit_options
def create(data_dir, database_url, tenant, scopes, name, expires_in, **limits):
    """Create a key and print it; it is shown only this once.

    The key alone goes to stdout, so `KEY=$(hearth keys create ...)` works.
    """
    from auth import audit
    from auth import keys as store
    from auth.scopes import parse_scopes

    async def work(conn):
        key, plaintext = await store.create_key(
            conn,
            tenant=tenant,
            scopes=parse_scopes(scopes),
            name=name,
            expires_in=timedelta(days=expires_in) if expires_in else None,
            limits=_limits(limits),
        )
        await audit.record(
            conn, actor=_actor(), action=audit.KEY_CREATE, tenant=key.tenant,
            target=key.id, outcome="success",
            detail={"scopes": list(key.scopes), "name": name},
        )  # fmt: skip
        return key, plaintext

    key, plaintext = _run(_database_url(data_dir, database_url), work)
    click.echo(
        f"Created key {key.id} for tenant {key.tenant!r} "
        f"(scopes: {', '.join(key.scopes)}). Store it now; it is not shown again.",
        err=True,
    )
    click.echo(plaintext)


@keys.command("list")
@_database_options
@click.option("--tenant", default=None, help="Only this tenant's keys.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_(data_dir, database_url, tenant, as_json):
    """List keys (never their secrets)."""
    from auth import keys as store

    found = _run(
        _database_url(data_dir, database_url),
        lambda conn: store.list_keys(conn, tenant=tenant),
    )
    for key in found:
        public = key.public()
        if as_json:
            click.echo(json.dumps(public))
            continue
        click.echo(
            f"{key.id}\t{key.tenant}\t{','.join(key.scopes)}\t{public['status']}\t"
            f"expires {_when(public['expires_at'])}\t"
            f"used {_when(public['last_used_at'])}\t{key.name or ''}"
        )


@keys.command("revoke")
@_database_options
@click.argument("key_id")
def revoke(data_dir, database_url, key_id):
    """Revoke KEY_ID at once."""
    from auth import audit
    from auth import keys as store

    async def work(conn):
        key = await store.revoke_key(conn, key_id=key_id, tenant=None)
        if key is None:
            raise click.ClickException(f"no key {key_id!r}; see `hearth keys list`")
        await audit.record(
            conn, actor=_actor(), action=audit.KEY_REVOKE, tenant=key.tenant,
            target=key.id, outcome="success",
        )  # fmt: skip
        return key

    key = _run(_database_url(data_dir, database_url), work)
    click.echo(f"Revoked key {key.id} of tenant {key.tenant!r}.")


@keys.command("rotate")
@_database_options
@click.argument("key_id")
def rotate(data_dir, database_url, key_id):
    """Replace KEY_ID with a new key and print it; the old one stops at once."""
    from auth import audit
    from auth import keys as store

    async def work(conn):
        rotated = await store.rotate_key(conn, key_id=key_id, tenant=None)
        if rotated is None:
            raise click.ClickException(f"no key {key_id!r}; see `hearth keys list`")
        old, new, plaintext = rotated
        await audit.record(
            conn, actor=_actor(), action=audit.KEY_ROTATE, tenant=old.tenant,
            target=old.id, outcome="success", detail={"new_key_id": new.id},
        )  # fmt: skip
        return new, plaintext

    new, plaintext = _run(_database_url(data_dir, database_url), work)
    click.echo(f"Key {key_id} replaced by {new.id}; it no longer works.", err=True)
    click.echo(plaintext)


@click.command()
@_database_options
@click.option("--tenant", default=None, help="Limits every key of this tenant.")
@click.option("--key", "key_id", default=None, help="Limits this key.")
@_limit_options
def limits(data_dir, database_url, tenant, key_id, **values):
    """Show or set the limits of a key or a tenant's keys (NULL: inherit)."""
    from auth import keys as store

    if (tenant is None) == (key_id is None):
        raise click.ClickException("name exactly one of --tenant or --key")
    table, name = ("tenants", tenant) if tenant else ("api_keys", key_id)
    column = "name" if tenant else "id"

    async def work(conn):
        found = await store.set_limits(
            conn, table=table, name=name, limits=_limits(values)
        )
        if not found:
            raise click.ClickException(f"no key {key_id!r}; see `hearth keys list`")
        return await conn.fetchrow(
            "SELECT requests_per_minute, tokens_per_minute, tokens_per_day,"
            f" max_concurrent FROM {table} WHERE {column} = $1",
            name,
        )

    row = _run(_database_url(data_dir, database_url), work)
    click.echo(json.dumps(dict(row)))


@click.command()
@_database_options
@click.option("--tenant", default=None, help="Only this tenant's events.")
@click.option("--action", default=None, help="Only this action, e.g. key.revoke.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def audit(data_dir, database_url, tenant, action, limit, as_json):
    """Show the audit log, newest first."""
    from auth import audit as log

    events = _run(
        _database_url(data_dir, database_url),
        lambda conn: log.read(conn, tenant=tenant, limit=limit, action=action),
    )
    for event in events:
        if as_json:
            click.echo(json.dumps(event))
            continue
        when = datetime.fromtimestamp(event["at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        click.echo(
            f"{event['id']}\t{when}\t{event['actor']}\t{event['tenant'] or '-'}\t"
            f"{event['action']}\t{event['target'] or '-'}\t"
            f"{event['client_ip'] or '-'}\t{event['outcome']}"
        )
