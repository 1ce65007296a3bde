"""Embedded services keep their ports, but never take the API's."""

from __future__ import annotations

from server.ports import remembered_port


def test_a_remembered_port_is_reused(tmp_path):
    first = remembered_port(tmp_path, "valkey")
    assert remembered_port(tmp_path, "valkey") == first


def test_a_port_promised_to_the_api_is_never_taken(tmp_path):
    # The API's port is free until the API binds it; a service started
    # before then must not take it (seen as a bind failure in CI).
    first = remembered_port(tmp_path, "postgres")
    moved = remembered_port(tmp_path, "postgres", avoid=frozenset({first}))
    assert moved != first
    assert remembered_port(tmp_path, "postgres") == moved
