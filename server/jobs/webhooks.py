"""Webhook URLs: which are allowed, and the call made when a job ends.

Allowed by default: http(s) to a loopback address or ``localhost``. Hosts in
``HEARTH_WEBHOOK_ALLOWED_HOSTS`` are allowed by name; private ranges only
with ``HEARTH_WEBHOOK_ALLOW_PRIVATE``; link-local addresses (where cloud
metadata services live) and unspecified addresses never. The check runs at
submission on the URL, and again at call time on the addresses the name
resolves to, so a name cannot be pointed somewhere else in between.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import httpx
import structlog

from server.errors import InvalidRequest
from server.settings import Settings

log = structlog.get_logger(__name__)

_TIMEOUT_S = 5.0
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def _refuse(url: str, why: str) -> InvalidRequest:
    return InvalidRequest(
        f"Webhook URL {url!r} is not allowed: {why}. Use a loopback address, or "
        "add the host to HEARTH_WEBHOOK_ALLOWED_HOSTS.",
        param="webhook_url",
    )


def _allowed_hosts(settings: Settings) -> set[str]:
    return {h.strip().lower() for h in settings.webhook_allowed_hosts.split(",") if h}


def check_address(url: str, address: str, settings: Settings) -> None:
    ip = ipaddress.ip_address(address)
    if getattr(ip, "ipv4_mapped", None):
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return
    if ip.is_link_local or ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        raise _refuse(url, f"{address} is a link-local or reserved address")
    if ip.is_private and not settings.webhook_allow_private:
        raise _refuse(url, f"{address} is in a private range")


def check_url(url: str, settings: Settings) -> str:
    """Return ``url`` if a webhook may be sent there; raise InvalidRequest."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _refuse(url, "it must be an http or https URL with a host")
    host = parts.hostname.lower()
    try:
        check_address(url, host, settings)
        return url
    except ValueError:
        pass  # a name, not an address
    if host in _LOOPBACK_NAMES or host in _allowed_hosts(settings):
        return url
    raise _refuse(url, f"host {host!r} is neither loopback nor allowed")


def _resolved(url: str) -> list[str]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})


def call(url: str, body: dict, settings: Settings) -> None:
    """POST ``body`` once; failures are logged, never raised (a webhook is a
    notice, the job row is the record)."""
    try:
        check_url(url, settings)
        for address in _resolved(url):
            check_address(url, address, settings)
        reply = httpx.post(url, json=body, timeout=_TIMEOUT_S, follow_redirects=False)
        log.info("webhook sent", job_id=body.get("id"), status=reply.status_code)
    except (InvalidRequest, OSError, httpx.HTTPError) as exc:
        log.warning("webhook failed", job_id=body.get("id"), error=str(exc))
