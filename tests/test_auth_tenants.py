"""Two tenants, one server: neither sees nor touches the other's data.

CROSS and LISTS are tables so that resources added later (collections,
documents, jobs, batches, files) join the same tests with one line each.
"""

from __future__ import annotations

import pytest

from server.usage import flush_usage
from tests import authutil
from tests.authutil import CHAT, EMBED, StandInWorker, bearer, running

database_url = authutil.database_url
settings = authutil.settings

# A request tenant A makes about an object of tenant B, and its answer.
CROSS = [
    ("keys", "GET", "/admin/keys/{b_key}", 404),
    ("keys", "POST", "/admin/keys/{b_key}/revoke", 404),
    ("keys", "POST", "/admin/keys/{b_key}/rotate", 404),
]

# Listings: every row A sees is A's.
LISTS = [
    ("keys", "/admin/keys"),
    ("usage", "/admin/usage"),
    ("audit", "/admin/audit"),
]


async def _use_models(api, key: str) -> None:
    headers = bearer(key)
    chat = {"model": CHAT, "messages": [{"role": "user", "content": "hi"}]}
    replies = [
        await api.client.post("/v1/embeddings", json={"model": EMBED, "input": ["a"]},
                              headers=headers),
        await api.client.post("/v1/chat/completions", json=chat, headers=headers),
        await api.client.post("/v1/chat/completions", json={**chat, "stream": True},
                              headers=headers),
    ]  # fmt: skip
    for reply in replies:
        assert reply.status_code == 200, reply.text
    await flush_usage()


@pytest.fixture
async def two_tenants(settings):
    async with running(settings) as api, StandInWorker(settings):
        a_admin, a_id = await api.key("tenant-a", "admin,inference")
        b_admin, b_id = await api.key("tenant-b", "admin,inference")
        # Each tenant makes a key over the API (an audit record each) and
        # uses the models (usage records each).
        for admin in (a_admin, b_admin):
            made = await api.client.post(
                "/admin/keys", json={"scopes": ["read"]}, headers=bearer(admin)
            )
            assert made.status_code == 201
            await _use_models(api, admin)
        yield api, {"a": (a_admin, a_id), "b": (b_admin, b_id)}


async def test_usage_records_carry_the_callers_tenant_and_key(two_tenants):
    api, keys = two_tenants
    rows = await api.pool.fetch(
        "SELECT tenant, key_id, endpoint, streamed FROM requests ORDER BY id"
    )
    seen = {(r["tenant"], r["key_id"], r["endpoint"], r["streamed"]) for r in rows}
    for tenant, (_, key_id) in keys.items():
        name = f"tenant-{tenant}"
        assert {
            (name, key_id, "/v1/embeddings", False),
            (name, key_id, "/v1/chat/completions", False),
            (name, key_id, "/v1/chat/completions", True),
        } <= seen
    assert len(rows) == 6


@pytest.mark.parametrize("resource,method,path,status", CROSS)
async def test_another_tenants_object_is_not_found(
    two_tenants, resource, method, path, status
):
    api, keys = two_tenants
    a_admin, _ = keys["a"]
    b_admin, b_id = keys["b"]
    reply = await api.client.request(
        method, path.format(b_key=b_id), headers=bearer(a_admin)
    )
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["code"] == "not_found"
    assert b_id in reply.json()["error"]["message"]
    # ...and B's object is untouched.
    still = await api.client.get(f"/admin/keys/{b_id}", headers=bearer(b_admin))
    assert still.status_code == 200 and still.json()["status"] == "active"


@pytest.mark.parametrize("resource,path", LISTS)
async def test_listings_show_only_the_callers_tenant(two_tenants, resource, path):
    api, keys = two_tenants
    for tenant, (admin, _) in keys.items():
        reply = await api.client.get(path, headers=bearer(admin))
        assert reply.status_code == 200, reply.text
        rows = reply.json()["data"]
        assert rows, f"{resource}: tenant {tenant} should see its own rows"
        assert {row["tenant"] for row in rows} == {f"tenant-{tenant}"}


async def test_usage_totals_count_each_tenants_own_requests(two_tenants):
    api, keys = two_tenants
    admin, key_id = keys["a"]
    reply = await api.client.get("/admin/usage", headers=bearer(admin))
    totals = {(r["key_id"], r["model"]): r for r in reply.json()["data"]}
    assert totals[(key_id, CHAT)]["requests"] == 2
    assert totals[(key_id, CHAT)]["completion_tokens"] == 10
    assert totals[(key_id, EMBED)]["prompt_tokens"] == 7


async def test_an_admin_cannot_make_keys_for_another_tenant(two_tenants):
    api, keys = two_tenants
    a_admin, _ = keys["a"]
    reply = await api.client.post(
        "/admin/keys",
        json={"tenant": "tenant-b", "scopes": ["admin"]},
        headers=bearer(a_admin),
    )
    assert reply.status_code == 403
    assert reply.json()["error"]["code"] == "insufficient_scope"
    assert reply.json()["error"]["param"] == "tenant"
    count = await api.pool.fetchval(
        "SELECT count(*) FROM api_keys WHERE tenant = 'tenant-b'"
    )
    assert count == 2
