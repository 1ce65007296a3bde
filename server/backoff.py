"""How long to wait before restarting a child that died."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(kw_only=True)
class Backoff:
    """Exponential restart delays that start over once a child proves stable.

    A child that crashes at once is retried after ``initial_s``, then twice as
    long each time up to ``max_s``; one that stayed up ``reset_after_s`` is
    treated as a fresh failure.
    """

    initial_s: float = 0.5
    max_s: float = 30.0
    reset_after_s: float = 60.0
    _next_s: float | None = None

    def delay_after(self, uptime_s: float) -> float:
        """The delay before the next restart of a child that ran ``uptime_s``."""
        if self._next_s is None or uptime_s >= self.reset_after_s:
            self._next_s = self.initial_s
        delay = self._next_s
        self._next_s = min(self._next_s * 2, self.max_s)
        return delay
