"""Structured logging for every Hearth process, through structlog.

Each process calls ``configure_logging`` once at start; modules then log with
``structlog.get_logger(__name__)`` and pass ids as fields. Lines are JSON when
the log stream is not a terminal (so collectors can parse them), and rendered
for people when it is. Standard-library records (uvicorn, Celery, asyncpg) go
through the same renderer, so one process writes one format.
"""

from __future__ import annotations

import logging
import sys

import structlog


def _shared_processors(process: str) -> list[structlog.types.Processor]:
    def add_process(_logger, _method, event_dict):
        event_dict.setdefault("process", process)
        return event_dict

    return [
        # Request, task and model ids bound with bind_contextvars become fields.
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_process,
    ]


def configure_logging(*, level: str, json: bool | None, process: str) -> None:
    """Send this process's logs to stderr, as JSON lines or for a terminal.

    ``json=None`` picks JSON when stderr is not a TTY. Logs go to stderr so
    that stdout stays free for what scripts read, such as the ready line of
    ``hearth up``.
    """
    stream = sys.stderr
    as_json = (not stream.isatty()) if json is None else json
    shared = _shared_processors(process)
    renderer: structlog.types.Processor
    if as_json:
        renderer = structlog.processors.JSONRenderer()
        shared = [*shared, structlog.processors.format_exc_info]
    else:
        renderer = structlog.dev.ConsoleRenderer()

    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request at INFO; health polls would drown the rest.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(root.level, logging.WARNING))

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
