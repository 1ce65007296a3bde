"""The directory where ``hearth up``'s children share their metric samples.

prometheus-client's multiprocess mode: every process writes its samples to
memory-mapped files in one directory, and the API's /metrics reads them all.
It works on one machine only; in a cluster each pod serves its own.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_metrics_dir(data_dir: Path) -> Path:
    """An empty metrics directory for this run (or the one the user set).

    Sample files left by an earlier run would be counted again, so they go;
    nothing else in a directory the user named is touched.
    """
    given = os.environ.get(ENV)
    path = Path(given) if given else data_dir / "metrics"
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    return path
