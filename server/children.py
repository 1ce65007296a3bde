"""Child processes of the supervisor: how one is started, signalled and stopped.

Every child runs in its own process group, so a Ctrl-C at the terminal reaches
only the supervisor, which then stops the children in its own order; and so a
child that must be killed takes its own children (Celery's pool, PostgreSQL's
backends) with it.

A child also asks the kernel for a signal when the supervisor dies
(PR_SET_PDEATHSIG), so that even a SIGKILLed supervisor leaves no orphans. The
kernel sends that signal when the *thread* that forked the child exits, which
is why children are spawned only from the main thread. The request is made in
``preexec_fn``, which CPython runs after it has switched to ``user``: the
kernel clears the setting on a credential change, so the order matters, and
the PostgreSQL child keeps it (tests/test_embedded.py checks this).
"""

from __future__ import annotations

import ctypes
import os
import pwd
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import structlog

log = structlog.get_logger(__name__)

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, kw_only=True)
class ChildSpec:
    """What to run, and how to stop it."""

    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    cwd: Path | None = None
    # A system user to run as; PostgreSQL refuses to run as root.
    user: str | None = None
    stop_signal: int = signal.SIGTERM
    stop_timeout_s: float = 10.0
    # Sent by the kernel to the child if the supervisor dies without stopping it.
    death_signal: int = signal.SIGTERM
    # Where stdout and stderr go; None sends both to the supervisor's stderr,
    # keeping its stdout for the ready line that scripts wait for.
    log_path: Path | None = None
    labels: dict[str, str] = field(default_factory=dict)


def _ask_for_death_signal(sig: int, parent_pid: int):
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        # A child that could outlive the supervisor is not started at all
        # (126: the shell's "cannot execute").
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            os._exit(126)
        # The parent may have died between fork and prctl; then nobody will
        # ever send the signal, so behave as if it had been sent.
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), sig)

    return preexec


class Child:
    """One running (or exited) instance of a ChildSpec."""

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError(
                "children must be spawned from the main thread: the kernel sends "
                "the parent-death signal when the spawning thread exits"
            )
        output: IO[bytes] | int = sys.stderr.fileno()
        if self.spec.log_path is not None:
            self.spec.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._close_log()
            self._log_file = open(self.spec.log_path, "ab")
            output = self._log_file

        group = None
        if self.spec.user is not None:
            group = pwd.getpwnam(self.spec.user).pw_gid
        self._process = subprocess.Popen(
            self.spec.argv,
            env=self.spec.env,
            cwd=self.spec.cwd,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            user=self.spec.user,
            group=group,
            extra_groups=[] if self.spec.user is not None else None,
            process_group=0,
            preexec_fn=_ask_for_death_signal(self.spec.death_signal, os.getpid()),
        )
        log.info("child started", child=self.name, pid=self.pid, **self.spec.labels)

    def poll(self) -> int | None:
        """The exit code if the child has exited, else None."""
        return self._process.poll() if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def send(self, sig: int) -> None:
        if self.running:
            assert self._process is not None
            self._process.send_signal(sig)

    def wait(self, timeout_s: float) -> int | None:
        """Wait up to ``timeout_s`` for the child to exit; its code, or None."""
        if self._process is None:
            return None
        try:
            return self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def kill_group(self) -> None:
        """SIGKILL the child and everything left in its process group."""
        if self._process is None:
            return
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def request_stop(self) -> None:
        """Send the stop signal once; ``await_stop`` then waits for the exit."""
        self.send(self.spec.stop_signal)

    def await_stop(self, timeout_s: float | None = None) -> int | None:
        """Wait for a child asked to stop; kill its group after the timeout.

        Returns the exit code (negative: the signal that ended it).
        """
        if self._process is None:
            return None
        code = self.wait(self.spec.stop_timeout_s if timeout_s is None else timeout_s)
        if code is None:
            log.warning("child did not stop; killing it", child=self.name, pid=self.pid)
            self.kill_group()
            code = self._process.wait()

        # Anything the child left behind in its group would be an orphan.
        self.kill_group()
        self._close_log()
        return code

    def stop(self, timeout_s: float | None = None) -> int | None:
        self.request_stop()
        return self.await_stop(timeout_s)

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
