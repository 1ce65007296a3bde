"""Starting the embedded broker and database, for ``hearth up`` and for tests.

``start_broker`` and ``start_database`` put the service under a
``ChildRegistry`` (which restarts it if it dies) and return its URL once it
answers. ``embedded_services`` is the same for a test session: both services
on a data directory, stopped on exit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from server import embedded_postgres, embedded_valkey
from server.child_registry import ChildRegistry
from server.data_dir_lock import DataDirLock
from server.errors import BrokerUnavailable, DatabaseUnavailable
from server.ports import remembered_port
from server.readiness import wait_until_ready

BROKER_GROUP = "broker"
DATABASE_GROUP = "database"
READY_TIMEOUT_S = 120.0


def start_broker(
    registry: ChildRegistry,
    *,
    data_dir: Path,
    should_stop: Callable[[], bool] = lambda: False,
    avoid: frozenset[int] = frozenset(),
) -> str:
    """Start Valkey on ``data_dir`` and return its URL once it answers PING."""
    embedded_valkey.clear_stale_valkey(data_dir)
    port = remembered_port(data_dir, "valkey", avoid=avoid)
    url = embedded_valkey.valkey_url(port)
    child = registry.start(
        embedded_valkey.valkey_spec(data_dir=data_dir, port=port), group=BROKER_GROUP
    )
    wait_until_ready(
        child,
        lambda: embedded_valkey.valkey_is_ready(url),
        timeout_s=READY_TIMEOUT_S,
        error=BrokerUnavailable,
        should_stop=should_stop,
    )
    return url


def start_database(
    registry: ChildRegistry,
    *,
    data_dir: Path,
    should_stop: Callable[[], bool] = lambda: False,
    avoid: frozenset[int] = frozenset(),
) -> str:
    """Start PostgreSQL on ``data_dir`` (creating the cluster and the
    ``hearth`` database the first time) and return its URL."""
    pgdata = data_dir / "postgres"
    user = embedded_postgres.system_user()
    embedded_postgres.clear_stale_postgres(pgdata)
    embedded_postgres.prepare_cluster(pgdata, user=user)
    port = remembered_port(data_dir, "postgres", avoid=avoid)
    child = registry.start(
        embedded_postgres.postgres_spec(data_dir=data_dir, port=port, user=user),
        group=DATABASE_GROUP,
    )
    wait_until_ready(
        child,
        lambda: embedded_postgres.postgres_is_accepting(port),
        timeout_s=READY_TIMEOUT_S,
        error=DatabaseUnavailable,
        should_stop=should_stop,
    )
    embedded_postgres.ensure_database(port)
    return embedded_postgres.database_url(port)


@dataclass(frozen=True, kw_only=True)
class EmbeddedServices:
    broker_url: str
    database_url: str
    registry: ChildRegistry


@contextmanager
def embedded_services(data_dir: Path) -> Iterator[EmbeddedServices]:
    """Valkey and PostgreSQL on ``data_dir`` for as long as the block runs.

    Holds the data directory's lock, like ``hearth up``, so a test cannot
    share its services' files with another run by mistake.
    """
    registry = ChildRegistry()
    with DataDirLock(data_dir):
        try:
            broker_url = start_broker(registry, data_dir=data_dir)
            database_url = start_database(registry, data_dir=data_dir)
            yield EmbeddedServices(
                broker_url=broker_url, database_url=database_url, registry=registry
            )
        finally:
            registry.stop([BROKER_GROUP, DATABASE_GROUP])
