"""Chaos run: mixed interactive and batch load while workers are killed.

Starts its own API, workers and beat (system Redis and PostgreSQL on
loopback by default), then for ``--duration`` seconds submits embedding
jobs at batch priority and batches of embedding lines, sends interactive
embedding and chat requests and times them, and SIGKILLs a random worker
every ``--kill-every`` seconds (restarting it). Then it waits for every
accepted job and prints accepted, succeeded, failed, lost (never finished)
and duplicated (a result written more than once) counts, and interactive
latency p50/p99 while the batch work drained.

    python -m bench.chaos --duration 180
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import signal
import statistics
import tempfile
import threading
import time
from pathlib import Path

import asyncpg
import httpx
import redis

from tests.stackutil import Cluster, create_database, drop_database

CHAT = "smollm2-135m-instruct"
EMBED = "all-minilm-l6-v2"


class Load:
    def __init__(self, url: str) -> None:
        self.url = url
        self.jobs: list[str] = []
        self.batches: list[str] = []
        self.latencies: list[float] = []
        # By status: with one worker per model, a killed worker's model is
        # 503 (answered at once) until its replacement has loaded.
        self.interactive_errors: dict[int, int] = {}
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def submit_jobs(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            n = 0
            while not self.stop.is_set():
                body = {"request": {"model": EMBED, "input": [f"chaos {n}"]},
                        "priority": "background"}  # fmt: skip
                reply = client.post("/v1/jobs", json=body)
                if reply.status_code == 202:
                    with self.lock:
                        self.jobs.append(reply.json()["id"])
                n += 1
                time.sleep(0.05)

    def submit_batches(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self.stop.is_set():
                lines = "".join(
                    json.dumps({"custom_id": f"l{i}", "method": "POST",
                                "url": "/v1/embeddings",
                                "body": {"model": EMBED, "input": f"line {i}"}})
                    + "\n" for i in range(200)
                )  # fmt: skip
                upload = client.post(
                    "/v1/files",
                    files={"file": ("c.jsonl", io.BytesIO(lines.encode()))},
                    data={"purpose": "batch"},
                )
                batch = client.post(
                    "/v1/batches",
                    json={"input_file_id": upload.json()["id"],
                          "endpoint": "/v1/embeddings"},
                )  # fmt: skip
                if batch.status_code == 200:
                    with self.lock:
                        self.batches.append(batch.json()["id"])
                self.stop.wait(15)

    def interactive(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self.stop.is_set():
                started = time.perf_counter()
                reply = client.post(
                    "/v1/embeddings", json={"model": EMBED, "input": ["hello"]}
                )
                if reply.status_code == 200:
                    self.latencies.append((time.perf_counter() - started) * 1000)
                else:
                    code = reply.status_code
                    self.interactive_errors[code] = (
                        self.interactive_errors.get(code, 0) + 1
                    )
                time.sleep(0.1)


def _kill_loop(cluster: Cluster, load: Load, every: float, stats: dict) -> None:
    rng = random.Random(7)
    while not load.stop.wait(every):
        workers = [
            p for p in cluster.processes.started
            if p.name.startswith("worker") and p.popen.poll() is None
        ]  # fmt: skip
        if not workers:
            continue
        victim = rng.choice(workers)
        victim.stop(signal.SIGKILL)
        stats["kills"] += 1
        model = EMBED if EMBED in victim.name else CHAT
        cluster.processes.start(
            f"worker-{model}-r{stats['kills']}", "worker", "--models", model
        )


async def _outcomes(database_url: str, ids: list[str]) -> dict[str, tuple[str, int]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT j.id, j.state, (SELECT count(*) FROM job_events e"
            "  WHERE e.job_id = j.id AND e.kind = 'state'"
            "  AND e.data->>'state' = 'succeeded') AS writes"
            " FROM jobs j WHERE j.id = ANY($1::text[])",
            ids,
        )
    finally:
        await conn.close()
    return {r["id"]: (r["state"], r["writes"]) for r in rows}


def _batch_line_ids(database_url: str, batch_ids: list[str]) -> list[str]:
    async def fetch() -> list[str]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                "SELECT id FROM jobs WHERE batch_id = ANY($1::text[])", batch_ids
            )
        finally:
            await conn.close()
        return [r["id"] for r in rows]

    return asyncio.run(fetch())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=180)
    parser.add_argument("--kill-every", type=float, default=20)
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument(
        "--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres"
    )
    args = parser.parse_args()

    database_url = create_database(args.postgres)
    logdir = Path(tempfile.mkdtemp(prefix="hearth-chaos-"))
    cluster = Cluster.start(
        logdir, broker_url=args.broker_url, database_url=database_url,
        models=[EMBED, CHAT],
        extra_env={"HEARTH_JOB_SWEEP_S": "1", "HEARTH_JOB_RESEND_AFTER_S": "10",
                   "HEARTH_JOB_BACKOFF_S": "0.5", "HEARTH_JOB_MAX_ATTEMPTS": "10"},
    )  # fmt: skip
    cluster.processes.start("beat", "beat")
    load = Load(cluster.url)
    stats = {"kills": 0}
    threads = [
        threading.Thread(target=load.submit_jobs),
        threading.Thread(target=load.submit_batches),
        threading.Thread(target=load.interactive),
        threading.Thread(
            target=_kill_loop, args=(cluster, load, args.kill_every, stats)
        ),
    ]
    try:
        for thread in threads:
            thread.start()
        time.sleep(args.duration)
        load.stop.set()
        for thread in threads:
            thread.join()

        ids = load.jobs + _batch_line_ids(database_url, load.batches)
        deadline = time.monotonic() + 300
        while True:
            outcomes = asyncio.run(_outcomes(database_url, ids))
            active = sum(s in ("queued", "running") for s, _ in outcomes.values())
            if not active or time.monotonic() > deadline:
                break
            time.sleep(2)

        states = [state for state, _ in outcomes.values()]
        lat = sorted(load.latencies)
        report = {
            "duration_s": args.duration,
            "workers_killed": stats["kills"],
            "accepted": len(ids),
            "succeeded": states.count("succeeded"),
            "failed": states.count("failed"),
            "lost": len(ids) - len(outcomes) + active,
            "duplicated": sum(writes > 1 for _, writes in outcomes.values()),
            "batches": len(load.batches),
            "interactive_requests": len(lat),
            "interactive_errors": load.interactive_errors,
            "interactive_p50_ms": round(statistics.median(lat), 1) if lat else None,
            "interactive_p99_ms": round(lat[int(0.99 * (len(lat) - 1))], 1)
            if lat
            else None,
        }
        for name, value in report.items():
            print(f"{name:>22}: {value}")
    finally:
        cluster.stop()
        client = redis.Redis.from_url(args.broker_url)
        for pattern in (
            f"{cluster.namespace}*",
            f"_kombu.binding*.{cluster.namespace}.*",
        ):
            for key in client.scan_iter(match=pattern):
                client.delete(key)
        client.delete("unacked", "unacked_index")
        client.close()
        drop_database(database_url)


if __name__ == "__main__":
    main()
