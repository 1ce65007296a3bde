"""Waiting for a freshly started child to be able to serve."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from server.children import Child
from server.errors import HearthError


class StartupInterrupted(Exception):
    """A stop was asked for while the supervisor was still starting."""


def log_tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.is_file():
        return ""
    tail = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n" + "\n".join(f"  | {line}" for line in tail)


def wait_until_ready(
    child: Child,
    is_ready: Callable[[], bool],
    *,
    timeout_s: float,
    error: type[HearthError],
    should_stop: Callable[[], bool] = lambda: False,
    interval_s: float = 0.1,
) -> None:
    """Poll ``is_ready`` until it holds; fail if the child exits or time runs out.

    Polls with a monotonic deadline rather than a count, so a slow machine
    gets the same patience as a fast one.
    """
    deadline = time.monotonic() + timeout_s
    while not is_ready():
        if should_stop():
            raise StartupInterrupted(child.name)
        code = child.poll()
        if code is not None:
            raise error(
                f"{child.name} exited with code {code} while starting; "
                f"its log ({child.spec.log_path or 'above'}) says:"
                f"{log_tail(child.spec.log_path)}"
            )
        if time.monotonic() > deadline:
            raise error(
                f"{child.name} was not ready after {timeout_s:.0f}s; see its log "
                f"({child.spec.log_path or 'above'}):{log_tail(child.spec.log_path)}"
            )
        time.sleep(interval_s)
