"""What ``/metrics`` reads at scrape time: queues, workers and jobs.

These describe the whole system rather than one process, so the API reads
them from Redis and PostgreSQL when scraped instead of each process keeping
a gauge. Every API replica reports the same values; aggregate them with
``max``, not ``sum``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import asyncpg
import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from server.dispatch import Dispatcher
from server.jobs.states import ENDPOINT_TYPES
from workers import protocol
from workers.specs import ModelCatalog
from workers.task_metrics import message_age

log = structlog.get_logger(__name__)


@dataclass(eq=False)
class SystemSample:
    """Gauge families read once per scrape."""

    families: list[GaugeMetricFamily] = field(default_factory=list)

    def collect(self):
        return iter(self.families)


async def oldest_message_age(dispatcher: Dispatcher, queue: str) -> float:
    """Seconds the next message of a Redis-broker queue has waited, or 0.

    The age comes from the header the API stamps on every message it sends.
    """
    return message_age(await dispatcher.next_message(queue))


async def _queue_families(dispatcher, catalog) -> list[GaugeMetricFamily]:
    labels = ["queue", "model", "priority"]
    depth = GaugeMetricFamily(
        "hearth_queue_depth", "Messages waiting in a queue.", labels=labels
    )
    age = GaugeMetricFamily(
        "hearth_queue_oldest_message_age_seconds",
        "How long the next message of a queue has waited (Redis broker).",
        labels=labels,
    )
    for spec in catalog:
        for priority in ("interactive", "batch"):
            queue = protocol.queue_name(dispatcher.namespace, spec.name, priority)
            values = [queue, spec.name, priority]
            depth.add_metric(values, await dispatcher.queue_depth(queue))
            age.add_metric(values, await oldest_message_age(dispatcher, queue))
    return [depth, age]


async def _worker_families(dispatcher, catalog) -> list[GaugeMetricFamily]:
    live = GaugeMetricFamily(
        "hearth_workers_live",
        "Worker processes with a recent heartbeat, per model.",
        labels=["model"],
    )
    busy = GaugeMetricFamily(
        "hearth_worker_inflight_tasks",
        "Tasks running in the live workers of a model.",
        labels=["model"],
    )
    inflight: dict[str, int] = {spec.name: 0 for spec in catalog}
    pattern = protocol.worker_key(dispatcher.namespace, "*")
    async for key in dispatcher.redis.scan_iter(match=pattern, count=200):
        fields = await dispatcher.redis.hmget(key, "models", "inflight")
        models = (fields[0] or b"").decode().split(",")
        for model in filter(None, models):
            inflight[model] = inflight.get(model, 0) + int(fields[1] or 0)
    for spec in catalog:
        live.add_metric([spec.name], await dispatcher.live_workers(spec.name))
        busy.add_metric([spec.name], inflight.get(spec.name, 0))
    return [live, busy]


async def _job_families(pool) -> list[GaugeMetricFamily]:
    jobs = GaugeMetricFamily(
        "hearth_jobs",
        "Durable jobs by state and type (chat, completion, embedding).",
        labels=["state", "type"],
    )
    if pool is None:
        return []
    try:
        rows = await pool.fetch(
            "SELECT state, endpoint, count(*) AS n FROM jobs GROUP BY 1, 2"
        )
    except asyncpg.UndefinedTableError:
        return []
    for row in rows:
        kind = ENDPOINT_TYPES.get(row["endpoint"], row["endpoint"])
        jobs.add_metric([row["state"], kind], row["n"])
    return [jobs]


async def sample_system(
    dispatcher: Dispatcher, catalog: ModelCatalog, pool
) -> SystemSample:
    sample = SystemSample()
    for read in (
        lambda: _queue_families(dispatcher, catalog),
        lambda: _worker_families(dispatcher, catalog),
        lambda: _job_families(pool),
    ):
        try:
            sample.families.extend(await read())
        except Exception as exc:  # a broken source must not blank the scrape
            log.warning("metrics source failed", error=str(exc))
    return sample


class _ThisProcess:
    """The default registry, for a process not in multiprocess mode."""

    def collect(self):
        return REGISTRY.collect()


def render(sample: SystemSample) -> bytes:
    """The text exposition of every process's samples plus ``sample``."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    registry.register(sample)
    return generate_latest(registry)
