"""Start and stop real Hearth processes for tests.

Every process is a real ``hearth`` command in its own process group; logs go
to files under the test's directory so a failure can be read afterwards.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
HEARTH = str(Path(sys.executable).parent / "hearth")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HEARTH_CACHE_DIR=os.environ.get(
            "HEARTH_CACHE_DIR", str(REPO / ".cache" / "hearth")
        ),
        HEARTH_LOG_JSON="true",
        HEARTH_WORKER_HEARTBEAT_S="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


def new_namespace() -> str:
    return "t" + uuid.uuid4().hex[:10]


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, sig)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
            except ProcessLookupError:
                pass
        return self.popen.returncode

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Processes:
    """A set of processes started for one test or session."""

    logdir: Path
    env: dict[str, str]
    started: list[Process] = field(default_factory=list)

    def start(self, name: str, *args: str, **env: str) -> Process:
        self.logdir.mkdir(parents=True, exist_ok=True)
        log = self.logdir / f"{name}.log"
        handle = open(log, "ab")  # noqa: SIM115 (the child owns it)
        popen = subprocess.Popen(
            [HEARTH, *args],
            env={**self.env, **env},
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.logdir,
        )
        handle.close()
        process = Process(name, popen, log)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            process.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.tail()}" for p in self.started)


def _ready(response: httpx.Response, models: list[str] | None) -> bool:
    if models is None:
        return response.status_code == 200
    checks = response.json().get("checks", {})
    wanted = ["broker", "database", *(f"model:{m}" for m in models)]
    return all(checks.get(k, "no") not in ("no", "no worker") for k in wanted) and (
        checks.get("broker") == "ok" and checks.get("database") == "ok"
    )


def wait_ready(
    url: str,
    processes: Processes,
    *,
    models: list[str] | None = None,
    timeout: float = 240,
) -> None:
    """Wait until /readyz shows everything (or ``models``) ready."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for process in processes.started:
            if process.popen.poll() is not None and process.name != "migrate":
                raise RuntimeError(
                    f"{process.name} exited with {process.popen.returncode}\n"
                    + processes.logs()
                )
        try:
            last = httpx.get(f"{url}/readyz", timeout=2)
            if _ready(last, models):
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.5)
    raise RuntimeError(f"not ready after {timeout}s: {last}\n" + processes.logs())


def create_database(admin_url: str) -> str:
    """Create a scratch database on a PostgreSQL server; returns its URL."""
    import asyncio

    import asyncpg

    name = "hearth_" + uuid.uuid4().hex[:12]

    async def create() -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_database(url: str) -> None:
    import asyncio

    import asyncpg

    admin, name = url.rsplit("/", 1)

    async def drop() -> None:
        conn = await asyncpg.connect(admin + "/postgres")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


@dataclass
class Cluster:
    """API and workers as separate roles against given broker and database."""

    url: str
    namespace: str
    processes: Processes

    @classmethod
    def start(
        cls,
        logdir: Path,
        *,
        broker_url: str,
        database_url: str,
        redis_url: str = "",
        models: list[str],
        extra_env: dict[str, str] | None = None,
    ) -> Cluster:
        port = free_port()
        namespace = new_namespace()
        env = base_env(
            HEARTH_BROKER_URL=broker_url,
            HEARTH_REDIS_URL=redis_url,
            HEARTH_DATABASE_URL=database_url,
            HEARTH_NAMESPACE=namespace,
            HEARTH_PORT=str(port),
            HEARTH_DATA_DIR=str(logdir / "data"),
            HEARTH_TORCH_THREADS="1",
            **(extra_env or {}),
        )
        processes = Processes(logdir=logdir, env=env)
        migrate = processes.start("migrate", "migrate")
        if migrate.popen.wait(120) != 0:
            raise RuntimeError("migrate failed\n" + migrate.tail())
        processes.started.remove(migrate)
        processes.start("api", "api")
        for model in models:
            processes.start(f"worker-{model}", "worker", "--models", model)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, processes, models=models)
        except Exception:
            processes.stop_all()
            raise
        return cls(url=url, namespace=namespace, processes=processes)

    def stop(self) -> None:
        self.processes.stop_all()
