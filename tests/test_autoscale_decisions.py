"""The autoscaler's decisions, with the broker and the processes faked.

tests/test_autoscale.py shows the whole thing on a real `hearth up`; this
pins the rules that are slow to reach there: up at once by the backlog,
never above max_workers, never stopping a busy worker, down one at a time.
"""

from __future__ import annotations

import json
import time

import pytest

from server.autoscale import Autoscaler
from server.settings import Settings
from tests.supervisor_fakes import FakeChild, FakeRedis, FakeRegistry
from workers import protocol
from workers.specs import ModelCatalog, ModelSpec

MODEL = "emb"


@pytest.fixture
def scaler():
    spec = ModelSpec(
        name=MODEL, kind="embedding", backend="remote", base_url="http://x/v1",
        workers=1, max_workers=4,
    )  # fmt: skip
    settings = Settings(
        autoscale_queue_per_worker=4, autoscale_idle_s=30, autoscale_interval_s=1
    )
    clock = [1000.0]
    registry = FakeRegistry()
    scaler = Autoscaler(
        settings=settings,
        catalog=ModelCatalog([spec]),
        registry=registry,
        env={"HEARTH_BROKER_URL": "redis://127.0.0.1:1/0"},
        clock=lambda: clock[0],
    )
    broker = FakeRedis()
    scaler._broker = scaler._streams = broker

    def step(seconds: float = 1.0) -> None:
        clock[0] += seconds
        scaler.tick()

    return scaler, registry, broker, step


def _queue(broker: FakeRedis, depth: int) -> None:
    message = json.dumps({"headers": {"hearth_sent_at": time.time()}}).encode()
    broker.lists[protocol.queue_name("hearth", MODEL)] = [message] * depth


def _heartbeat(broker: FakeRedis, child: FakeChild, inflight: int) -> None:
    worker_id = child.spec.argv[child.spec.argv.index("--hostname") + 1]
    broker.hashes[protocol.worker_key("hearth", worker_id)] = {
        "inflight": str(inflight),
        "seen_at": str(time.time()),
    }


def test_a_backlog_adds_the_workers_it_needs_at_once(scaler):
    scaler, registry, broker, step = scaler
    _queue(broker, 10)

    step()

    # ceil(10 / 4) = 3 workers in all: two added in one decision.
    assert len(registry.watched) == 2


def test_never_more_than_max_workers(scaler):
    scaler, registry, broker, step = scaler
    _queue(broker, 60)

    for _ in range(5):
        step()

    assert len(registry.watched) == 3  # 1 fixed + 3 added = max_workers 4


def test_a_busy_worker_is_never_stopped_and_idle_ones_go_one_by_one(scaler):
    scaler, registry, broker, step = scaler
    _queue(broker, 12)
    step()
    added = list(registry.watched)
    assert len(added) == 2

    _queue(broker, 0)
    for child in added:
        _heartbeat(broker, child, inflight=1)
    for _ in range(120):
        step()
    assert registry.watched == added

    for child in added:
        _heartbeat(broker, child, inflight=0)
    step()
    step(31)
    assert registry.watched == added[:1]  # the newest went first
    assert added[1].stop_requested
    step()
    assert registry.watched == added[:1]  # its own idle clock starts now
    step(31)
    assert registry.watched == []
