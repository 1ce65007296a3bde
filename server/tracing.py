"""OpenTelemetry tracing from the API into the workers: off unless asked.

On when the standard variables ask for it: ``OTEL_EXPORTER_OTLP_ENDPOINT``
(or ``..._TRACES_ENDPOINT``) set, or ``OTEL_TRACES_EXPORTER`` naming
``otlp`` or ``console``; ``OTEL_SDK_DISABLED=true`` wins. The exporter reads
the rest of the ``OTEL_*`` variables itself (headers, protocol, service
name). FastAPI requests become server spans; Celery carries the trace in
the task's headers, so a worker's task span is a child of the request that
sent it. Needs the ``otel`` extra: ``pip install 'hearth[otel]'``.
"""

from __future__ import annotations

import os

import structlog

log = structlog.get_logger(__name__)

_configured = False


def tracing_requested() -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").lower()
    if exporter == "none":
        return False
    return exporter in ("otlp", "console") or any(
        os.environ.get(name)
        for name in (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        )
    )


def _exporter():
    if os.environ.get("OTEL_TRACES_EXPORTER", "").lower() == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter,
    )

    return OTLPSpanExporter()


def configure_tracing(*, process: str, exporter=None) -> bool:
    """Install a tracer provider and Celery's instrumentation, once.

    ``exporter`` replaces the one the variables name (tests pass an
    in-memory one). Returns whether tracing is on.
    """
    global _configured
    if _configured:
        return True
    if exporter is None and not tracing_requested():
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "tracing asked for but OpenTelemetry is not installed; "
            "pip install 'hearth[otel]'"
        )
        return False

    name = os.environ.get("OTEL_SERVICE_NAME") or f"hearth-{process}"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(exporter or _exporter()))
    trace.set_tracer_provider(provider)
    CeleryInstrumentor().instrument()
    _configured = True
    log.info("tracing on", service=name)
    return True


def instrument_app(app) -> None:
    """Trace the app's requests, if tracing is on in this process."""
    if not configure_tracing(process="api"):
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics")
