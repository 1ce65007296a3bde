"""The Celery application shared by the API (which sends) and the workers.

Messages are JSON only; pickle is never accepted. Each model has its own
queues (see workers.protocol), so routing by model is Celery routing.
"""

from __future__ import annotations

from celery import Celery

import workers.task_metrics  # noqa: F401  (connects the signal handlers)
from server.settings import Settings
from workers import protocol

celery_app = Celery("hearth", set_as_current=True)


def configure_celery(settings: Settings, broker_url: str | None = None) -> Celery:
    broker = broker_url or settings.broker_url
    if celery_app.conf.broker_url not in (None, broker):
        # Connections are pooled per app; a new broker needs a new pool.
        _drop_connection_pools()
    celery_app.conf.update(
        broker_url=broker,
        result_backend=settings.stream_url,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        event_serializer="json",
        # Interactive results travel on Redis streams, not the result backend.
        task_ignore_result=True,
        task_default_queue=f"{settings.namespace}.default",
        task_create_missing_queues=True,
        # One message at a time per pool slot: a busy worker leaves the rest
        # of the queue to its peers.
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            # Redis: poll queues in the order a worker lists them, so a
            # model's interactive queue is always drained before its batch
            # queue (the default rotates between them for fairness).
            "queue_order_strategy": "priority",
            "visibility_timeout": 2 * 3600,
        },
        result_expires=3600,
        beat_schedule={
            "prune-dead-workers": {
                "task": protocol.PRUNE_TASK,
                "schedule": 60.0,
                "options": {
                    "queue": protocol.maintenance_queue(settings.namespace),
                    "expires": 50,
                },
            },
            "sweep-jobs": {
                "task": protocol.JOB_SWEEP_TASK,
                "schedule": settings.job_sweep_s,
                "options": {
                    "queue": protocol.maintenance_queue(settings.namespace),
                    "expires": settings.job_sweep_s,
                },
            },
        },
    )
    return celery_app


def _drop_connection_pools() -> None:
    if celery_app._pool is not None:
        celery_app._pool.force_close_all()
    celery_app._pool = None
    amqp = celery_app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None
