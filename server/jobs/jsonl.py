"""Check a batch input file line by line, as it streams in."""

from __future__ import annotations

import json

from server.jobs import states

MAX_CUSTOM_ID = 512


class BatchLineChecker:
    """Finds the first bad line of a batch JSONL file; counts the lines."""

    def __init__(self, *, max_lines: int) -> None:
        self.max_lines = max_lines
        self.lines = 0
        self.requests = 0
        self.error: str | None = None
        self._partial = b""
        self._custom_ids: set[str] = set()

    def feed(self, data: bytes) -> None:
        if self.error:
            return
        pieces = (self._partial + data).split(b"\n")
        self._partial = pieces.pop()
        for piece in pieces:
            self._line(piece)
            if self.error:
                return

    def finish(self) -> None:
        if self._partial and not self.error:
            self._line(self._partial)
        self._partial = b""
        if not self.error and self.requests == 0:
            self.error = "the file holds no requests; write one JSON object per line"

    def _fail(self, why: str) -> None:
        self.error = f"line {self.lines}: {why}"

    def _line(self, raw: bytes) -> None:
        self.lines += 1
        if not raw.strip():
            return
        self.requests += 1
        if self.requests > self.max_lines:
            self._fail(f"more than {self.max_lines} requests (HEARTH_BATCH_MAX_LINES)")
            return
        try:
            item = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            self._fail("not UTF-8 text")
            return
        except json.JSONDecodeError as exc:
            self._fail(f"not valid JSON ({exc.msg} at column {exc.colno})")
            return
        self._check(item)

    def _check(self, item: object) -> None:
        if not isinstance(item, dict):
            self._fail(f"expected a JSON object, got {type(item).__name__}")
            return
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            self._fail("'custom_id' must be a non-empty string")
        elif len(custom_id) > MAX_CUSTOM_ID:
            self._fail(f"'custom_id' is longer than {MAX_CUSTOM_ID} characters")
        elif custom_id in self._custom_ids:
            self._fail(f"custom_id {custom_id!r} is used twice; make each unique")
        elif item.get("method") != "POST":
            self._fail(f"'method' must be \"POST\", got {item.get('method')!r}")
        elif item.get("url") not in states.ENDPOINT_TYPES:
            self._fail(
                f"'url' {item.get('url')!r} is not one of "
                f"{', '.join(states.ENDPOINT_TYPES)}"
            )
        elif not isinstance(item.get("body"), dict):
            self._fail("'body' must be a JSON object (the request)")
        elif not isinstance(item["body"].get("model"), str):
            self._fail("'body.model' must name a model")
        else:
            self._custom_ids.add(custom_id)
