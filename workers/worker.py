"""``hearth worker``: a Celery worker that hosts models and serves their queues.

Models load before the worker consumes anything, so the first request never
waits for a load. The pool is threads: every task thread hands its request
to the model's backend, which batches concurrent requests on its own thread.
"""

from __future__ import annotations

import structlog

from server.errors import ConfigError
from server.logs import configure_logging
from server.metrics import WORKER_STARTS
from server.metrics_http import serve_worker_metrics
from server.settings import Settings
from server.tracing import configure_tracing
from workers import protocol
from workers.batch_consumer import consume_batch_queues
from workers.celery_app import celery_app, configure_celery
from workers.hosting import Heartbeat, default_worker_id, load_models
from workers.specs import ModelCatalog

log = structlog.get_logger(__name__)


def run_worker(
    settings: Settings, *, model_names: list[str], hostname: str | None = None
) -> None:
    configure_logging(
        level=settings.log_level, json=settings.log_json, process="worker"
    )
    catalog = ModelCatalog.load(
        models_file=settings.models_file, bundled=settings.bundled_models
    )
    if not model_names:
        raise ConfigError("name at least one model: hearth worker --models NAME")
    specs = [catalog.get(name) for name in model_names]

    if settings.torch_threads:
        from workers.device import set_torch_threads

        set_torch_threads(settings.torch_threads)

    names = [spec.name for spec in specs]
    worker_id = hostname or default_worker_id(names)
    state = load_models(settings, specs, worker_id=worker_id)

    # Maintenance first: its tasks are tiny, and the job sweep that recovers
    # a killed worker's jobs must not wait behind a draining batch queue.
    queues = [protocol.maintenance_queue(settings.namespace)]
    queues += [protocol.queue_name(settings.namespace, name) for name in names]
    batch_queues = [
        protocol.queue_name(settings.namespace, name, "batch") for name in names
    ]
    configure_celery(settings)
    consume_batch_queues(
        celery_app, queues=batch_queues, prefetch=settings.worker_batch_prefetch
    )
    configure_tracing(process="worker")
    import workers.job_tasks  # noqa: F401  (registers the job tasks)
    import workers.tasks  # noqa: F401  (registers the tasks)

    heartbeat = Heartbeat(
        state, period_s=settings.worker_heartbeat_s, queues=queues + batch_queues
    )
    heartbeat.start()
    WORKER_STARTS.labels("+".join(names)).inc()
    serve_worker_metrics(host=settings.host, port=settings.worker_metrics_port)
    log.info(
        "worker starting", worker_id=worker_id, models=names, queues=queues,
        batch_queues=batch_queues, batch_prefetch=settings.worker_batch_prefetch,
    )  # fmt: skip
    try:
        celery_app.worker_main(
            [
                "worker",
                "--pool=threads",
                f"--concurrency={settings.worker_concurrency}",
                f"--queues={','.join(queues)}",
                f"--hostname={worker_id}",
                f"--loglevel={settings.log_level}",
                "--without-gossip",
                "--without-mingle",
            ]
        )
    finally:
        heartbeat.stop()
        for backend in state.backends.values():
            backend.close()
        log.info("worker stopped", worker_id=worker_id)
