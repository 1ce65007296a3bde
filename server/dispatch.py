"""The API's side of the queue: admit, send, relay events, cancel.

A request is admitted only when some worker serves its model (else 503 at
once) and the model's queue is below its depth limit (else 429 with
Retry-After). Its events come back on a Redis stream (workers.protocol).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import redis.asyncio as aioredis
import structlog
from kombu.exceptions import OperationalError

from server.errors import (
    BrokerUnavailable,
    HearthError,
    NoLiveWorker,
    QueueFull,
    RequestTimeout,
)
from server.settings import Settings
from workers import protocol
from workers.celery_app import celery_app
from workers.specs import ModelSpec

log = structlog.get_logger(__name__)

_READ_BLOCK_MS = 1000


def new_request_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


class Dispatcher:
    def __init__(self, *, settings: Settings) -> None:
        self.settings = settings
        self.namespace = settings.namespace
        self.redis = aioredis.from_url(settings.stream_url)
        self._broker_redis = (
            aioredis.from_url(settings.broker_url)
            if settings.uses_redis_broker
            else None
        )

    async def close(self) -> None:
        await self.redis.aclose()
        if self._broker_redis is not None:
            await self._broker_redis.aclose()

    async def live_workers(self, model: str) -> int:
        horizon = time.time() - 3 * self.settings.worker_heartbeat_s
        key = protocol.live_key(self.namespace, model)
        return await self.redis.zcount(key, horizon, "+inf")

    async def broker_ping(self) -> None:
        if self._broker_redis is not None:
            await self._broker_redis.ping()
        else:
            await anyio.to_thread.run_sync(_amqp_ping)

    async def queue_depth(self, queue: str) -> int:
        if self._broker_redis is not None:
            return await self._broker_redis.llen(queue)
        return await anyio.to_thread.run_sync(_amqp_depth, queue)

    async def next_message(self, queue: str) -> bytes | None:
        """The raw message a worker would take next from ``queue``.

        Redis brokers only (None with RabbitMQ, or when the queue is empty):
        kombu pushes on the left and pops on the right.
        """
        if self._broker_redis is None:
            return None
        return await self._broker_redis.lindex(queue, -1)

    async def admit(self, spec: ModelSpec, priority: protocol.Priority) -> str:
        if not await self.live_workers(spec.name):
            raise NoLiveWorker(
                f"No worker is serving model {spec.name!r}. If Hearth has just "
                "started, it is still loading (GET /readyz shows when it is "
                "live); otherwise start one with "
                f"`hearth worker --models {spec.name}`. Then retry.",
                param="model",
                retry_after=5,
            )
        queue = protocol.queue_name(self.namespace, spec.name, priority)
        depth = await self.queue_depth(queue)
        if depth >= self.settings.queue_max_depth:
            raise QueueFull(
                f"The queue for model {spec.name!r} is full ({depth} waiting); "
                "retry after the delay in Retry-After.",
                retry_after=max(1, depth // 8),
            )
        return queue

    async def submit(
        self,
        *,
        task: str,
        spec: ModelSpec,
        payload: dict[str, Any],
        priority: protocol.Priority = "interactive",
    ) -> None:
        queue = await self.admit(spec, priority)

        def send() -> None:
            celery_app.send_task(
                task,
                args=[payload],
                queue=queue,
                headers={"request_id": payload["request_id"]},
                retry=False,
                # Results travel on event streams; touching the result
                # backend here would tie every send to its health.
                ignore_result=True,
            )

        try:
            await anyio.to_thread.run_sync(send)
        except (OperationalError, OSError) as exc:
            raise BrokerUnavailable(
                f"Cannot reach the broker ({exc}); check HEARTH_BROKER_URL."
            ) from exc
        log.debug("task sent", queue=queue, request_id=payload["request_id"])

    async def events(self, *, request_id: str, model: str) -> AsyncIterator[dict]:
        """Yield the request's events until its ``done``; raise its error."""
        key = protocol.events_key(self.namespace, request_id)
        last_id = "0-0"
        deadline = time.monotonic() + self.settings.request_timeout_s
        quiet_since = time.monotonic()

        while True:
            reply = await self.redis.xread({key: last_id}, block=_READ_BLOCK_MS)
            if not reply:
                try:
                    await self._check_still_served(model, quiet_since, deadline)
                except HearthError:
                    # Nobody will read the answer now: let a worker skip it.
                    await self.cancel(request_id)
                    raise
                continue
            quiet_since = time.monotonic()
            for entry_id, fields in reply[0][1]:
                last_id = entry_id
                event = protocol.decode_event(fields)
                if event["type"] == "error":
                    raise HearthError.from_dict(event["error"])
                yield event
                if event["type"] == "done":
                    await self.redis.delete(key)
                    return

    async def _check_still_served(
        self, model: str, quiet_since: float, deadline: float
    ) -> None:
        now = time.monotonic()
        if now > deadline:
            raise RequestTimeout(
                f"No answer from model {model!r} within "
                f"{self.settings.request_timeout_s:.0f}s; retry later."
            )
        silence = now - quiet_since
        if silence > 3 * self.settings.worker_heartbeat_s:
            if not await self.live_workers(model):
                raise NoLiveWorker(
                    f"The worker serving model {model!r} went away; retry.",
                    param="model",
                    retry_after=5,
                )

    async def cancel(self, request_id: str) -> None:
        key = protocol.cancel_key(self.namespace, request_id)
        await self.redis.set(key, 1, ex=protocol.CANCEL_TTL_S)


def _amqp_depth(queue: str) -> int:
    with celery_app.connection_for_write() as conn:
        channel = conn.default_channel
        try:
            return channel.queue_declare(queue=queue, passive=True).message_count
        except Exception as exc:  # amqp raises NotFound for a queue not yet declared
            if "NOT_FOUND" in str(exc) or "404" in str(exc):
                return 0
            raise


def _amqp_ping() -> None:
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
