"""`hearth up` stopped and started again on the same data directory keeps its
data: usage records in the embedded PostgreSQL survive, the ports stay."""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from tests.stackutil import Processes, base_env, free_port, wait_ready
from workers.specs import MINILM, bundled_specs

pytestmark = pytest.mark.stack


def _models_file(tmp_path) -> str:
    # Only the embedding model: the restart is what is under test, not chat.
    minilm = next(spec for spec in bundled_specs() if spec.name == MINILM)
    path = tmp_path / "models.yaml"
    path.write_text(
        "models:\n"
        f"  - name: {MINILM}\n"
        "    kind: embedding\n"
        "    backend: sentence-transformers\n"
        f"    path: {minilm.path}\n"
    )
    return str(path)


def _start(tmp_path, port: int, run: str) -> Processes:
    env = base_env(
        HEARTH_DATA_DIR=str(tmp_path / "data"),
        HEARTH_BUNDLED_MODELS="false",
        HEARTH_MODELS_FILE=_models_file(tmp_path),
    )
    processes = Processes(logdir=tmp_path / run, env=env)
    processes.start("up", "up", "--port", str(port))
    wait_ready(f"http://127.0.0.1:{port}", processes)
    return processes


def _embedding_requests(url: str) -> int:
    usage = httpx.get(f"{url}/admin/usage", timeout=10).json()["data"]
    return sum(row["requests"] for row in usage if row["model"] == MINILM)


def test_restart_keeps_usage_records(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    first = _start(tmp_path, port, "run1")
    try:
        for text in ("one", "two", "three"):
            reply = httpx.post(
                f"{url}/v1/embeddings",
                json={"model": MINILM, "input": text},
                timeout=60,
            )
            assert reply.status_code == 200
        # Records are written just after each response; wait for all three.
        deadline = time.monotonic() + 30
        while _embedding_requests(url) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _embedding_requests(url) == 3
    finally:
        assert first.started[0].stop(signal.SIGTERM, timeout=60) == 0

    second = _start(tmp_path, port, "run2")
    try:
        assert _embedding_requests(url) == 3
    finally:
        second.stop_all()


def test_ready_is_announced_once_every_model_has_a_worker(tmp_path):
    port = free_port()
    env = base_env(
        HEARTH_DATA_DIR=str(tmp_path / "data"),
        HEARTH_BUNDLED_MODELS="false",
        HEARTH_MODELS_FILE=_models_file(tmp_path),
    )
    processes = Processes(logdir=tmp_path / "run", env=env)
    up = processes.start("up", "up", "--port", str(port))
    try:
        deadline = time.monotonic() + 180
        while "Hearth is ready" not in (text := up.log.read_text()):
            assert up.popen.poll() is None, processes.logs()
            assert time.monotonic() < deadline, text
            time.sleep(0.05)

        # The moment it says so, a request for the model is served.
        reply = httpx.post(
            f"http://127.0.0.1:{port}/v1/embeddings",
            json={"model": MINILM, "input": "ready?"},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        assert text.index("loading models") < text.index("Hearth is ready")
    finally:
        processes.stop_all()
