"""``hearth models``: the running server's model registry, and its reload.

Both go through the admin API (like ``hearth status``), so they show the
catalog the API serves and the workers that are live for it.
"""

from __future__ import annotations

import json

import click

from server.status_cli import call, key_option, table, url_option

# The API waits up to 10 s for `hearth up` to report (server.model_registry).
RELOAD_TIMEOUT_S = 30.0


def _root(url: str) -> str:
    return url.rstrip("/").removesuffix("/v1")


def _source(model: dict) -> str:
    source = model.get("source") or {}
    if source.get("base_url"):
        return f"{source['base_url']} ({source.get('remote_model') or '-'})"
    return source.get("path") or "-"


def render_models(models: list[dict]) -> str:
    rows = [
        [
            m["name"],
            m["kind"],
            m["backend"],
            m["workers"],
            len(m["live_workers"]),
            _source(m),
        ]
        for m in models
    ]
    return table(["MODEL", "KIND", "BACKEND", "WORKERS", "LIVE", "SOURCE"], rows)


def render_reload(report: dict) -> str:
    source = report.get("models_file") or "no models file (bundled models only)"
    lines = [f"generation {report['generation']}: read {source}"]
    for what in ("added", "removed", "changed"):
        lines.append(f"{what}: {', '.join(report[what]) or '-'}")
    workers = report.get("workers")
    if workers is None:
        lines.append(
            "workers: not managed here (no `hearth up`); start or stop "
            "`hearth worker --models NAME` for the added and removed models"
        )
    elif workers.get("error"):
        lines.append(f"workers: unchanged, hearth up refused: {workers['error']}")
    elif workers.get("pending"):
        lines.append("workers: hearth up has not answered yet; see `hearth status`")
    else:
        started = ", ".join(workers["started"]) or "-"
        stopping = ", ".join(workers["stopping"]) or "-"
        lines.append(f"workers started: {started}")
        lines.append(f"workers stopping once idle: {stopping}")
    return "\n".join(lines)


@click.group(invoke_without_command=True)
@url_option
@key_option
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.pass_context
def models(ctx: click.Context, url: str, api_key: str | None, as_json: bool):
    """List the models the running server serves (name, kind, live workers)."""
    if ctx.invoked_subcommand is not None:
        return
    data = call("GET", _root(url), "/admin/models", api_key)["data"]
    click.echo(json.dumps(data, indent=2) if as_json else render_models(data))


@models.command()
@url_option
@key_option
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def reload(url: str, api_key: str | None, as_json: bool) -> None:
    """Re-read the models file: start workers for added models (under
    `hearth up`), stop those of removed ones once idle."""
    report = call(
        "POST",
        _root(url),
        "/admin/models/reload",
        api_key,
        timeout=RELOAD_TIMEOUT_S,
    )
    click.echo(json.dumps(report, indent=2) if as_json else render_reload(report))
