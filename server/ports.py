"""Loopback ports for the embedded services, kept across restarts.

A restarted ``hearth up`` reuses the ports of its last run when they are
free, so URLs written into other tools' config keep working.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

LOOPBACK = "127.0.0.1"


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers listen with SO_REUSEADDR, so a port whose old connections
        # linger in TIME_WAIT is free for them; test it the same way.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def remembered_port(
    data_dir: Path, service: str, *, avoid: frozenset[int] = frozenset()
) -> int:
    """The port ``service`` used last time if it is free, else a new one.

    ``avoid`` holds ports promised to others (the API's), which are free
    now only because their owner has not started yet.
    """
    path = data_dir / "ports.json"
    try:
        ports = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        ports = {}

    port = ports.get(service)
    if isinstance(port, int) and port not in avoid and port_is_free(port):
        return port

    new = free_port()
    while new in avoid:
        new = free_port()
    if port is not None:
        log.warning(
            "remembered port is taken; moving", service=service, old=port, new=new
        )
    ports[service] = new
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(ports, indent=2, sort_keys=True) + "\n")
    return new
