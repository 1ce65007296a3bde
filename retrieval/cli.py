"""``hearth ingest``, ``hearth ask`` and ``hearth search``: collections from a
terminal.

Like ``hearth jobs``, these are HTTP clients of a running API
(``--base-url``, ``--api-key``): files go up through the same upload route
as any client's, and the commands work against a remote Hearth as well as
a local one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import click
import httpx

from server.status_cli import table

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
# One upload request carries at most this many files or bytes.
_GROUP_FILES = 32
_GROUP_BYTES = 64 * 1024 * 1024
_POLL_S = 0.5
# Statuses that refuse an upload for what is in it, not for who sends it.
_FILE_REFUSED = {400, 413}
_PAGE = 1000
_SNIPPET = 90

_base_url = click.option(
    "--base-url", envvar="HEARTH_BASE_URL", default=DEFAULT_BASE_URL,
    show_default=True, help="The Hearth API (HEARTH_BASE_URL).",
)  # fmt: skip
_api_key = click.option(
    "--api-key", envvar="HEARTH_API_KEY", default=None,
    help="Bearer key (HEARTH_API_KEY); not needed on an open local server.",
)  # fmt: skip
_collection = click.option(
    "--collection", "-c", required=True, help="Collection name or id."
)
_mode = click.option(
    "--mode", type=click.Choice(["hybrid", "dense", "lexical"]), default="hybrid",
    show_default=True,
)  # fmt: skip


class CliError(click.ClickException):
    """Printed by click as ``Error: ...``, exit code 1; ``code`` is the
    API's error code when the server refused."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class Client:
    """The collections API, with errors turned into sentences for a person."""

    def __init__(self, base_url: str, api_key: str | None) -> None:
        root = base_url.rstrip("/").removesuffix("/v1")
        self.base = f"{root}/v1"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        timeout = httpx.Timeout(60, write=600)
        self.http = httpx.Client(base_url=self.base, headers=headers, timeout=timeout)

    def call(self, method: str, path: str, **kwargs) -> dict:
        try:
            reply = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self.unreachable(exc) from exc
        self.check(reply)
        return reply.json()

    def unreachable(self, exc: Exception) -> CliError:
        return CliError(
            f"cannot reach Hearth at {self.base} ({type(exc).__name__}: {exc}); "
            "start it with `hearth up`, or pass --base-url where it runs."
        )

    def check(self, reply: httpx.Response) -> None:
        if reply.status_code < 400:
            return
        try:
            error = reply.json()["error"]
            message, code = error["message"], error.get("code")
        except (ValueError, KeyError, TypeError):
            message, code = reply.text[:300] or reply.reason_phrase, None
        if reply.status_code == 401:
            message += " Pass a key with --api-key or HEARTH_API_KEY."
        raise CliError(message, code)

    def collection(self, ref: str) -> dict:
        """The collection named ``ref``, or an error saying how to make one."""
        try:
            return self.call("GET", f"/collections/{ref}")
        except CliError as exc:
            if exc.code != "not_found":
                raise
            raise CliError(
                f"no collection {ref!r} at {self.base}; create it by ingesting "
                f"files: hearth ingest PATH --collection {ref}",
                "not_found",
            ) from exc

    def pages(self, path: str, **params) -> Iterator[dict]:
        after = None
        while True:
            query = {**params, "limit": _PAGE, **({"after": after} if after else {})}
            page = self.call("GET", path, params=query)
            yield from page["data"]
            if not page["has_more"] or not page["data"]:
                return
            after = page["data"][-1]["id"]


# ingest


@dataclass
class _Ingest:
    """What happened to each local file."""

    files: list[tuple[Path, str]]
    documents: dict[str, list[str]] = field(default_factory=dict)  # id -> names
    actions: dict[str, str] = field(default_factory=dict)  # name -> action
    failed: dict[str, str] = field(default_factory=dict)  # name -> reason


def _walk(paths: tuple[Path, ...]) -> list[tuple[Path, str]]:
    """(path, name to upload under) for every file; a folder's files are
    named by the folder's name and their path inside it, so equal names in
    two subfolders stay two documents, wherever the command is run from.
    Hidden files and folders inside a folder are skipped."""
    found: dict[Path, str] = {}
    for given in paths:
        if given.is_file():
            found.setdefault(given.resolve(), given.name)
            continue
        top = given.resolve().name
        for path in sorted(given.rglob("*")):
            inside = path.relative_to(given)
            if path.is_file() and not any(p.startswith(".") for p in inside.parts):
                found.setdefault(path.resolve(), f"{top}/{inside.as_posix()}")
    return [(path, name) for path, name in found.items()]


def _groups(files: list[tuple[Path, str]]) -> Iterator[list[tuple[Path, str]]]:
    group: list[tuple[Path, str]] = []
    size = 0
    for path, name in files:
        length = path.stat().st_size
        if group and (len(group) >= _GROUP_FILES or size + length > _GROUP_BYTES):
            yield group
            group, size = [], 0
        group.append((path, name))
        size += length
    if group:
        yield group


def _upload(client: Client, collection: str, group, run: _Ingest) -> None:
    with ExitStack() as stack:
        parts = []
        for path, name in group:
            try:
                handle = stack.enter_context(path.open("rb"))
            except OSError as exc:
                run.failed[name] = f"cannot read {str(path)!r}: {exc.strerror or exc}"
                continue
            parts.append(("file", (name, handle)))
        if not parts:
            return
        try:
            reply = client.http.post(f"/collections/{collection}/documents",
                                     files=parts)  # fmt: skip
        except httpx.HTTPError as exc:
            raise client.unreachable(exc) from exc
    if reply.status_code in _FILE_REFUSED and len(parts) > 1:
        # One bad file (too large, say) refuses the whole request: send the
        # files one by one to find it, and keep the others.
        for path, name in group:
            if name not in run.failed:
                _upload(client, collection, [(path, name)], run)
        return
    try:
        client.check(reply)
    except CliError as exc:
        if reply.status_code not in _FILE_REFUSED:
            raise  # the key, the collection or the server: not this file
        run.failed[parts[0][1][0]] = f"{exc.message} (upload refused)"
        return
    names = [name for _, (name, _) in parts]
    for name, doc in zip(names, reply.json()["data"], strict=True):
        run.documents.setdefault(doc["id"], []).append(name)
        run.actions[name] = doc["action"]


def _wait(client: Client, collection: str, run: _Ingest, timeout: float) -> None:
    from tqdm import tqdm

    mine = set(run.documents)
    deadline = time.monotonic() + timeout
    with tqdm(total=len(mine), unit="doc", desc="indexing", disable=None) as bar:
        while True:
            pending = {
                doc["id"]
                for state in ("queued", "processing")
                for doc in client.pages(
                    f"/collections/{collection}/documents", state=state
                )
            } & mine
            bar.update(len(mine) - len(pending) - bar.n)
            if not pending:
                return
            if time.monotonic() > deadline:
                raise CliError(
                    f"{len(pending)} of {len(mine)} documents were still being "
                    f"indexed after {timeout:.0f}s; check the workers with "
                    "`hearth status`, then run the same command again (files "
                    "already indexed are skipped)."
                )
            time.sleep(_POLL_S)


def _summary(client: Client, collection: dict, run: _Ingest) -> list[str]:
    chunks = 0
    for doc in client.pages(f"/collections/{collection['id']}/documents"):
        names = run.documents.get(doc["id"], [])
        if doc["state"] == "failed":
            error = doc["error"] or {}
            reason = f"{error.get('message', 'failed')} ({error.get('code', '?')})"
            run.failed.update(dict.fromkeys(names, reason))
        elif names:
            chunks += doc["chunk_count"] * len(names)
    counts = {
        action: sum(
            1 for n, a in run.actions.items() if a == action and n not in run.failed
        )
        for action in ("created", "replaced", "unchanged")
    }
    indexed = len(run.files) - len(run.failed)
    lines = [
        f"{collection['name']} ({collection['id']}): {_count(len(run.files), 'file')}, "
        f"{indexed} indexed ({counts['created']} new, {counts['replaced']} "
        f"replaced, {counts['unchanged']} unchanged), {len(run.failed)} failed, "
        f"{chunks} chunks"
    ]
    if run.failed:
        lines.append("failed:")
        lines += [f"  {name}: {reason}" for name, reason in sorted(run.failed.items())]
    return lines


@click.command()
@click.argument(
    "paths", nargs=-1, required=True,
    type=click.Path(exists=True, path_type=Path),
)  # fmt: skip
@_collection
@click.option(
    "--timeout", type=float, default=3600, show_default=True,
    help="Seconds to wait for indexing before giving up.",
)  # fmt: skip
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait until every document is indexed or failed.")  # fmt: skip
@_base_url
@_api_key
def ingest(paths, collection, timeout, wait, base_url, api_key) -> None:
    """Upload files and folders (recursively) into a collection, created if
    missing; wait for indexing and report each file that failed."""
    client = Client(base_url, api_key)
    try:
        found = client.collection(collection)
    except CliError as exc:
        if exc.code != "not_found":
            raise
        found = client.call("POST", "/collections", json={"name": collection})
        click.echo(f"created collection {collection!r} ({found['id']})")

    run = _Ingest(files=_walk(paths))
    if not run.files:
        raise CliError(f"no files under {', '.join(map(str, paths))}; nothing to do.")
    for group in _groups(run.files):
        _upload(client, found["id"], group, run)
    if not wait:
        click.echo(f"uploaded {len(run.documents)} documents; not waiting")
        return

    _wait(client, found["id"], run, timeout)
    for line in _summary(client, found, run):
        click.echo(line)
    if run.failed:
        raise CliError(f"{len(run.failed)} of {len(run.files)} files failed.")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# search


def _where(hit: dict) -> str:
    parts = []
    if hit.get("page_start"):
        start, end = hit["page_start"], hit.get("page_end") or hit["page_start"]
        parts.append(f"p. {start}" if start == end else f"pp. {start}-{end}")
    if hit.get("section"):
        parts.append(hit["section"])
    return ", ".join(parts) or "-"


def _snippet(text: str, width: int = _SNIPPET) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


@click.command()
@click.argument("query")
@_collection
@_mode
@click.option("--top-k", type=click.IntRange(1, 100), default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
@_base_url
@_api_key
def search(query, collection, mode, top_k, as_json, base_url, api_key) -> None:
    """Search a collection: its best chunks as a table."""
    client = Client(base_url, api_key)
    found = client.collection(collection)
    body = {"query": query, "mode": mode, "top_k": top_k}
    hits = client.call("POST", f"/collections/{found['id']}/search", json=body)
    if as_json:
        click.echo(json.dumps(hits, indent=2))
        return
    if not hits["data"]:
        click.echo(f"no results for {query!r} in {collection!r} ({mode})")
        return
    rows = [
        [
            rank,
            f"{hit['score']:.4f}",
            hit["filename"],
            _where(hit),
            _snippet(hit["text"]),
        ]
        for rank, hit in enumerate(hits["data"], start=1)
    ]
    click.echo(table(["#", "score", "document", "where", "text"], rows))


# ask


def _events(reply: httpx.Response) -> Iterator[dict]:
    for line in reply.iter_lines():
        if line.startswith("data: ") and line != "data: [DONE]":
            yield json.loads(line[len("data: ") :])


def _citation(item: dict) -> str:
    document = item["filename"]
    if item.get("title") and item["title"] != item["filename"]:
        document += f" ({item['title']})"
    quote = " ".join(item["quote"].split())
    return f'[{item["index"]}] {document}, {_where(item)}: "{quote}"'


@click.command()
@click.argument("question")
@_collection
@_mode
@click.option("--top-k", type=click.IntRange(1, 50), default=5, show_default=True)
@click.option("--model", default=None, help="Chat model; the first one by default.")
@click.option("--max-tokens", type=click.IntRange(1), default=None)
@_base_url
@_api_key
def ask(question, collection, mode, top_k, model, max_tokens, base_url, api_key):
    """Answer QUESTION from a collection, streamed, with numbered citations."""
    client = Client(base_url, api_key)
    found = client.collection(collection)
    body = {"question": question, "stream": True, "mode": mode, "top_k": top_k}
    body.update({k: v for k, v in (("model", model), ("max_tokens", max_tokens)) if v})

    citations: list[dict] = []
    done: dict = {}
    try:
        with client.http.stream(
            "POST", f"/collections/{found['id']}/answer", json=body, timeout=600
        ) as reply:
            if reply.status_code >= 400:
                reply.read()
                client.check(reply)
            for event in _events(reply):
                if "error" in event:
                    click.echo()
                    raise CliError(event["error"]["message"])
                if event["type"] == "citations":
                    citations = event["citations"]
                elif event["type"] == "delta":
                    click.echo(event["text"], nl=False)
                elif event["type"] == "done":
                    done = event
    except httpx.HTTPError as exc:
        raise client.unreachable(exc) from exc

    click.echo()
    if not done:
        raise CliError("the answer stream ended early; ask again.")
    if not citations:
        click.echo("\n(no passage in the collection was relevant enough to cite)")
        return
    cited = set(done.get("cited") or [])
    click.echo("\nSources" + (f" (cited: {sorted(cited)})" if cited else "") + ":")
    for item in citations:
        click.echo(_citation(item))
