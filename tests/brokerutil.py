"""Brokers of a test's own, for tests that stop one or count what it holds.

A Redis-protocol server (Debian's ``redis-server``, or the Valkey binary
``hearth up`` embeds) with its append-only file, and a RabbitMQ node of its
own (its own node name, ports, database and logs under the test's
directory). Each listens on a free loopback port and is stopped by the
test; the machine's shared Redis and RabbitMQ are never stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import redis
from kombu import Connection

from tests.stackutil import free_port

# The script itself, not /usr/sbin's wrapper, which would switch to the
# rabbitmq user (who cannot write to the test's directory).
RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


def _stop_group(process: subprocess.Popen | None, timeout: float = 30) -> None:
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    except ProcessLookupError:
        pass


class RedisServer:
    """``binary`` on a free port, persisting to ``folder`` (append-only)."""

    def __init__(self, folder: Path, binary: str | Path | None = None) -> None:
        self.folder = folder
        self.binary = str(binary or shutil.which("redis-server") or "redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port),
             "--dir", str(self.folder), "--appendonly", "yes", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url)
        try:
            for _ in range(100):
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    time.sleep(0.1)
        finally:
            client.close()
        raise RuntimeError(f"{self.binary} did not start on port {self.port}")

    def stop(self) -> None:
        _stop_group(self.process)

    def depth(self, queue: str) -> int:
        client = redis.Redis.from_url(self.url)
        try:
            return client.llen(queue)
        finally:
            client.close()


class RabbitNode:
    """A RabbitMQ node of the test's own: no plugins, guest on loopback."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        self.process: subprocess.Popen | None = None
        self._env = {
            **os.environ,
            "RABBITMQ_NODENAME": f"hearth-{uuid.uuid4().hex[:8]}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(folder / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
            # Without its extension: the node adds ".conf".
            "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq"),
            "RABBITMQ_PID_FILE": str(folder / "pid"),
            # Where the node keeps its Erlang cookie.
            "HOME": str(folder),
        }

    def start(self, timeout: float = 90) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "enabled_plugins").write_text("[].\n")
        (self.folder / "rabbitmq.conf").write_text("")
        with open(self.folder / "server.log", "ab") as log:
            self.process = subprocess.Popen(
                [RABBITMQ_SERVER], env=self._env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with Connection(self.url, connect_timeout=1) as conn:
                    conn.ensure_connection(max_retries=1)
                return
            except Exception:  # whatever the failure, the node is not up yet
                time.sleep(0.25)
        tail = (self.folder / "server.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"RabbitMQ node did not start on {self.port}\n{tail}")

    def stop(self) -> None:
        _stop_group(self.process)

    def depth(self, queue: str) -> int:
        return rabbit_depth(self.url, queue)

    def consumer_prefetch(self) -> dict[str, list[int]]:
        """Each queue's consumers' own prefetch counts (0: none, or set on
        the whole channel), as ``rabbitmqctl list_consumers`` reports them."""
        reply = subprocess.run(
            [str(Path(RABBITMQ_SERVER).with_name("rabbitmqctl")),
             "-n", self._env["RABBITMQ_NODENAME"], "-q", "list_consumers",
             "queue_name", "prefetch_count", "--formatter", "json"],
            env=self._env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        found: dict[str, list[int]] = {}
        for row in json.loads(reply.stdout):
            found.setdefault(row["queue_name"], []).append(row["prefetch_count"])
        return found


def rabbit_depth(url: str, queue: str) -> int:
    """Messages ready in ``queue`` (0 if it was never declared)."""
    with Connection(url) as conn:
        try:
            return conn.default_channel.queue_declare(
                queue=queue, passive=True
            ).message_count
        except conn.channel_errors:
            return 0


def drop_rabbit_queues(url: str, queues: list[str]) -> None:
    """Delete a test's queues from a shared RabbitMQ."""
    with Connection(url) as conn:
        for queue in queues:
            channel = conn.channel()
            try:
                channel.queue_delete(queue)
            except conn.channel_errors:
                pass
            finally:
                channel.close()
