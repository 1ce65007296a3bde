"""The operator's admin API and `hearth status`, against the session stack."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from tests.stackutil import HEARTH

pytestmark = pytest.mark.stack


@pytest.fixture
def admin(hearth_url, api_key):
    with httpx.Client(
        base_url=hearth_url, headers={"Authorization": f"Bearer {api_key}"}
    ) as client:
        yield client


def test_workers_show_state_and_current_tasks(admin, chat_model):
    workers = admin.get("/admin/workers").json()["data"]

    serving = [w for w in workers if chat_model in w["models"]]
    assert serving and all(w["alive"] for w in serving)
    for worker in serving:
        assert worker["state"] in ("idle", "busy")
        assert isinstance(worker["current_tasks"], list)
        assert worker["pid"] > 0 and worker["uptime_s"] >= 0


def test_queues_show_depth_consumers_and_age(admin, chat_model, embedding_model):
    queues = {q["name"]: q for q in admin.get("/admin/queues").json()["data"]}

    for model in (chat_model, embedding_model):
        interactive = next(
            q
            for q in queues.values()
            if q["model"] == model and q["priority"] == "interactive"
        )
        assert interactive["consumers"] >= 1
        assert interactive["depth"] >= 0 and interactive["oldest_age_s"] >= 0


def test_model_registry_lists_kinds_sources_and_live_workers(
    admin, chat_model, embedding_model
):
    models = {m["name"]: m for m in admin.get("/admin/models").json()["data"]}
    workers = admin.get("/admin/workers").json()["data"]

    assert models[chat_model]["kind"] == "chat"
    assert models[embedding_model]["kind"] == "embedding"
    assert models[embedding_model]["workers"] >= 1
    for name in (chat_model, embedding_model):
        model = models[name]
        assert model["queues"][0].endswith(f".model.{name}")
        assert model["live_workers"]
        assert set(model["live_workers"]) <= {w["id"] for w in workers}
        assert model["source"]["origin"] in ("bundled", "models file")


def test_purge_is_audited_and_unknown_names_are_404(admin, embedding_model):
    queues = admin.get("/admin/queues").json()["data"]
    name = next(
        q["name"]
        for q in queues
        if q["model"] == embedding_model and q["priority"] == "batch"
    )

    reply = admin.post(f"/admin/queues/{name}/purge")
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"object": "queue.purge", "queue": name, "purged": 0}
    events = admin.get("/admin/audit", params={"action": "queue.purge"}).json()
    assert events["data"][0]["target"] == name
    assert events["data"][0]["detail"] == {"purged": 0}

    missing = admin.post("/admin/queues/nope/purge")
    assert missing.status_code == 404
    assert "GET /admin/queues" in missing.json()["error"]["message"]
    gone = admin.post("/admin/workers/nobody@nowhere/shutdown")
    assert gone.status_code == 404


def test_hearth_status_prints_queues_and_workers(hearth_url, api_key, chat_model):
    result = subprocess.run(
        [HEARTH, "status", "--url", hearth_url, "--api-key", api_key],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["QUEUE", "DEPTH", "CONSUMERS", "OLDEST_S"]
    assert any(line.startswith(f"hearth.model.{chat_model} ") for line in lines)
    assert any(line.startswith("WORKER") for line in lines)
