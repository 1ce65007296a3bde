"""Send job task messages: the second half of the outbox.

A message carries only the job id and the attempt it may start; the request
itself stays in the job row. Sending is synchronous kombu work: the API
calls it from a thread, the sweep from a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import structlog
from kombu.exceptions import OperationalError

from server.errors import BrokerUnavailable
from workers import protocol
from workers.celery_app import celery_app

log = structlog.get_logger(__name__)


@dataclass(frozen=True, kw_only=True)
class Pending:
    """A job whose next attempt needs a message."""

    job_id: str
    attempt: int
    queue: str


def pending(row: dict) -> Pending:
    return Pending(job_id=row["id"], attempt=row["attempt"] + 1, queue=row["queue"])


def send(messages: Iterable[Pending]) -> list[str]:
    """Send each message; returns the ids sent. Stops at the first broker
    failure (the rest stay in the outbox for the sweep) and raises
    BrokerUnavailable only if nothing could be sent."""
    sent: list[str] = []
    try:
        with celery_app.producer_or_acquire() as producer:
            for message in messages:
                celery_app.send_task(
                    protocol.JOB_TASK,
                    args=[{"job_id": message.job_id, "attempt": message.attempt}],
                    queue=message.queue,
                    headers={"job_id": message.job_id},
                    producer=producer,
                    retry=False,
                    # Outcomes live in the job row: never subscribe to a
                    # result (which also breaks for good once Redis blinks).
                    ignore_result=True,
                )
                sent.append(message.job_id)
    except (OperationalError, OSError) as exc:
        log.warning("job messages not sent", sent=len(sent), error=str(exc))
        if not sent:
            raise BrokerUnavailable(
                f"Cannot reach the broker ({exc}); the job is saved and will be "
                "sent when the broker is back."
            ) from exc
    return sent
