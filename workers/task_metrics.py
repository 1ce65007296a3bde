"""Ids in every task's log lines, and each task's metrics, via Celery signals.

The API stamps each message it sends with headers (``hearth_request_id``,
the client's X-Request-Id; ``hearth_tenant``; ``hearth_sent_at``), so a
worker's log lines carry the same request id as the API's and the queue
wait can be measured. Signals rather than code in each task, so every task
(jobs included) is covered the same way. The pool is threads: each task
runs on one thread from prerun to postrun, so per-task state is
thread-local and structlog's context variables are the thread's own.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import structlog
from celery.signals import (
    before_task_publish,
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
)

from server.metrics import (
    EMBEDDED_INPUTS,
    INTER_TOKEN,
    TASK_DURATION,
    TASK_FAILURES,
    TASK_QUEUE_WAIT,
    TASK_RETRIES,
    TASKS,
    TIME_TO_FIRST_TOKEN,
)
from workers import protocol

REQUEST_ID = "hearth_request_id"
TENANT = "hearth_tenant"
SENT_AT = "hearth_sent_at"
NO_MODEL = "none"

_current = threading.local()
# What runs now in this process, for the heartbeat (GET /admin/workers).
_running: dict[str, dict[str, Any]] = {}
_running_lock = threading.Lock()


@before_task_publish.connect
def _stamp_headers(headers: dict | None = None, **_: Any) -> None:
    """Carry the API request's id and tenant, and the send time, in headers."""
    if headers is None:
        return
    headers.setdefault(SENT_AT, time.time())
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if request_id:
        headers.setdefault(REQUEST_ID, request_id)
    from auth.context import current_account

    account = current_account()
    if account is not None:
        headers.setdefault(TENANT, account.caller.tenant)


def message_age(raw: bytes | None) -> float:
    """Seconds since a raw kombu message (Redis broker) was sent; 0 if unknown."""
    if raw is None:
        return 0.0
    try:
        sent_at = float(json.loads(raw)["headers"][SENT_AT])
    except (ValueError, KeyError, TypeError):
        return 0.0
    return max(0.0, time.time() - sent_at)


def _payload(args: Any) -> dict:
    if args and isinstance(args[0], dict):
        return args[0]
    return {}


@task_prerun.connect
def _task_started(task_id=None, task=None, args=None, **_: Any) -> None:
    request = task.request
    payload = _payload(args)
    model = payload.get("model") or NO_MODEL
    sent_at = getattr(request, SENT_AT, None)
    _current.started = time.perf_counter()
    _current.sent_at = float(sent_at) if sent_at is not None else None
    _current.model = model
    _current.outcome = None
    embeds = task.name == protocol.EMBED_TASK
    _current.inputs = len(payload.get("input") or ()) if embeds else 0

    ids = {
        "request_id": getattr(request, REQUEST_ID, None) or payload.get("request_id"),
        "task_id": task_id,
        "task": task.name,
        "model": None if model == NO_MODEL else model,
        "tenant": getattr(request, TENANT, None),
        "job_id": getattr(request, "job_id", None) or payload.get("job_id"),
    }
    with _running_lock:
        _running[task_id] = {
            "task_id": task_id,
            "task": task.name,
            "model": ids["model"],
            "started_at": time.time(),
        }
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(
        **{k: v for k, v in ids.items() if v is not None}
    )
    if _current.sent_at is not None:
        wait = max(0.0, time.time() - _current.sent_at)
        TASK_QUEUE_WAIT.labels(task.name, model).observe(wait)


def set_outcome(outcome: str) -> None:
    """Called by a task that reports its own outcome (ok, or an error code)."""
    _current.outcome = outcome


def current_sent_at() -> float | None:
    return getattr(_current, "sent_at", None)


def running_tasks() -> list[dict[str, Any]]:
    """Tasks running in this process: ids, task, model and start time only
    (no request ids or tenants: every admin key may read the workers)."""
    with _running_lock:
        return sorted(_running.values(), key=lambda t: t["started_at"])


@task_postrun.connect
def _task_finished(task_id=None, task=None, state=None, **_: Any) -> None:
    with _running_lock:
        _running.pop(task_id, None)
    started = getattr(_current, "started", None)
    model = getattr(_current, "model", NO_MODEL)
    outcome = getattr(_current, "outcome", None) or (
        "ok" if state == "SUCCESS" else str(state).lower()
    )
    if started is not None:
        TASK_DURATION.labels(task.name, model).observe(time.perf_counter() - started)
    TASKS.labels(task.name, model, outcome).inc()
    if outcome == "ok" and getattr(_current, "inputs", 0) and model != NO_MODEL:
        EMBEDDED_INPUTS.labels(model).inc(_current.inputs)
    structlog.contextvars.clear_contextvars()
    _current.__dict__.clear()


@task_retry.connect
def _task_retried(sender=None, **_: Any) -> None:
    TASK_RETRIES.labels(getattr(sender, "name", "unknown")).inc()


@task_failure.connect
def _task_failed(sender=None, **_: Any) -> None:
    TASK_FAILURES.labels(getattr(sender, "name", "unknown")).inc()


class TimedSink:
    """Wraps a backend's sink to time the first token and the gaps between
    tokens; everything else passes through."""

    def __init__(self, sink: Any, *, model: str) -> None:
        self._sink = sink
        self._model = model
        self._sent_at = current_sent_at()
        self._started = time.time()
        self._last: dict[int, float] = {}

    def delta(self, index: int, text: str) -> None:
        now = time.time()
        previous = self._last.get(index)
        if previous is None and not self._last:
            origin = self._sent_at if self._sent_at is not None else self._started
            TIME_TO_FIRST_TOKEN.labels(self._model).observe(max(0.0, now - origin))
        elif previous is not None:
            INTER_TOKEN.labels(self._model).observe(now - previous)
        self._last[index] = now
        self._sink.delta(index, text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sink, name)
