"""One ``hearth up`` per data directory.

Two supervisors on one data directory would start two databases on the same
files. The lock is an flock on ``<data_dir>/hearth.lock``: the kernel drops it
when its holder dies, even by SIGKILL, so a stale file never blocks a start.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from server.errors import ConfigError


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "hearth.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Python opens files non-inheritable, so no child keeps the lock alive.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConfigError(
                f"another `hearth up` (pid {holder}) is using the data directory "
                f"{self.path.parent}; stop it first, or pass a different --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
