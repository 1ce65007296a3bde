"""The children the supervisor watches, restarted with backoff when they die."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import structlog

from server.backoff import Backoff
from server.children import Child, ChildSpec

log = structlog.get_logger(__name__)


@dataclass(kw_only=True)
class _Watched:
    child: Child
    group: str
    backoff: Backoff
    started_at: float
    restart_at: float | None = None
    restarts: int = 0


class ChildRegistry:
    """Starts children, notices when one dies, and brings it back.

    ``check`` is called from the supervisor's main loop (never from another
    thread: children must be spawned from the main thread).
    """

    def __init__(
        self,
        *,
        backoff: Callable[[], Backoff] = Backoff,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backoff = backoff
        self._clock = clock
        self._watched: list[_Watched] = []
        self._stopping = False

    def start(self, spec: ChildSpec, *, group: str) -> Child:
        child = Child(spec)
        child.start()
        self._watched.append(
            _Watched(
                child=child,
                group=group,
                backoff=self._backoff(),
                started_at=self._clock(),
            )
        )
        return child

    def children(self, group: str | None = None) -> list[Child]:
        return [w.child for w in self._watched if group in (None, w.group)]

    def forget(self, child: Child) -> None:
        """Stop watching ``child`` (the autoscaler stops it on its own)."""
        self._watched = [w for w in self._watched if w.child is not child]

    def restarts(self, name: str) -> int:
        return sum(w.restarts for w in self._watched if w.child.name == name)

    def check(self) -> None:
        """Schedule a restart for each child that died; do the ones now due."""
        if self._stopping:
            return
        now = self._clock()
        for watched in self._watched:
            if watched.restart_at is None:
                self._notice_exit(watched, now)
            elif now >= watched.restart_at:
                watched.restart_at = None
                watched.restarts += 1
                watched.started_at = now
                watched.child.start()

    def _notice_exit(self, watched: _Watched, now: float) -> None:
        code = watched.child.poll()
        if code is None:
            return
        # A crashed child may leave helpers in its group (a Celery pool, say).
        watched.child.kill_group()
        delay = watched.backoff.delay_after(now - watched.started_at)
        watched.restart_at = now + delay
        log.warning(
            "child exited; restarting",
            child=watched.child.name,
            pid=watched.child.pid,
            exit_code=code,
            delay_s=delay,
            restarts=watched.restarts,
        )

    def stop(self, order: Iterable[str]) -> None:
        """Stop the groups in ``order``, then any other; no restarts after this.

        The children of one group are signalled together and then waited for,
        so ten workers take one stop timeout, not ten.
        """
        self._stopping = True
        groups = list(order)
        groups += [w.group for w in self._watched if w.group not in groups]
        for group in dict.fromkeys(groups):
            members = [w.child for w in self._watched if w.group == group]
            for child in members:
                child.request_stop()
            deadline = self._clock() + max(
                (child.spec.stop_timeout_s for child in members), default=0.0
            )
            for child in members:
                code = child.await_stop(max(0.0, deadline - self._clock()))
                log.info(
                    "child stopped", child=child.name, pid=child.pid, exit_code=code
                )
