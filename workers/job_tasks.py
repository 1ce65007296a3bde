"""Celery tasks for durable jobs: run one attempt, and sweep.

``run_job`` is acknowledged late and rejected (requeued) if its worker
process dies, so the broker redelivers a message whose worker vanished.
Either way the job row decides: the claim starts the attempt named in the
message only if the job is queued at the attempt before it, and the outcome
is written only if that attempt is still the job's running one. A duplicate
or late message therefore does nothing, and each job's result is written
exactly once.

Inference goes through the same hosted backends as interactive requests,
so jobs share the model's step-level batching with them.
"""

from __future__ import annotations

import time
from typing import Any

import redis
import structlog
from kombu.exceptions import ChannelError, OperationalError

from openai_compat.embeddings import embedding_response
from retrieval import pipeline
from server.errors import HearthError, ModelRuntimeError
from server.jobs import batches, files, outbox, recovery, states, store, webhooks
from server.jobs.results import completion_body
from server.settings import get_settings
from workers import protocol
from workers.backends.base import ChatInput, GenerationParams
from workers.celery_app import celery_app
from workers.hosting import hosted
from workers.job_sink import JobCancelled, JobSink
from workers.jobdb import worker_database

log = structlog.get_logger(__name__)

_SETTLE_TRIES = 5


def _error(exc: HearthError) -> dict[str, Any]:
    return {**exc.to_dict(), "status": exc.status, "type": exc.type}


def _infer(job: dict[str, Any]) -> dict[str, Any]:
    """Run the job's request on this worker's backend; its response body."""
    payload, model = job["payload"], job["model"]
    asked_for = job["request"].get("model", model)
    if job["endpoint"] == pipeline.ENDPOINT:
        return pipeline.run(job)
    if job["endpoint"] == states.EMBEDDING:
        backend = hosted().embedding_backend(model)
        vectors, tokens = backend.embed(request_id=job["id"], texts=payload["input"])
        return embedding_response(
            model=asked_for,
            vectors=vectors,
            encoding_format=payload.get("encoding_format", "float"),
            prompt_tokens=tokens,
        )

    backend = hosted().chat_backend(model)
    params = GenerationParams.from_dict(payload["params"])
    attempt = job["attempt"]

    def note(progress: dict[str, int]) -> None:
        worker_database().submit(
            store.note_progress, job_id=job["id"], attempt=attempt, progress=progress
        )

    state = hosted()
    sink = JobSink(
        state.redis, namespace=state.namespace, job_id=job["id"], n=params.n,
        on_progress=note,
    )  # fmt: skip
    chat = ChatInput(messages=payload.get("messages"), prompt=payload.get("prompt"))
    usage = backend.generate(request_id=job["id"], chat=chat, params=params, sink=sink)
    if sink.cancelled():
        raise JobCancelled()
    return completion_body(
        job_id=job["id"], model=asked_for, chat=job["endpoint"] == states.CHAT,
        texts=sink.texts, reasons=sink.reasons, usage=usage.as_dict(),
    )  # fmt: skip


def _outcome(job: dict[str, Any]) -> tuple[dict | None, dict | None]:
    try:
        return _infer(job), None
    except JobCancelled:
        return None, {"code": "cancelled", "status": 499, "message": "cancelled"}
    except HearthError as exc:
        return None, _error(exc)
    except redis.RedisError as exc:
        return None, {"code": "service_unavailable", "status": 503,
                      "message": f"Redis failed during the job: {exc}"}  # fmt: skip
    except Exception as exc:
        log.exception("job failed in the model")
        return None, _error(ModelRuntimeError(f"the model failed: {exc}"))


def _settle(job: dict[str, Any], result, error) -> store.Settled | None:
    settings = get_settings()
    retry_in = None
    code = (error or {}).get("code")
    if error and states.is_transient(code) and job["attempt"] < job["max_attempts"]:
        retry_in = states.backoff_s(
            job["attempt"], base=settings.job_backoff_s, cap=settings.job_backoff_max_s
        )
    for attempt in range(_SETTLE_TRIES):
        try:
            return worker_database().run(
                store.settle, job_id=job["id"], attempt=job["attempt"],
                result=result, error=error, retry_in_s=retry_in,
            )  # fmt: skip
        except HearthError as exc:
            # The database blinked; the row still says running, so keep
            # trying before leaving it to the sweep's overdue rule.
            log.warning("could not save job outcome", error=exc.message, try_=attempt)
            time.sleep(min(5.0, 0.5 * 2**attempt))
    return None


def _after(settled: store.Settled) -> None:
    settings = get_settings()
    if settled.batch_id and settled.state in states.FINISHED:
        worker_database().run(
            batches.finalize_if_done,
            batch_id=settled.batch_id,
            folder=files.files_dir(settings),
        )
    if settled.webhook_url and settled.state in states.FINISHED:
        _notify(settled.job_id, settled.webhook_url)


def _notify(job_id: str, url: str) -> None:
    """Call a finished job's webhook with the state the job row holds."""
    job = worker_database().run(store.job_state, job_id=job_id)
    body = {"id": job_id, "object": "job.event", "state": job[0] if job else None}
    webhooks.call(url, body, get_settings())


@celery_app.task(
    name=protocol.JOB_TASK, acks_late=True, reject_on_worker_lost=True,
    ignore_result=True,
)  # fmt: skip
def run_job(message: dict[str, Any]) -> None:
    job_id, attempt = message["job_id"], int(message["attempt"])
    state = hosted()
    try:
        job = worker_database().run(
            store.claim, job_id=job_id, attempt=attempt, worker=state.claimant
        )
    except HearthError as exc:
        # Left queued with its message gone: the sweep sends it again.
        log.warning("job not claimed", job_id=job_id, error=exc.message)
        return
    if job is None:
        log.info("job message skipped", job_id=job_id, attempt=attempt)
        _expire_if_due(job_id)
        return

    structlog.contextvars.bind_contextvars(job_id=job_id, model=job["model"])
    started = time.perf_counter()
    settled: store.Settled | None = None
    error: dict[str, Any] | None = None
    state.task_started()
    try:
        result, error = _outcome(job)
        settled = _settle(job, result, error)
        if settled is not None:
            _after(settled)
    finally:
        state.task_finished()
        log.info(
            "job attempt finished",
            attempt=attempt,
            outcome=settled.state if settled else "discarded",
            error=(error or {}).get("code"),
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        structlog.contextvars.unbind_contextvars("job_id", "model")


def _expire_if_due(job_id: str) -> None:
    """A message for a job past its deadline: end the job here rather than
    wait for the sweep (the claim never starts such a job)."""
    try:
        expired = worker_database().run(store.expire_due, job_id=job_id)
    except HearthError:
        return  # the sweep expires it
    for settled in expired:
        log.info("job expired", job_id=job_id)
        _after(settled)


def _worker_alive(model: str, worker: str) -> bool:
    """Is the process that claimed a job still beating? A worker restarted
    under the same name beats again within seconds, but as a new
    incarnation: its predecessor's jobs are lost all the same."""
    name, mark, incarnation = worker.rpartition("#")
    if not mark:
        name, incarnation = worker, ""  # claimed before incarnations existed
    state = hosted()
    score = state.redis.zscore(protocol.live_key(state.namespace, model), name)
    horizon = time.time() - 3 * get_settings().worker_heartbeat_s
    if score is None or score < horizon:
        return False
    if not incarnation:
        return True
    now = state.redis.hget(protocol.worker_key(state.namespace, name), "incarnation")
    return now is not None and now.decode() == incarnation


def _queue_depth(queue: str) -> int:
    with celery_app.connection_for_write() as conn:
        try:
            return conn.default_channel.queue_declare(
                queue=queue, passive=True
            ).message_count
        except ChannelError:
            return 0  # Redis: an empty queue is no key at all
        except OperationalError as exc:
            if "NOT_FOUND" in str(exc) or "404" in str(exc):
                return 0  # RabbitMQ: never declared
            raise


@celery_app.task(name=protocol.JOB_SWEEP_TASK, ignore_result=True)
def sweep_jobs() -> None:
    settings = get_settings()
    probes = recovery.Probes(
        worker_alive=_worker_alive, queue_depth=_queue_depth, send=outbox.send
    )
    report = worker_database().run(
        recovery.sweep, settings=settings, probes=probes,
        folder=files.files_dir(settings),
    )  # fmt: skip
    if report is None:
        return
    if report.busy():
        log.info("jobs swept", **report.summary())
    for ended in report.ended:
        _notify(ended.job_id, ended.webhook_url)
