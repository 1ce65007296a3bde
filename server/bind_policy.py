"""Where the API may listen while it has no API keys to protect it.

Loopback is always allowed. Elsewhere needs active API keys in the
database (checked at start, when the database is known) or the explicit
``--allow-insecure-bind``.
"""

from __future__ import annotations

import asyncio
import ipaddress

from server.errors import ConfigError
from server.settings import Settings


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach.

    Host names other than ``localhost`` are not resolved: a name that points
    elsewhere tomorrow must not pass today's check.
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _keys_exist(database_url: str) -> bool:
    """True if the database holds an active API key; False if it cannot say."""
    import asyncpg

    from auth.keys import active_keys_exist

    async def ask() -> bool:
        conn = await asyncpg.connect(database_url, timeout=5)
        try:
            return await active_keys_exist(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(ask())
    except (OSError, asyncpg.PostgresError):
        # Unreachable, or not migrated yet (no api_keys table): no keys.
        return False


def check_bind(settings: Settings) -> None:
    """Refuse a non-loopback host unless keys protect it or the user forced it.

    The embedded database is not running yet when ``hearth up`` checks, so
    there it takes the flag; ``hearth api`` checks again once it is.
    """
    if settings.allow_insecure_bind or is_loopback(settings.host):
        return
    if settings.database_url and _keys_exist(settings.database_url):
        return
    raise ConfigError(
        f"refusing to serve on {settings.host!r}: Hearth has no active API keys, "
        "so anyone who can reach that address could use it. Create a key "
        "(`hearth keys create --tenant NAME --scopes inference`), bind to "
        "127.0.0.1, or pass --allow-insecure-bind "
        "(HEARTH_ALLOW_INSECURE_BIND=true) if the network is trusted."
    )
