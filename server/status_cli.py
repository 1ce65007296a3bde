"""``hearth status`` and ``hearth top``: queues and workers, as tables.

Both read the admin API of a running server, so they show what the API
sees, whichever machine the workers are on.
"""

from __future__ import annotations

import time

import click
import httpx


class StatusError(click.ClickException):
    """Printed by click as ``Error: ...`` with exit code 1."""


def call(
    method: str, url: str, path: str, api_key: str | None, *, timeout: float = 5
) -> dict:
    """One admin API call; its JSON body. Errors become ``Error: ...``."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        reply = httpx.request(method, f"{url}{path}", headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise StatusError(
            f"cannot reach Hearth at {url} ({exc}); is it running? "
            "Pass --url if it listens elsewhere."
        ) from exc
    if reply.status_code in (401, 403):
        raise StatusError(
            f"{url}{path} refused the key ({reply.status_code}); pass an admin "
            "key with --api-key or HEARTH_API_KEY."
        )
    if reply.is_error:
        try:
            message = reply.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = reply.text[:200]
        raise StatusError(f"{method} {path} answered {reply.status_code}: {message}")
    return reply.json()


def _get(url: str, path: str, api_key: str | None) -> list[dict]:
    return call("GET", url, path, api_key)["data"]


def table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]
    return "\n".join(lines)


def render_status(url: str, api_key: str | None) -> str:
    queues = _get(url, "/admin/queues", api_key)
    workers = _get(url, "/admin/workers", api_key)
    queue_rows = [
        [q["name"], q["depth"], q["consumers"], f"{q['oldest_age_s']:.1f}"]
        for q in queues
    ]
    worker_rows = [
        [
            w["id"],
            ",".join(w["models"]),
            w["state"],
            w["inflight"],
            f"{w['uptime_s']:.0f}",
            ";".join(t["task"] for t in w["current_tasks"]) or "-",
        ]
        for w in workers
    ]
    return "\n\n".join(
        [
            table(["QUEUE", "DEPTH", "CONSUMERS", "OLDEST_S"], queue_rows),
            table(
                ["WORKER", "MODELS", "STATE", "INFLIGHT", "UPTIME_S", "TASKS"],
                worker_rows or [["(none)", "", "", "", "", ""]],
            ),
        ]
    )


url_option = click.option(
    "--url",
    default="http://127.0.0.1:8000",
    envvar="HEARTH_URL",
    show_default=True,
    help="The Hearth API (without /v1).",
)
key_option = click.option(
    "--api-key", envvar="HEARTH_API_KEY", default=None, help="An admin key."
)


@click.command()
@url_option
@key_option
def status(url: str, api_key: str | None) -> None:
    """Print queues and workers as tables."""
    click.echo(render_status(url.rstrip("/").removesuffix("/v1"), api_key))


@click.command()
@url_option
@key_option
@click.option("--interval", type=float, default=2.0, show_default=True)
def top(url: str, api_key: str | None, interval: float) -> None:
    """Refresh the status tables until Ctrl-C."""
    url = url.rstrip("/").removesuffix("/v1")
    try:
        while True:
            text = render_status(url, api_key)
            click.clear()
            click.echo(f"hearth top  {url}  {time.strftime('%H:%M:%S')}\n")
            click.echo(text)
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
