"""A streaming multipart/form-data reader.

Starlette's form parser needs python-multipart and buffers each file to a
spooled temporary file before the route runs, so a size limit could only be
checked afterwards; this one hands the route each chunk as it arrives.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from server.errors import InvalidRequest

_MAX_HEADER_BYTES = 16 * 1024


@dataclass(frozen=True)
class PartStart:
    name: str
    filename: str | None


@dataclass(frozen=True)
class PartData:
    data: bytes


@dataclass(frozen=True)
class PartEnd:
    pass


def boundary_of(content_type: str) -> bytes:
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        raise InvalidRequest(
            f"Content-Type {kind.strip() or 'none'!r} is not multipart/form-data; "
            "send the file as a form with fields 'file' and 'purpose'.",
            param="file",
        )
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary" and value:
            return value.strip('"').encode("latin-1")
    raise InvalidRequest("The multipart Content-Type has no boundary.", param="file")


def _disposition(headers: bytes) -> PartStart:
    name = filename = None
    for line in headers.decode("utf-8", "replace").split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() != "content-disposition":
            continue
        for item in value.split(";")[1:]:
            k, _, v = item.strip().partition("=")
            v = v.strip().strip('"')
            if k.lower() == "name":
                name = v
            elif k.lower() == "filename":
                filename = v
    if name is None:
        raise InvalidRequest("A multipart part has no name.", param="file")
    return PartStart(name=name, filename=filename)


class MultipartReader:
    """Feed bytes, get PartStart / PartData / PartEnd events."""

    def __init__(self, boundary: bytes) -> None:
        self._first = b"--" + boundary
        self._delimiter = b"\r\n--" + boundary
        self._buffer = b""
        self._state = "preamble"

    @property
    def finished(self) -> bool:
        return self._state == "done"

    def feed(self, chunk: bytes) -> Iterator[PartStart | PartData | PartEnd]:
        self._buffer += chunk
        while True:
            step = getattr(self, f"_{self._state}")()
            if step is None:
                return
            if step is not True:
                yield step

    def _preamble(self):
        at = self._buffer.find(self._first)
        if at < 0:
            return None
        self._buffer = self._buffer[at + len(self._first) :]
        self._state = "after_boundary"
        return True

    def _after_boundary(self):
        if len(self._buffer) < 2:
            return None
        if self._buffer.startswith(b"--"):
            self._state, self._buffer = "done", b""
            return True
        if not self._buffer.startswith(b"\r\n"):
            raise InvalidRequest("Malformed multipart body.", param="file")
        self._buffer = self._buffer[2:]
        self._state = "headers"
        return True

    def _headers(self):
        at = self._buffer.find(b"\r\n\r\n")
        if at < 0:
            if len(self._buffer) > _MAX_HEADER_BYTES:
                raise InvalidRequest("Multipart part headers are too long.")
            return None
        start = _disposition(self._buffer[:at])
        self._buffer = self._buffer[at + 4 :]
        self._state = "body"
        return start

    def _body(self):
        at = self._buffer.find(self._delimiter)
        if at >= 0:
            data, self._buffer = self._buffer[:at], self._buffer[at:]
            self._buffer = self._buffer[len(self._delimiter) :]
            self._state = "end_part"
            return PartData(data) if data else True
        # Keep a tail that might be the start of the delimiter.
        keep = len(self._delimiter) - 1
        if len(self._buffer) <= keep:
            return None
        data, self._buffer = self._buffer[:-keep], self._buffer[-keep:]
        return PartData(data)

    def _end_part(self):
        self._state = "after_boundary"
        return PartEnd()

    def _done(self):
        return None
