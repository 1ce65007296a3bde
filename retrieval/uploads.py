"""Documents arriving over HTTP, to files in the data directory.

Multipart bodies may carry many ``file`` parts (and one optional
``metadata`` field, JSON). Each part streams to disk, hashed as it comes,
and over the size limit the request stops at once with 413. A JSON body
carries text. Either way the result is a list of stored files: the
pipeline reads bytes from disk by file id, never from a task message.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request

from server.errors import InvalidRequest, PayloadTooLarge
from server.jobs import files, multipart
from server.settings import Settings

_FIELD_MAX_BYTES = 64 * 1024
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")
_FILE_FIELDS = {"file", "files", "files[]"}


@dataclass(kw_only=True)
class Stored:
    file_id: str
    filename: str
    title: str | None
    metadata: dict[str, Any]
    sha256: str
    size: int


class TextDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    title: str | None = Field(None, max_length=1000)
    filename: str | None = Field(None, max_length=1000)
    metadata: dict[str, Any] = Field(default_factory=dict)


class TextDocuments(BaseModel):
    """JSON body: one document, or ``documents`` for many."""

    model_config = ConfigDict(extra="forbid")

    documents: list[TextDocument] = Field(min_length=1, max_length=1000)


def display_name(raw: str | None, fallback: str) -> str:
    """Kept as the user gave it, for display only (never a path); control
    characters and NUL would break logs and PostgreSQL."""
    name = _UNPRINTABLE.sub("", raw or "").strip()
    return name[:1000] or fallback


def _write(folder: Path, data: bytes) -> tuple[str, str]:
    file_id = files.new_file_id()
    tmp = folder / f".upload-{uuid.uuid4().hex}"
    tmp.write_bytes(data)
    os.replace(tmp, files.path_of(folder, file_id))
    return file_id, hashlib.sha256(data).hexdigest()


def store_texts(body: TextDocuments, *, settings: Settings) -> list[Stored]:
    folder = files.files_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    stored = []
    for item in body.documents:
        data = item.text.encode("utf-8")
        if len(data) > settings.file_max_bytes:
            raise PayloadTooLarge(
                f"A text of {len(data)} bytes is over the limit of "
                f"{settings.file_max_bytes} (HEARTH_FILE_MAX_BYTES); split it."
            )
        file_id, sha = _write(folder, data)
        fallback = f"{item.title}.txt" if item.title else f"text-{sha[:16]}.txt"
        stored.append(Stored(
            file_id=file_id, filename=display_name(item.filename, fallback),
            title=item.title, metadata=item.metadata, sha256=sha, size=len(data),
        ))  # fmt: skip
    return stored


class _Receiver:
    def __init__(self, *, folder: Path, limit: int) -> None:
        self.folder, self.limit = folder, limit
        self.done: list[Stored] = []
        self.fields: dict[str, bytes] = {}
        self._part: str | None = None
        self._out = None
        self._hash = None
        self._tmp: Path | None = None
        self._name = ""
        self._size = 0
        self.temporary: list[Path] = []

    def on(self, event) -> None:
        if isinstance(event, multipart.PartStart):
            self._start(event)
        elif isinstance(event, multipart.PartData):
            self._data(event.data)
        elif isinstance(event, multipart.PartEnd):
            self._end()

    def _start(self, event: multipart.PartStart) -> None:
        self._part = event.name
        if event.name in _FILE_FIELDS:
            self._name = display_name(event.filename, "upload")
            self._tmp = self.folder / f".upload-{uuid.uuid4().hex}"
            self.temporary.append(self._tmp)
            self._out = open(self._tmp, "wb")  # noqa: SIM115 (closed at PartEnd)
            self._hash = hashlib.sha256()
            self._size = 0
        else:
            self.fields[event.name] = b""

    def _data(self, data: bytes) -> None:
        if self._out is None:
            value = self.fields.get(self._part or "", b"") + data
            if len(value) > _FIELD_MAX_BYTES:
                raise InvalidRequest(f"Form field {self._part!r} is too long.")
            self.fields[self._part or ""] = value
            return
        self._size += len(data)
        if self._size > self.limit:
            raise PayloadTooLarge(
                f"{self._name!r} is larger than the limit of {self.limit} bytes "
                "(HEARTH_FILE_MAX_BYTES); split it into smaller files."
            )
        self._out.write(data)
        self._hash.update(data)

    def _end(self) -> None:
        if self._out is None:
            return
        self._out.close()
        self._out = None
        file_id = files.new_file_id()
        os.replace(self._tmp, files.path_of(self.folder, file_id))
        self.done.append(Stored(
            file_id=file_id, filename=self._name, title=None, metadata={},
            sha256=self._hash.hexdigest(), size=self._size,
        ))  # fmt: skip

    def abandon(self) -> None:
        if self._out is not None:
            self._out.close()
        for path in self.temporary:
            path.unlink(missing_ok=True)
        for stored in self.done:
            files.path_of(self.folder, stored.file_id).unlink(missing_ok=True)


async def receive_files(request: Request, *, settings: Settings) -> list[Stored]:
    boundary = multipart.boundary_of(request.headers.get("content-type", ""))
    folder = files.files_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    reader = multipart.MultipartReader(boundary)
    receiver = _Receiver(folder=folder, limit=settings.file_max_bytes)
    try:
        async for chunk in request.stream():
            for event in reader.feed(chunk):
                receiver.on(event)
        if not reader.finished:
            raise InvalidRequest("The multipart body ended early; send it again.")
        if not receiver.done:
            raise InvalidRequest(
                "No file in the form; send one or more parts named 'file'.",
                param="file",
            )
        metadata = _metadata(receiver.fields.get("metadata"))
    except BaseException:
        receiver.abandon()
        raise
    for stored in receiver.done:
        stored.metadata = metadata
    return receiver.done


def _metadata(raw: bytes | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise InvalidRequest(
            f"Form field 'metadata' is not JSON ({exc}); send an object.",
            param="metadata",
        ) from exc
    if not isinstance(value, dict):
        raise InvalidRequest("Form field 'metadata' must be a JSON object.",
                             param="metadata")  # fmt: skip
    return value
