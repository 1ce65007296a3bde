"""``hearth beat``: Celery beat for periodic maintenance."""

from __future__ import annotations

from server.logs import configure_logging
from server.settings import Settings
from workers.celery_app import celery_app, configure_celery


def run_beat(settings: Settings) -> None:
    configure_logging(level=settings.log_level, json=settings.log_json, process="beat")
    configure_celery(settings)
    schedule = settings.data_dir / "celerybeat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    celery_app.Beat(schedule=str(schedule), loglevel=settings.log_level).run()
