"""Where the API may listen while it has no API keys to protect it."""

from __future__ import annotations

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


def check_bind(settings: Settings) -> None:
    """Refuse a non-loopback host unless the user forced it."""
    if settings.allow_insecure_bind or is_loopback(settings.host):
        return
    raise ConfigError(
        f"refusing to serve on {settings.host!r}: Hearth has no API keys yet, so "
        "anyone who can reach that address could use it. Bind to 127.0.0.1, or "
        "pass --allow-insecure-bind (HEARTH_ALLOW_INSECURE_BIND=true) if the "
        "network is trusted."
    )
