"""Redis and the process registry, faked for the supervisor's decision
tests (autoscaling, model reload); the real ones are covered by the tests
that run a whole `hearth up`."""

from __future__ import annotations


class FakeRedis:
    """The few commands the autoscaler and the reloader send."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}
        self.lists: dict[str, list[bytes]] = {}
        self.hashes: dict[str, dict[str, str]] = {}

    def get(self, key):
        return self.values.get(key)

    def set(self, key, value, ex=None):
        self.values[key] = value

    def delete(self, key):
        self.values.pop(key, None)

    def hget(self, key, field):
        return self.hashes.get(key, {}).get(field)

    def hmget(self, key, *fields):
        found = self.hashes.get(key, {})
        return [found.get(field) for field in fields]

    def llen(self, key):
        return len(self.lists.get(key, []))

    def lindex(self, key, index):
        items = self.lists.get(key, [])
        return items[index] if items else None

    def close(self):
        pass


class FakeChild:
    def __init__(self, spec):
        self.spec, self.name = spec, spec.name
        self.stop_requested = False

    def request_stop(self):
        self.stop_requested = True

    def poll(self):
        return 0 if self.stop_requested else None

    def await_stop(self, timeout_s=None):
        return 0


class FakeRegistry:
    """``watched``: the children now; ``started``: every one ever started."""

    def __init__(self):
        self.watched: list[FakeChild] = []
        self.started: list[FakeChild] = []

    def start(self, spec, *, group):
        child = FakeChild(spec)
        self.watched.append(child)
        self.started.append(child)
        return child

    def children(self, group=None):
        return list(self.watched)

    def forget(self, child):
        self.watched.remove(child)
