"""``hearth api``: the FastAPI app under uvicorn."""

from __future__ import annotations

import uvicorn

from server.bind_policy import check_bind
from server.logs import configure_logging
from server.settings import Settings


def run_api(settings: Settings) -> None:
    configure_logging(level=settings.log_level, json=settings.log_json, process="api")
    check_bind(settings)

    from server.app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
