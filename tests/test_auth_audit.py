"""The audit log: one record per audited action, and no way to change one."""

from __future__ import annotations

import asyncpg
import pytest

from tests import authutil
from tests.authutil import bearer, running

database_url = authutil.database_url
settings = authutil.settings


async def _create(api, admin, admin_id):
    reply = await api.client.post(
        "/admin/keys", json={"scopes": ["read"], "name": "x"}, headers=bearer(admin)
    )
    return reply, reply.json()["id"]


async def _revoke(api, admin, admin_id):
    _, victim = await api.key("acme", "read")
    reply = await api.client.post(f"/admin/keys/{victim}/revoke", headers=bearer(admin))
    return reply, victim


async def _rotate(api, admin, admin_id):
    _, victim = await api.key("acme", "read")
    reply = await api.client.post(f"/admin/keys/{victim}/rotate", headers=bearer(admin))
    return reply, victim


async def _failed_login(api, admin, admin_id):
    key_id = admin.split(".")[0]
    reply = await api.client.get("/v1/models", headers=bearer(f"{key_id}.{'x' * 43}"))
    return reply, "GET /v1/models"


# action, how to cause it, expected status, whether the actor is the admin key
ACTIONS = [
    ("key.create", _create, 201, True),
    ("key.revoke", _revoke, 200, True),
    ("key.rotate", _rotate, 201, True),
    ("auth.failure", _failed_login, 401, False),
]


@pytest.mark.parametrize("action,cause,status,by_admin", ACTIONS)
async def test_each_audited_action_writes_exactly_one_record(
    settings, action, cause, status, by_admin
):
    async with running(settings) as api:
        admin, admin_id = await api.key("acme", "admin")
        before = await api.pool.fetchval("SELECT count(*) FROM audit_log")

        reply, target = await cause(api, admin, admin_id)

        assert reply.status_code == status, reply.text
        rows = await api.pool.fetch("SELECT * FROM audit_log ORDER BY id")
        assert len(rows) == before + 1
        row = rows[-1]
        assert (row["action"], row["target"], row["tenant"]) == (action, target, "acme")
        assert row["client_ip"] == "127.0.0.1"
        assert row["actor_key_id"] == admin_id
        if by_admin:
            assert (row["actor"], row["outcome"]) == (f"key:{admin_id}", "success")
        else:
            assert (row["actor"], row["outcome"]) == ("anonymous", "denied")
        # Never the secret, anywhere in the record.
        assert admin.split(".")[1] not in str(dict(row))


async def test_the_admin_api_reads_the_log_newest_first(settings):
    async with running(settings) as api:
        admin, admin_id = await api.key("acme", "admin")
        for _ in range(3):
            await _create(api, admin, admin_id)
        reply = await api.client.get(
            "/admin/audit", params={"limit": 2}, headers=bearer(admin)
        )
        events = reply.json()["data"]
        assert [e["action"] for e in events] == ["key.create", "key.create"]
        assert events[0]["id"] > events[1]["id"]
        older = await api.client.get(
            "/admin/audit", params={"before": events[1]["id"]}, headers=bearer(admin)
        )
        assert len(older.json()["data"]) == 1


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET outcome = 'forged'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ],
)
async def test_the_log_cannot_be_changed(settings, statement):
    async with running(settings) as api:
        admin, admin_id = await api.key("acme", "admin")
        await _create(api, admin, admin_id)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await api.pool.execute(statement)
        assert await api.pool.fetchval("SELECT count(*) FROM audit_log") == 1
