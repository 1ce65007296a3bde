"""Helpers for the operations tests: scraping /metrics, reading stack logs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

T = TypeVar("T")

Samples = dict[tuple[str, frozenset], float]


def scrape(hearth_url: str) -> Samples:
    """Every sample of /metrics, keyed by (name, labels)."""
    reply = httpx.get(f"{hearth_url}/metrics", timeout=10)
    reply.raise_for_status()
    assert reply.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


def eventually(check: Callable[[], T], *, attempts: int = 50) -> T:
    """``check()`` once it stops raising AssertionError (records land after
    the response, so a scrape may be a moment early)."""
    for _ in range(attempts - 1):
        try:
            return check()
        except AssertionError:
            time.sleep(0.2)
    return check()


def stack_log(request: pytest.FixtureRequest, tmp_path_factory) -> Path:
    """The session stack's `hearth up` output: every child's JSON lines."""
    if request.config.getoption("--base-url"):
        pytest.skip("--base-url: the server's logs are on another host")
    found = sorted(tmp_path_factory.getbasetemp().glob("hearth-up*/up.log"))
    assert found, "the session's `hearth up` log is missing"
    return found[0]


def log_lines(path: Path) -> Iterator[dict]:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                yield json.loads(line)
            except ValueError:
                continue


def log_events(path: Path, name: str) -> list[dict]:
    """The JSON log lines whose event is ``name``."""
    return [line for line in log_lines(path) if line.get("event") == name]


def live_workers(hearth_url: str, model: str) -> list[dict]:
    workers = httpx.get(f"{hearth_url}/admin/workers").json()["data"]
    return [w for w in workers if w["alive"] and model in w["models"]]


def wait_until(check: Callable[[], object], what: str, attempts: int = 600) -> None:
    """Poll ``check`` every 0.2 s until it holds (two minutes by default)."""
    for _ in range(attempts):
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"never happened: {what}")


def job_events(lines: Iterator[str]) -> Iterator[tuple[int, str, dict]]:
    """(id, event, data) for each event of a job's SSE stream."""
    block: dict[str, str] = {}
    for line in lines:
        if line:
            key, _, value = line.partition(": ")
            block[key] = value
            continue
        if "data" in block:
            yield int(block["id"]), block["event"], json.loads(block["data"])
        block = {}
