"""Uploaded and generated files: rows in ``files``, bytes on disk.

Bytes live in ``<data_dir>/files/<id>`` and travel by reference (a file id),
never inside task messages. Workers that write batch output need the same
data directory as the API: one machine, or a shared volume.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from starlette.requests import Request

from server.errors import InvalidRequest, NotFound, PayloadTooLarge
from server.jobs import multipart
from server.jobs.jsonl import BatchLineChecker
from server.settings import Settings

PURPOSES = ("batch", "assistants")
# Multipart framing and the purpose field, on top of the file itself.
_ENVELOPE_BYTES = 64 * 1024
_FIELD_MAX_BYTES = 1024

Conn = asyncpg.Connection | asyncpg.Pool


def files_dir(settings: Settings) -> Path:
    return settings.data_dir / "files"


def path_of(folder: Path, file_id: str) -> Path:
    return folder / file_id


def new_file_id() -> str:
    return f"file-{uuid.uuid4().hex}"


async def insert_file(
    conn: Conn, *, file_id: str, tenant: str, purpose: str, filename: str,
    size: int, lines: int,
) -> dict[str, Any]:  # fmt: skip
    row = await conn.fetchrow(
        "INSERT INTO files (id, tenant, purpose, filename, bytes, lines)"
        " VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (id) DO UPDATE SET bytes = EXCLUDED.bytes RETURNING *",
        file_id, tenant, purpose, filename, size, lines,
    )  # fmt: skip
    return dict(row)


async def get_file(conn: Conn, *, tenant: str, file_id: str) -> dict[str, Any]:
    row = await conn.fetchrow(
        "SELECT * FROM files WHERE id = $1 AND tenant = $2 AND deleted_at IS NULL",
        file_id, tenant,
    )  # fmt: skip
    if row is None:
        raise NotFound(f"No file {file_id!r}; list yours with GET /v1/files.")
    return dict(row)


async def list_files(
    conn: Conn, *, tenant: str, purpose: str | None, limit: int, after: str | None
) -> tuple[list[dict[str, Any]], bool]:
    rows = await conn.fetch(
        "SELECT * FROM files WHERE tenant = $1 AND deleted_at IS NULL"
        " AND ($2::text IS NULL OR purpose = $2)"
        " AND ($3::text IS NULL OR (created_at, id) < (SELECT created_at, id"
        "      FROM files WHERE id = $3 AND tenant = $1))"
        " ORDER BY created_at DESC, id DESC LIMIT $4",
        tenant, purpose, after, limit + 1,
    )  # fmt: skip
    return [dict(r) for r in rows[:limit]], len(rows) > limit


async def delete_file(conn: Conn, *, tenant: str, file_id: str, folder: Path) -> None:
    done = await conn.fetchval(
        "UPDATE files SET deleted_at = now() WHERE id = $1 AND tenant = $2"
        " AND deleted_at IS NULL RETURNING id",
        file_id, tenant,
    )  # fmt: skip
    if done is None:
        raise NotFound(f"No file {file_id!r}; list yours with GET /v1/files.")
    path_of(folder, file_id).unlink(missing_ok=True)


@dataclass(kw_only=True)
class Upload:
    file_id: str
    purpose: str
    filename: str
    size: int
    lines: int


class _Receiver:
    """Writes the 'file' part to a temporary file, checking as it goes."""

    def __init__(self, *, folder: Path, settings: Settings) -> None:
        self.tmp = folder / f".upload-{uuid.uuid4().hex}"
        self.limit = settings.file_max_bytes
        self.checker = BatchLineChecker(max_lines=settings.batch_max_lines)
        self.fields: dict[str, bytes] = {}
        self.filename: str | None = None
        self.size = 0
        self._part: str | None = None
        self._out = None

    def on(self, event) -> None:
        if isinstance(event, multipart.PartStart):
            self._part = event.name
            if event.name == "file":
                self.filename = event.filename or "upload.jsonl"
                self._out = open(self.tmp, "wb")  # noqa: SIM115 (closed at PartEnd)
            else:
                self.fields[event.name] = b""
        elif isinstance(event, multipart.PartData):
            self._data(event.data)
        elif isinstance(event, multipart.PartEnd):
            if self._out is not None:
                self._out.close()
                self._out = None
            self._part = None

    def _data(self, data: bytes) -> None:
        if self._part != "file":
            value = self.fields.get(self._part, b"") + data
            if len(value) > _FIELD_MAX_BYTES:
                raise InvalidRequest(f"Form field {self._part!r} is too long.")
            self.fields[self._part] = value
            return
        self.size += len(data)
        if self.size > self.limit:
            raise PayloadTooLarge(
                f"The file is larger than the limit of {self.limit} bytes "
                "(HEARTH_FILE_MAX_BYTES); split it into smaller files."
            )
        self._out.write(data)
        self.checker.feed(data)

    def close(self) -> None:
        if self._out is not None:
            self._out.close()


async def receive(request: Request, *, settings: Settings) -> Upload:
    """Stream a multipart upload to disk, enforcing the size limit and, for
    purpose ``batch``, checking each JSONL line as it arrives."""
    boundary = multipart.boundary_of(request.headers.get("content-type", ""))
    declared = request.headers.get("content-length")
    if declared and declared.isdigit():
        if int(declared) > settings.file_max_bytes + _ENVELOPE_BYTES:
            raise PayloadTooLarge(
                f"The upload is {declared} bytes, over the limit of "
                f"{settings.file_max_bytes} (HEARTH_FILE_MAX_BYTES); split it."
            )
    folder = files_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    reader = multipart.MultipartReader(boundary)
    receiver = _Receiver(folder=folder, settings=settings)
    try:
        async for chunk in request.stream():
            for event in reader.feed(chunk):
                receiver.on(event)
        return _accept(receiver, reader, folder)
    except BaseException:
        receiver.close()
        receiver.tmp.unlink(missing_ok=True)
        raise


def _accept(receiver: _Receiver, reader, folder: Path) -> Upload:
    receiver.close()
    if not reader.finished:
        raise InvalidRequest("The multipart body ended early; send it again.")
    purpose = receiver.fields.get("purpose", b"").decode("utf-8", "replace")
    if not purpose:
        raise InvalidRequest("Missing required parameter: 'purpose'.", param="purpose")
    if purpose not in PURPOSES:
        raise InvalidRequest(
            f"Unknown purpose {purpose!r}; use one of {', '.join(PURPOSES)}.",
            param="purpose",
        )
    if receiver.filename is None:
        raise InvalidRequest("Missing required parameter: 'file'.", param="file")
    if purpose == "batch":
        receiver.checker.finish()
        if receiver.checker.error:
            raise InvalidRequest(
                f"{receiver.filename!r} is not a valid batch file: "
                f"{receiver.checker.error}. Fix that line and upload again.",
                param="file",
            )
    file_id = new_file_id()
    os.replace(receiver.tmp, path_of(folder, file_id))
    return Upload(
        file_id=file_id,
        purpose=purpose,
        filename=receiver.filename,
        size=receiver.size,
        lines=receiver.checker.requests,
    )
