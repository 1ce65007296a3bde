"""Two tenants, one server: neither sees nor touches the other's data.

CROSS and LISTS are tables so that resources added later (collections,
documents, jobs, batches, files) join the same tests with one line each.
"""

from __future__ import annotations

import json

import pytest
import redis

from retrieval import store as retrieval_store
from retrieval import vector_store_sql
from server import response_store
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


_VS_FILE = "/v1/vector_stores/{b_vector_store}/files/{b_vs_file}"
_A_VS_B_FILE = "/v1/vector_stores/{a_vector_store}/files/{b_vs_file}"
_BATCH = "/v1/vector_stores/{b_vector_store}/file_batches/{b_vs_batch}"
_A_VS_B_BATCH = "/v1/vector_stores/{a_vector_store}/file_batches/{b_vs_batch}"

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
    ("vector_stores", "GET", "/v1/vector_stores/{b_vector_store}", 404),
    ("vector_stores", "POST", "/v1/vector_stores/{b_vector_store}", 404),
    ("vector_stores", "DELETE", "/v1/vector_stores/{b_vector_store}", 404),
    ("vector_stores", "GET", "/v1/vector_stores/{b_vector_store}/files", 404),
    ("vector_stores", "POST", "/v1/vector_stores/{b_vector_store}/files", 404),
    ("vector_stores", "POST", "/v1/vector_stores/{b_vector_store}/search", 404),
    ("vector_stores", "POST", "/v1/responses", 404),
    ("vector_store_files", "GET", _VS_FILE, 404),
    ("vector_store_files", "POST", _VS_FILE, 404),
    ("vector_store_files", "DELETE", _VS_FILE, 404),
    ("vector_store_files", "GET", _VS_FILE + "/content", 404),
    # Through A's own vector store: still not B's file.
    ("vector_store_files", "GET", _A_VS_B_FILE, 404),
    ("vector_store_files", "DELETE", _A_VS_B_FILE, 404),
    ("vector_stores", "POST", "/v1/vector_stores/{b_vector_store}/file_batches", 404),
    ("vs_file_batches", "GET", _BATCH, 404),
    ("vs_file_batches", "POST", _BATCH + "/cancel", 404),
    ("vs_file_batches", "GET", _BATCH + "/files", 404),
    ("vs_file_batches", "GET", _A_VS_B_BATCH, 404),
    ("responses", "GET", "/v1/responses/{b_response}", 404),
    ("responses", "GET", "/v1/responses/{b_response}/input_items", 404),
    ("responses", "DELETE", "/v1/responses/{b_response}", 404),
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
    ("POST", "/v1/vector_stores/{b_vector_store}"): {"name": "mine now"},
    ("POST", "/v1/vector_stores/{b_vector_store}/files"): {"file_id": "{b_vs_file}"},
    ("POST", "/v1/vector_stores/{b_vector_store}/search"): {"query": "kettle"},
    ("POST", "/v1/responses"): {
        "model": CHAT, "input": "kettle?",
        "tools": [{"type": "file_search", "vector_store_ids": ["{b_vector_store}"]}],
    },
    ("POST", _VS_FILE): {"attributes": {"mine": "now"}},
    ("POST", "/v1/vector_stores/{b_vector_store}/file_batches"):
        {"file_ids": ["{b_vs_file}"]},
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
    "vector_stores": ("/v1/vector_stores/{b_vector_store}", "name", "notes"),
    "vector_store_files": (_VS_FILE, "status", "in_progress"),
    "vs_file_batches": (_BATCH, "status", "in_progress"),
    "responses": ("/v1/responses/{b_response}", "status", "completed"),
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
    ("vector_stores", "/v1/vector_stores"),
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
    vector_store, vs_file, vs_batch = await _make_vector_store(api, key)
    return {
        "job": job.json()["id"],
        "file": upload.json()["id"],
        "batch": batch.json()["id"],
        "collection": collection,
        "document": document,
        "vector_store": vector_store,
        "vs_file": vs_file,
        "vs_batch": vs_batch,
    }


async def _store_response(api, tenant: str) -> str:
    """A stored response, placed directly: made over the API it would add
    usage records that the usage tests count."""
    response = {"id": "resp_b", "object": "response", "status": "completed",
                "previous_response_id": None, "output": []}  # fmt: skip
    conversation = [{"id": "msg_b", "type": "message", "role": "user",
                     "content": [{"type": "input_text", "text": "hi"}]}]  # fmt: skip
    await response_store.save(
        api.pool, tenant=tenant, response=response, conversation=conversation
    )
    return response["id"]


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


async def _make_vector_store(api, key: str) -> tuple[str, str, str]:
    """A vector store named "notes" with one attached file, in a batch,
    still in progress. The file's document is placed directly, as above:
    attaching over HTTP needs pgvector."""
    made = await api.client.post(
        "/v1/vector_stores", json={"name": "notes"}, headers=bearer(key)
    )
    upload = await api.client.post(
        "/v1/files", files={"file": ("kettles.md", b"# Kettles")},
        data={"purpose": "assistants"}, headers=bearer(key),
    )  # fmt: skip
    assert made.status_code == 200 and upload.status_code == 200, made.text
    store, file_id = made.json(), upload.json()["id"]
    row = await vector_store_sql.get_vector_store(
        api.pool, tenant=store["tenant"], vector_store_id=store["id"]
    )
    batch_id = vector_store_sql.new_batch_id()
    async with api.pool.acquire() as conn:
        document = await vector_store_sql.insert_file_document(
            conn, tenant=store["tenant"], collection_id=row["collection_id"],
            source_file_id=file_id, filename="kettles.md", attributes={},
            file_id="file-link", sha256="1" * 64, size=9, chunk_tokens=None,
            chunk_overlap=None,
        )  # fmt: skip
        await vector_store_sql.insert_batch(
            conn, batch_id=batch_id, tenant=store["tenant"], vector_store_id=store["id"]
        )
        await vector_store_sql.join_batch(
            conn, document_id=document["id"], batch_id=batch_id
        )
    return store["id"], file_id, batch_id


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
        mine = await _make_jobs_files_batches(api, a_admin)
        api.objects = {f"b_{name}": value for name, value in objects.items()}
        api.objects["a_vector_store"] = mine["vector_store"]
        api.objects["b_response"] = await _store_response(api, "tenant-b")
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
