"""The supervisor's side of a model reload, with Redis and the processes
faked: which workers start, which leave, and when they are stopped.

tests/test_model_reload.py runs the whole thing on a real `hearth up`; this
pins the rules that are slow to reach there: a changed model is restarted
under new worker names, an alias is not worth a restart, a busy worker or
a removed model's waiting queue holds the stop back.
"""

from __future__ import annotations

import json

import pytest

from server.autoscale import Autoscaler
from server.model_reload import ModelReloader
from server.settings import Settings
from server.stack import WORKER_GROUP, worker_spec
from tests.supervisor_fakes import FakeChild, FakeRedis, FakeRegistry
from workers import protocol
from workers.specs import ModelCatalog, read_models_file

NS = "hearth"
ENV = {"HEARTH_BROKER_URL": "redis://127.0.0.1:1/0"}


def _model(name: str, path: str, **extra: str) -> str:
    lines = [f"  - name: {name}", "    kind: embedding"]
    lines += ["    backend: sentence-transformers", f"    path: {path}"]
    lines += [f"    {key}: {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def setup(tmp_path):
    models = tmp_path / "models.yaml"
    models.write_text("models:\n" + _model("a", "/m/a") + _model("b", "/m/b"))
    # The namespace named here: an earlier test may have left HEARTH_* set.
    settings = Settings(
        data_dir=tmp_path, models_file=models, bundled_models=False,
        torch_threads=1, namespace=NS,
    )  # fmt: skip
    catalog = ModelCatalog(read_models_file(models))
    registry = FakeRegistry()
    for spec in catalog:
        registry.start(worker_spec(settings, spec, 1, ENV, 1), group=WORKER_GROUP)
    registry.started.clear()
    autoscaler = Autoscaler(
        settings=settings, catalog=catalog, registry=registry, env=ENV
    )
    clock = [0.0]
    reloader = ModelReloader(
        settings=settings, catalog=catalog, registry=registry, env=ENV,
        autoscaler=autoscaler, clock=lambda: clock[0],
    )  # fmt: skip
    redis = FakeRedis()
    reloader._redis = reloader._broker = redis

    def reload(text: str) -> dict:
        models.write_text("models:\n" + text)
        key = protocol.models_generation_key(NS)
        redis.values[key] = int(redis.values.get(key) or 0) + 1
        step()
        return json.loads(redis.values[protocol.models_applied_key(NS)])

    def step() -> None:
        clock[0] += 1
        reloader.tick()

    return reload, step, registry, redis


def _heartbeat(redis: FakeRedis, worker_id: str, inflight: int) -> None:
    key = protocol.worker_key(NS, worker_id)
    redis.hashes[key] = {"inflight": str(inflight)}


def _old(registry: FakeRegistry, name: str) -> FakeChild:
    return next(c for c in registry.watched if c.name == name)


def test_a_changed_model_gets_new_workers_and_the_old_ones_leave(setup):
    reload, step, registry, redis = setup
    old_a = _old(registry, "worker-a-1")
    _heartbeat(redis, old_a.spec.labels["worker_id"], 0)

    report = reload(_model("a", "/m/a2") + _model("b", "/m/b", aliases="[bee]"))

    assert report["restarted"] == ["a"]
    assert report["started"] == ["worker-a-g1-1"]
    assert report["stopping"] == ["worker-a-1"]
    # Only an alias changed for b: its worker serves on as it is.
    assert [c.name for c in registry.started] == ["worker-a-g1-1"]
    assert old_a.stop_requested and old_a not in registry.watched
    assert registry.started[0].spec.labels["worker_id"].startswith("a-g1-1@")
    assert not _old(registry, "worker-b-1").stop_requested


def test_a_removed_model_stops_only_when_idle_and_drained(setup):
    reload, step, registry, redis = setup
    old_b = _old(registry, "worker-b-1")
    worker_id = old_b.spec.labels["worker_id"]
    _heartbeat(redis, worker_id, 1)
    redis.lists[protocol.queue_name(NS, "b")] = [b"waiting"]

    report = reload(_model("a", "/m/a"))

    assert report["stopping"] == ["worker-b-1"] and report["started"] == []
    assert old_b not in registry.watched
    step()
    assert not old_b.stop_requested, "stopped while busy"
    _heartbeat(redis, worker_id, 0)
    step()
    assert not old_b.stop_requested, "stopped before its queue drained"
    redis.lists.clear()
    step()
    assert old_b.stop_requested


def test_a_file_that_does_not_validate_changes_nothing(setup):
    reload, step, registry, redis = setup

    report = reload("  - name: broken\n    kind: chat\n")

    assert "model #1" in report["error"]
    assert registry.started == []
    assert not any(c.stop_requested for c in registry.watched)
