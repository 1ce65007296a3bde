"""Celery tasks run by model workers: generate and embed.

Each task finds its model's backend (loaded once when the worker started),
runs the request, and writes the outcome to the request's event stream. A
task never raises for a bad request: the error goes to the client as an
event, and the worker carries on.
"""

from __future__ import annotations

import time
from typing import Any

import redis
import structlog

from server.errors import HearthError, InvalidRequest, ModelRuntimeError
from workers import protocol
from workers.backends.base import ChatInput, GenerationParams
from workers.celery_app import celery_app
from workers.hosting import hosted
from workers.streams import EventStream
from workers.task_metrics import TimedSink, set_outcome

log = structlog.get_logger(__name__)


def _stream(request_id: str) -> EventStream:
    state = hosted()
    return EventStream(state.redis, namespace=state.namespace, request_id=request_id)


def _run(kind: str, payload: dict[str, Any], work) -> None:
    request_id = payload["request_id"]
    model = payload["model"]
    # The request id (the client's, from the task headers) is bound by
    # workers.task_metrics; this is the completion's own id.
    structlog.contextvars.bind_contextvars(completion_id=request_id, model=model)
    stream = _stream(request_id)
    started = time.perf_counter()
    outcome = "ok"
    hosted().task_started()

    try:
        if stream.cancelled():
            outcome = "cancelled"
            stream.error({"code": "cancelled", "message": "cancelled by client"})
            return
        usage = work(stream)
        stream.done(usage)
    except HearthError as exc:
        outcome = exc.code
        stream.error(exc.to_dict())
    except redis.RedisError:
        # The stream itself is gone; nobody can be told. Log and move on.
        outcome = "stream_lost"
        log.exception("event stream unavailable")
    except Exception as exc:
        outcome = "model_error"
        log.exception("task failed")
        stream.error(ModelRuntimeError(f"the model failed: {exc}").to_dict())
    finally:
        hosted().task_finished()
        set_outcome(outcome)
        log.info(
            "task finished",
            task=kind,
            outcome=outcome,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        structlog.contextvars.unbind_contextvars("completion_id")


@celery_app.task(name=protocol.GENERATE_TASK)
def generate(payload: dict[str, Any]) -> None:
    def work(stream: EventStream) -> dict[str, int]:
        backend = hosted().chat_backend(payload["model"])
        try:
            params = GenerationParams.from_dict(payload.get("params", {}))
        except TypeError as exc:
            raise InvalidRequest(f"bad generation parameters: {exc}") from exc
        chat = ChatInput(messages=payload.get("messages"), prompt=payload.get("prompt"))
        usage = backend.generate(
            request_id=payload["request_id"],
            chat=chat,
            params=params,
            sink=TimedSink(stream, model=payload["model"]),
        )
        return usage.as_dict()

    _run("generate", payload, work)


@celery_app.task(name=protocol.EMBED_TASK)
def embed(payload: dict[str, Any]) -> None:
    def work(stream: EventStream) -> dict[str, int]:
        backend = hosted().embedding_backend(payload["model"])
        vectors, tokens = backend.embed(
            request_id=payload["request_id"], texts=payload["input"]
        )
        stream.embeddings(vectors)
        return {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens}

    _run("embed", payload, work)


@celery_app.task(name=protocol.PRUNE_TASK)
def prune_dead_workers() -> int:
    """Drop workers whose heartbeats stopped from the liveness sets."""
    state = hosted()
    horizon = time.time() - 10 * 60
    removed = 0
    for key in state.redis.scan_iter(match=protocol.live_key(state.namespace, "*")):
        removed += state.redis.zremrangebyscore(key, "-inf", horizon)
    if removed:
        log.info("pruned dead workers", removed=removed)
    return removed
