"""The ``hearth`` command."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from server.errors import HearthError

_common = [
    click.option("--data-dir", type=click.Path(path_type=Path), default=None),
    click.option("--broker-url", default=None, help="Redis, Valkey or AMQP URL."),
    click.option("--redis-url", default=None, help="Redis for results/streams."),
    click.option("--database-url", default=None, help="PostgreSQL URL."),
    click.option("--models-file", type=click.Path(path_type=Path), default=None),
    click.option("--device", default=None, help="auto, cpu, cuda or cuda:N."),
]


def common_options(func):
    for option in reversed(_common):
        func = option(func)
    return func


def _configure(**values):
    from server.settings import configure

    try:
        return configure(**values)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def cli() -> None:
    """Hearth: an OpenAI-compatible server for local models on Celery."""


@cli.command()
@common_options
@click.option("--host", default=None)
@click.option("--port", type=int, default=None)
@click.option(
    "--allow-insecure-bind",
    is_flag=True,
    default=None,
    help="Serve on a non-loopback address without API keys.",
)
def up(**values) -> None:
    """Run everything on this machine: broker, database, API, workers, beat."""
    from server.supervisor import run_supervisor

    settings = _configure(**values)
    sys.exit(run_supervisor(settings))


@cli.command()
@common_options
@click.option("--host", default=None)
@click.option("--port", type=int, default=None)
@click.option("--allow-insecure-bind", is_flag=True, default=None)
def api(**values) -> None:
    """Run the HTTP API (needs a broker and a database)."""
    from server.serve import run_api

    run_api(_configure(**values))


@cli.command()
@common_options
@click.option("--models", required=True, help="Comma-separated model names to host.")
@click.option("--concurrency", type=int, default=None)
@click.option("--hostname", default=None, help="Celery node name.")
def worker(models: str, concurrency: int | None, hostname: str | None, **values):
    """Run a model worker that hosts MODELS and consumes their queues."""
    from workers.worker import run_worker

    settings = _configure(worker_concurrency=concurrency, **values)
    names = [name.strip() for name in models.split(",") if name.strip()]
    run_worker(settings, model_names=names, hostname=hostname)


@cli.command()
@common_options
def beat(**values) -> None:
    """Run Celery beat (periodic maintenance)."""
    from workers.beat import run_beat

    run_beat(_configure(**values))


@cli.command()
@common_options
def migrate(**values) -> None:
    """Apply database migrations and exit."""
    import asyncio

    from server.db import migrate_database

    settings = _configure(**values)
    applied = asyncio.run(migrate_database(settings.database_url))
    click.echo(f"applied {len(applied)} migration(s)")


def _add_security_commands() -> None:
    from auth.cli import audit, keys, limits

    for command in (keys, limits, audit):
        cli.add_command(command)


_add_security_commands()


def _add_job_commands() -> None:
    from server.jobs.cli import batch, jobs

    for command in (jobs, batch):
        cli.add_command(command)


_add_job_commands()


def _add_operations_commands() -> None:
    from server.models_cli import models
    from server.status_cli import status, top

    for command in (status, top, models):
        cli.add_command(command)


_add_operations_commands()


def _add_retrieval_commands() -> None:
    from retrieval.cli import ask, ingest, search

    for command in (ingest, ask, search):
        cli.add_command(command)


_add_retrieval_commands()


def main() -> None:
    try:
        cli(standalone_mode=True)
    except HearthError as exc:
        click.echo(f"Error: {exc.message}", err=True)
        sys.exit(1)
