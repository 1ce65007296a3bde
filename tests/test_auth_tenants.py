"""Two tenants, one server: neither sees nor touches the other's data.

CROSS and LISTS are tables so that resources added later (collections,
documents, jobs, batches, files) join the same tests with one line each.
"""

from __future__ import annotations

import json

import pytest
import redis

from retrieval import store as retrieval_store
from server.usage import flush_usage
from tests import authutil
from tests.authutil import CHAT, EMBED, StandInWorker, bearer, running

database_url = authutil.database_url
settings = authutil.settings


def clean_redis_queues(namespace: str) -> None:
    """The model queues (``<ns>.model...``) that clean_redis's pattern misses."""
    client = redis.Redis.from_url(authutil.REDIS)
    try:
        for key in client.scan_iter(match=f"{namespace}.*"):
            client.delete(key)
    finally:
        client.close()


# A request tenant A makes about an object of tenant B, and its answer.
CROSS = [
    ("keys", "GET", "/admin/keys/{b_key}", 404),
    ("keys", "POST", "/admin/keys/{b_key}/revoke", 404),
    ("keys", "POST", "/admin/keys/{b_key}/rotate", 404),
    ("jobs", "GET", "/v1/jobs/{b_job}", 404),
    ("jobs", "GET", "/v1/jobs/{b_job}/events", 404),
    ("jobs", "POST", "/v1/jobs/{b_job}/cancel", 404),
    ("jobs", "POST", "/v1/jobs/{b_job}/retry", 404),
    ("files", "GET", "/v1/files/{b_file}", 404),
    ("files", "GET", "/v1/files/{b_file}/content", 404),
    ("files", "DELETE", "/v1/files/{b_file}", 404),
    ("batches", "GET", "/v1/batches/{b_batch}", 404),
    ("batches", "POST", "/v1/batches/{b_batch}/cancel", 404),
    ("collections", "GET", "/v1/collections/{b_collection}", 404),
    ("collections", "PATCH", "/v1/collections/{b_collection}", 404),
    ("collections", "DELETE", "/v1/collections/{b_collection}", 404),
    ("collections", "POST", "/v1/collections/{b_collection}/search", 404),
    ("collections", "POST", "/v1/collections/{b_collection}/answer", 404),
    ("collections", "GET", "/v1/collections/{b_collection}/documents", 404),
    ("collections", "POST", "/v1/collections/{b_collection}/documents", 404),
    ("collections", "POST", "/v1/chat/completions", 404),
    ("documents", "GET", "/v1/collections/{b_collection}/documents/{b_document}", 404),
    (
        "documents",
        "DELETE",
        "/v1/collections/{b_collection}/documents/{b_document}",
        404,
    ),
    # Through A's own collection (same name as B's): still not B's document.
    ("documents", "GET", "/v1/collections/notes/documents/{b_document}", 404),
    ("documents", "DELETE", "/v1/collections/notes/documents/{b_document}", 404),
]

# The bodies of the requests above that need one (keyed by method and path).
BODIES = {
    ("PATCH", "/v1/collections/{b_collection}"): {"description": "mine now"},
    ("POST", "/v1/collections/{b_collection}/search"):
        {"query": "kettle", "mode": "lexical"},
    ("POST", "/v1/collections/{b_collection}/answer"): {"question": "kettle?"},
    ("POST", "/v1/collections/{b_collection}/documents"): {"text": "mine now"},
    ("POST", "/v1/chat/completions"): {
        "model": CHAT, "messages": [{"role": "user", "content": "kettle?"}],
        "collections": ["{b_collection}"],
    },
}  # fmt: skip

# How B's object looks when untouched, read with B's own key.
UNTOUCHED = {
    "keys": ("/admin/keys/{b_key}", "status", "active"),
    "jobs": ("/v1/jobs/{b_job}", "state", "queued"),
    "files": ("/v1/files/{b_file}", "status", "processed"),
    "batches": ("/v1/batches/{b_batch}", "status", "in_progress"),
    "collections": ("/v1/collections/{b_collection}", "document_count", 1),
    "documents": ("/v1/collections/{b_collection}/documents/{b_document}",
                  "state", "queued"),
}  # fmt: skip

# Listings: every row A sees is A's.
LISTS = [
    ("keys", "/admin/keys"),
    ("usage", "/admin/usage"),
    ("audit", "/admin/audit"),
    ("jobs", "/v1/jobs"),
    ("files", "/v1/files"),
    ("batches", "/v1/batches"),
    ("collections", "/v1/collections"),
    # Each tenant has a collection named "notes": the name resolves to its own.
    ("documents", "/v1/collections/notes/documents"),
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


async def _make_jobs_files_batches(api, key: str) -> dict[str, str]:
    """A job, a file and a batch, all on the batch queue (which the stand-in
    worker leaves alone), so they stay queued and in progress."""
    headers = bearer(key)
    chat = {"model": CHAT, "messages": [{"role": "user", "content": "hi"}]}
    job = await api.client.post(
        "/v1/jobs", json={"request": chat, "priority": "background"}, headers=headers
    )
    line = {"custom_id": "1", "method": "POST", "url": "/v1/chat/completions",
            "body": chat}  # fmt: skip
    upload = await api.client.post(
        "/v1/files",
        files={"file": ("in.jsonl", json.dumps(line).encode())},
        data={"purpose": "batch"},
        headers=headers,
    )
    assert job.status_code == 202 and upload.status_code == 200, upload.text
    batch = await api.client.post(
        "/v1/batches",
        json={"input_file_id": upload.json()["id"], "endpoint": line["url"]},
        headers=headers,
    )
    assert batch.status_code == 200, batch.text
    collection, document = await _make_collection(api, key)
    return {
        "job": job.json()["id"],
        "file": upload.json()["id"],
        "batch": batch.json()["id"],
        "collection": collection,
        "document": document,
    }


async def _make_collection(api, key: str) -> tuple[str, str]:
    """A collection named "notes" holding one queued document. The document
    row is placed directly: this database has no pgvector, so the upload
    route answers 503 before it would place one."""
    made = await api.client.post(
        "/v1/collections", json={"name": "notes"}, headers=bearer(key)
    )
    assert made.status_code == 201, made.text
    collection = made.json()
    async with api.pool.acquire() as conn:
        placed = await retrieval_store.place_document(
            conn, tenant=collection["tenant"], collection_id=collection["id"],
            incoming=retrieval_store.Incoming(
                filename="kettles.md", title=None, metadata={}, file_id="file-x",
                sha256="0" * 64, size=1,
            ),
        )  # fmt: skip
    return collection["id"], placed.document["id"]


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
        objects = await _make_jobs_files_batches(api, b_admin)
        await _make_jobs_files_batches(api, a_admin)
        api.objects = {f"b_{name}": value for name, value in objects.items()}
        yield api, {"a": (a_admin, a_id), "b": (b_admin, b_id)}
    clean_redis_queues(settings.namespace)


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
    ids = {"b_key": b_id, **api.objects}
    body = json.dumps(BODIES.get((method, path)))
    target = next(value for name, value in ids.items() if f"{{{name}}}" in path + body)
    for name, value in ids.items():
        body = body.replace(f"{{{name}}}", value)
    reply = await api.client.request(
        method, path.format(**ids), headers=bearer(a_admin),
        json=json.loads(body),
    )  # fmt: skip
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["code"] == "not_found"
    assert target in reply.json()["error"]["message"]
    # ...and B's object is untouched.
    where, field, value = UNTOUCHED[resource]
    still = await api.client.get(where.format(**ids), headers=bearer(b_admin))
    assert still.status_code == 200 and still.json()[field] == value


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
