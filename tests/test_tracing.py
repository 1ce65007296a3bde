"""OpenTelemetry: off by default; when on, a request's trace reaches the task.

The traced half runs in a child interpreter: a tracer provider and Celery's
instrumentation are process-wide and must not leak into other tests. Its
worker is Celery's in-process test worker on the memory transport, so the
trace context really travels in a message's headers.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from server.tracing import tracing_requested
from tests.stackutil import REPO

PROBE = r"""
import json, time
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from server.tracing import configure_tracing

exporter = InMemorySpanExporter()
assert configure_tracing(process="probe", exporter=exporter)

from celery.contrib.testing.worker import start_worker
from server.app import create_app
from server.settings import Settings
from workers.celery_app import celery_app

celery_app.conf.update(broker_url="memory://", result_backend=None)

@celery_app.task(name="probe.echo")
def echo(value):
    return value

app = create_app(Settings())
with start_worker(celery_app, pool="threads", perform_ping_check=False):
    assert TestClient(app).get("/ui").status_code == 200
    with trace.get_tracer("probe").start_as_current_span("request"):
        celery_app.send_task("probe.echo", args=[1], queue="celery")
    for _ in range(100):
        trace.get_tracer_provider().force_flush()
        spans = exporter.get_finished_spans()
        if any(s.name == "run/probe.echo" for s in spans):
            break
        time.sleep(0.1)
print(json.dumps([
    {"name": s.name, "trace": s.context.trace_id,
     "route": (s.attributes or {}).get("http.route")}
    for s in spans
]))
"""


@pytest.mark.parametrize(
    "env, wanted",
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
                "OTEL_SDK_DISABLED": "true",
            },
            False,
        ),
    ],
)
def test_tracing_is_off_unless_the_otel_variables_ask(monkeypatch, env, wanted):
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_TRACES_EXPORTER",
        "OTEL_SDK_DISABLED",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    assert tracing_requested() is wanted


def test_a_task_span_continues_the_senders_trace():
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    spans = json.loads(result.stdout.strip().splitlines()[-1])
    by_name = {span["name"]: span for span in spans}

    assert any(span["route"] == "/ui" for span in spans)
    sent = by_name["request"]["trace"]
    assert by_name["apply_async/probe.echo"]["trace"] == sent
    assert by_name["run/probe.echo"]["trace"] == sent
