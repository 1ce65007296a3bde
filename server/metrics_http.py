"""A worker's own /metrics port, for clusters.

Under ``hearth up`` the API's /metrics already covers the workers (one
multiprocess directory). In a cluster a worker pod has no HTTP server, so
with ``HEARTH_WORKER_METRICS_PORT`` set it serves its samples on that port
for Prometheus to scrape per pod.
"""

from __future__ import annotations

import structlog
from prometheus_client import start_http_server

log = structlog.get_logger(__name__)


def serve_worker_metrics(*, host: str, port: int | None) -> None:
    if port is None:
        return
    start_http_server(port, addr=host)
    log.info("metrics served", host=host, port=port)
