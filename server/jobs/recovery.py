"""The sweep beat runs every few seconds: nothing accepted is left behind.

1. Queued jobs past their deadline expire (and their webhooks are called).
2. Running jobs whose worker stopped beating (killed, lost its host) or
   that ran far past the request timeout go back to the outbox, with
   backoff, as a transient ``worker_lost`` failure; or fail (webhook too),
   if that was their last attempt. Their old message may still come back
   (Redis keeps it unacked until the visibility timeout); its claim then
   finds a newer attempt and does nothing.
3. Queued jobs sent long ago whose queue is empty lost their message (a
   broker that restarted without it, a worker killed between receiving
   and claiming it): they go back to the outbox.
4. The outbox is sent: rows never sent (the API crashed or the broker was
   down) and retries whose backoff is over.
5. Batches with no line left queued or running are finalized.

One sweep at a time, under an advisory lock; every step is also safe to
run twice, because every write is guarded by state and attempt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import structlog

from server.jobs import batches, outbox, states, store
from server.settings import Settings

log = structlog.get_logger(__name__)

_SWEEP_LOCK = 0x4A4F4253  # "JOBS"
# The API sends a new job's message itself; the sweep leaves it this long.
_OUTBOX_GRACE_S = 3.0
_OUTBOX_CHUNK = 1000
_STALE_FINALIZING_S = 60.0


@dataclass(kw_only=True)
class Probes:
    """The sweep's view of the outside: blocking calls, run in threads."""

    worker_alive: Callable[[str, str], bool]  # (model, worker id)
    queue_depth: Callable[[str], int]
    send: Callable[[list[outbox.Pending]], list[str]]


@dataclass
class SweepReport:
    expired: int = 0
    requeued: int = 0
    failed: int = 0
    resent: int = 0
    sent: int = 0
    finalized: list[str] = field(default_factory=list)
    # Jobs this sweep ended that have a webhook to call (once it is over).
    ended: list[store.Settled] = field(default_factory=list)

    def busy(self) -> bool:
        return any((self.expired, self.requeued, self.failed, self.resent,
                    self.sent, self.finalized))  # fmt: skip

    def summary(self) -> dict[str, int | list[str]]:
        """What to log: counts and batch ids, never webhook URLs."""
        return {k: v for k, v in vars(self).items() if k != "ended"}


async def _expire(conn: asyncpg.Connection, report: SweepReport) -> None:
    expired = await store.expire_due(conn)
    report.expired = len(expired)
    report.ended += [job for job in expired if job.webhook_url]


async def _requeue_lost(
    conn: asyncpg.Connection, settings: Settings, probes: Probes, report: SweepReport
) -> None:
    grace = 3 * settings.worker_heartbeat_s
    rows = await conn.fetch(
        "SELECT id, model, worker, attempt, max_attempts,"
        " started_at < now() - $2 * interval '1 second' AS overdue"
        " FROM jobs WHERE state = 'running'"
        " AND started_at < now() - $1 * interval '1 second'",
        grace, 2 * settings.request_timeout_s,
    )  # fmt: skip
    for row in rows:
        if not row["overdue"]:
            alive = await asyncio.to_thread(
                probes.worker_alive, row["model"], row["worker"] or ""
            )
            if alive:
                continue
        code = "timeout" if row["overdue"] else "worker_lost"
        error = {
            "code": code,
            "status": 503,
            "message": f"worker {row['worker']} stopped while running the job"
            if code == "worker_lost"
            else "the attempt ran past twice the request timeout",
        }
        last = row["attempt"] >= row["max_attempts"]
        retry_in = None if last else states.backoff_s(
            row["attempt"], base=settings.job_backoff_s, cap=settings.job_backoff_max_s
        )  # fmt: skip
        settled = await store.settle(
            conn, job_id=row["id"], attempt=row["attempt"], error=error,
            retry_in_s=retry_in,
        )  # fmt: skip
        if settled is None:
            continue
        if last:
            report.failed += 1
            if settled.webhook_url:
                report.ended.append(settled)
        else:
            report.requeued += 1
        log.warning(
            "running job recovered", job_id=row["id"], worker=row["worker"],
            attempt=row["attempt"], outcome=settled.state, reason=code,
        )  # fmt: skip


async def _resend_lost(
    conn: asyncpg.Connection, settings: Settings, probes: Probes, report: SweepReport
) -> None:
    queues = await conn.fetch(
        "SELECT DISTINCT queue FROM jobs WHERE state = 'queued'"
        " AND sent_at < now() - $1 * interval '1 second'",
        settings.job_resend_after_s,
    )
    for row in queues:
        depth = await asyncio.to_thread(probes.queue_depth, row["queue"])
        if depth:
            continue  # its message may still be waiting in line
        count = await conn.fetchval(
            "WITH r AS (UPDATE jobs SET sent_at = NULL WHERE state = 'queued'"
            " AND queue = $1 AND sent_at < now() - $2 * interval '1 second'"
            " RETURNING 1) SELECT count(*) FROM r",
            row["queue"], settings.job_resend_after_s,
        )  # fmt: skip
        report.resent += count
        log.warning("queued jobs without a message", queue=row["queue"], jobs=count)


async def _send_outbox(
    conn: asyncpg.Connection, probes: Probes, report: SweepReport
) -> None:
    rows = await conn.fetch(
        "SELECT id, attempt, queue FROM jobs WHERE state = 'queued'"
        " AND sent_at IS NULL AND CASE WHEN not_before IS NULL"
        "   THEN created_at < now() - $1 * interval '1 second'"
        "   ELSE not_before <= now() END"
        " ORDER BY created_at LIMIT $2",
        _OUTBOX_GRACE_S, _OUTBOX_CHUNK,
    )  # fmt: skip
    if not rows:
        return
    messages = [outbox.pending(dict(r)) for r in rows]
    sent = await asyncio.to_thread(probes.send, messages)
    await store.mark_sent(conn, sent)
    report.sent = len(sent)


async def _finalize_batches(
    conn: asyncpg.Connection, folder: Path, report: SweepReport
) -> None:
    rows = await conn.fetch(
        "SELECT id FROM batches b WHERE (status IN ('in_progress', 'cancelling')"
        "  OR (status = 'finalizing' AND finalizing_at < now() - $1 *"
        "      interval '1 second'))"
        " AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.batch_id = b.id"
        "   AND j.state IN ('queued', 'running'))",
        _STALE_FINALIZING_S,
    )
    for row in rows:
        if await batches.finalize_if_done(conn, batch_id=row["id"], folder=folder):
            report.finalized.append(row["id"])


async def sweep(
    conn: asyncpg.Connection, *, settings: Settings, probes: Probes, folder: Path
) -> SweepReport | None:
    """One pass; None if another sweep holds the lock."""
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _SWEEP_LOCK):
        return None
    report = SweepReport()
    try:
        await _expire(conn, report)
        await _requeue_lost(conn, settings, probes, report)
        await _resend_lost(conn, settings, probes, report)
        await _send_outbox(conn, probes, report)
        await _finalize_batches(conn, folder, report)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _SWEEP_LOCK)
    return report
