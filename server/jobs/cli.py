"""``hearth jobs`` and ``hearth batch``: the jobs API from a terminal.

These talk to a running API over HTTP (``--url``, ``--api-key``), like any
client, so they work against a remote Hearth as well as a local one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import httpx

_url = click.option(
    "--url", envvar="HEARTH_URL", default="http://127.0.0.1:8000",
    show_default=True, help="The Hearth API (HEARTH_URL).",
)  # fmt: skip
_key = click.option(
    "--api-key", envvar="HEARTH_API_KEY", default=None,
    help="Bearer key (HEARTH_API_KEY); not needed on an open local server.",
)  # fmt: skip
_as_json = click.option("--json", "as_json", is_flag=True, help="Print raw JSON.")


class Api:
    def __init__(self, url: str, api_key: str | None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        root = url.rstrip("/").removesuffix("/v1")
        self.client = httpx.Client(base_url=root, headers=headers, timeout=60)

    def call(self, method: str, path: str, **kwargs) -> dict:
        try:
            reply = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise click.ClickException(
                f"cannot reach {self.client.base_url} ({exc}); is `hearth up` "
                "running, or is --url right?"
            ) from exc
        if reply.status_code >= 400:
            try:
                message = reply.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = reply.text[:300]
            raise click.ClickException(message)
        return reply.json()


def _when(stamp: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else "-"


@click.group()
def jobs() -> None:
    """List, inspect, cancel and retry durable jobs."""


@jobs.command("list")
@_url
@_key
@_as_json
@click.option("--state", default=None, help="queued, running, failed, ...")
@click.option("--type", "type_", default=None, help="chat, completion, embedding")
@click.option("--model", default=None)
@click.option("--limit", type=int, default=20, show_default=True)
def list_jobs(url, api_key, as_json, state, type_, model, limit) -> None:
    """Newest first; --state failed is the dead-letter view."""
    params = {"state": state, "type": type_, "model": model, "limit": limit}
    page = Api(url, api_key).call(
        "GET", "/v1/jobs", params={k: v for k, v in params.items() if v}
    )
    if as_json:
        click.echo(json.dumps(page, indent=2))
        return
    for job in page["data"]:
        error = (job["error"] or {}).get("code", "")
        click.echo(
            f"{job['id']}\t{job['state']:<9}\t{job['type']:<10}\t{job['model']}"
            f"\t{job['attempts']}/{job['max_attempts']}\t{_when(job['created_at'])}"
            f"\t{error}"
        )


@jobs.command("show")
@click.argument("job_id")
@_url
@_key
def show_job(job_id: str, url, api_key) -> None:
    """Everything about one job, as JSON."""
    click.echo(
        json.dumps(Api(url, api_key).call("GET", f"/v1/jobs/{job_id}"), indent=2)
    )


@jobs.command("cancel")
@click.argument("job_id")
@_url
@_key
def cancel_job(job_id: str, url, api_key) -> None:
    """Cancel a queued or running job."""
    job = Api(url, api_key).call("POST", f"/v1/jobs/{job_id}/cancel")
    click.echo(f"{job['id']}\t{job['state']}")


@jobs.command("retry")
@click.argument("job_id")
@_url
@_key
def retry_job(job_id: str, url, api_key) -> None:
    """Run a failed job again."""
    job = Api(url, api_key).call("POST", f"/v1/jobs/{job_id}/retry")
    click.echo(f"{job['id']}\t{job['state']}")


@click.group()
def batch() -> None:
    """OpenAI batches from JSONL files."""


_FINAL = {"completed", "failed", "expired", "cancelled"}


def _follow(api: Api, created: dict) -> dict:
    total = created["request_counts"]["total"]
    done_before = 0
    with click.progressbar(length=total, label=created["id"], file=None) as bar:
        current = created
        while current["status"] not in _FINAL:
            time.sleep(1)
            current = api.call("GET", f"/v1/batches/{created['id']}")
            counts = current["request_counts"]
            done = counts["completed"] + counts["failed"]
            bar.update(done - done_before)
            done_before = done
    return current


@batch.command("submit")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--endpoint", required=True,
    type=click.Choice(["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]),
)  # fmt: skip
@click.option("--completion-window", default="24h", show_default=True)
@click.option("--wait", is_flag=True, help="Show progress until the batch ends.")
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="With --wait, save the output file here.",
)  # fmt: skip
@_url
@_key
def submit_batch(path: Path, endpoint, completion_window, wait, output, url, api_key):
    """Upload PATH (JSONL, one request per line) and run it as a batch."""
    api = Api(url, api_key)
    with open(path, "rb") as handle:
        uploaded = api.call(
            "POST", "/v1/files",
            files={"file": (path.name, handle)}, data={"purpose": "batch"},
        )  # fmt: skip
    created = api.call(
        "POST", "/v1/batches",
        json={"input_file_id": uploaded["id"], "endpoint": endpoint,
              "completion_window": completion_window},
    )  # fmt: skip
    click.echo(f"{created['id']}\t{created['status']}\t{uploaded['id']}")
    if not wait:
        return
    final = _follow(api, created)
    counts = final["request_counts"]
    click.echo(
        f"{final['id']}\t{final['status']}\tcompleted={counts['completed']}"
        f"\tfailed={counts['failed']}\toutput={final['output_file_id']}"
        f"\terrors={final['error_file_id']}"
    )
    if output and final["output_file_id"]:
        reply = api.client.get(f"/v1/files/{final['output_file_id']}/content")
        output.write_bytes(reply.content)
    if final["status"] != "completed":
        raise SystemExit(1)
