"""Every route declares who may call it, and the app enforces it.

ROUTES is the table: a route added without a policy, or missing here,
fails ``test_every_route_declares_its_policy``; the table then drives the
check that each single-scope key is let in exactly where it should be.
"""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute

from auth.policy import Authenticated, Policy, Scoped
from auth.scopes import ADMIN, ALL, INFERENCE, INGEST, READ, grants
from server.app import create_app
from server.settings import Settings
from tests import authutil
from tests.authutil import CHAT, EMBED, bearer, running

database_url = authutil.database_url
settings = authutil.settings

PUBLIC = "public"
ANY_KEY = "any key"

ROUTES: dict[tuple[str, str], str | tuple[str, ...]] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/openapi.json"): ANY_KEY,
    ("GET", "/docs"): ANY_KEY,
    ("POST", "/auth/token"): ANY_KEY,
    ("GET", "/v1/models"): (INFERENCE, READ),
    ("GET", "/v1/models/{model_id:path}"): (INFERENCE, READ),
    ("POST", "/v1/chat/completions"): (INFERENCE,),
    ("POST", "/v1/completions"): (INFERENCE,),
    ("POST", "/v1/embeddings"): (INFERENCE,),
    ("POST", "/v1/jobs"): (INFERENCE,),
    ("GET", "/v1/jobs"): (INFERENCE, READ),
    ("GET", "/v1/jobs/{job_id}"): (INFERENCE, READ),
    ("GET", "/v1/jobs/{job_id}/events"): (INFERENCE, READ),
    ("POST", "/v1/jobs/{job_id}/cancel"): (INFERENCE,),
    ("POST", "/v1/jobs/{job_id}/retry"): (INFERENCE,),
    ("POST", "/v1/files"): (INFERENCE,),
    ("GET", "/v1/files"): (INFERENCE, READ),
    ("GET", "/v1/files/{file_id}"): (INFERENCE, READ),
    ("GET", "/v1/files/{file_id}/content"): (INFERENCE, READ),
    ("DELETE", "/v1/files/{file_id}"): (INFERENCE,),
    ("POST", "/v1/collections"): (INGEST,),
    ("GET", "/v1/collections"): (INGEST, READ),
    ("GET", "/v1/collections/{ref}"): (INGEST, READ),
    ("PATCH", "/v1/collections/{ref}"): (INGEST,),
    ("DELETE", "/v1/collections/{ref}"): (INGEST,),
    ("POST", "/v1/collections/{ref}/documents"): (INGEST,),
    ("GET", "/v1/collections/{ref}/documents"): (INGEST, READ),
    ("GET", "/v1/collections/{ref}/documents/{document_id}"): (INGEST, READ),
    ("DELETE", "/v1/collections/{ref}/documents/{document_id}"): (INGEST,),
    ("POST", "/v1/collections/{ref}/search"): (INGEST, READ, INFERENCE),
    ("POST", "/v1/collections/{ref}/answer"): (INGEST, READ, INFERENCE),
    ("POST", "/v1/vector_stores"): (INGEST,),
    ("GET", "/v1/vector_stores"): (INGEST, READ),
    ("GET", "/v1/vector_stores/{vector_store_id}"): (INGEST, READ),
    ("POST", "/v1/vector_stores/{vector_store_id}"): (INGEST,),
    ("DELETE", "/v1/vector_stores/{vector_store_id}"): (INGEST,),
    ("POST", "/v1/vector_stores/{vector_store_id}/files"): (INGEST,),
    ("GET", "/v1/vector_stores/{vector_store_id}/files"): (INGEST, READ),
    ("GET", "/v1/vector_stores/{vector_store_id}/files/{file_id}"): (INGEST, READ),
    ("POST", "/v1/vector_stores/{vector_store_id}/files/{file_id}"): (INGEST,),
    ("DELETE", "/v1/vector_stores/{vector_store_id}/files/{file_id}"): (INGEST,),
    ("GET", "/v1/vector_stores/{vector_store_id}/files/{file_id}/content"): (
        INGEST,
        READ,
    ),
    ("POST", "/v1/vector_stores/{vector_store_id}/search"): (INGEST, READ, INFERENCE),
    ("POST", "/v1/vector_stores/{vector_store_id}/file_batches"): (INGEST,),
    ("GET", "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}"): (
        INGEST,
        READ,
    ),
    ("POST", "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/cancel"): (
        INGEST,
    ),
    ("GET", "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/files"): (
        INGEST,
        READ,
    ),
    ("POST", "/v1/responses"): (INFERENCE,),
    ("GET", "/v1/responses/{response_id}"): (INFERENCE,),
    ("DELETE", "/v1/responses/{response_id}"): (INFERENCE,),
    ("GET", "/v1/responses/{response_id}/input_items"): (INFERENCE,),
    ("POST", "/v1/batches"): (INFERENCE,),
    ("GET", "/v1/batches"): (INFERENCE, READ),
    ("GET", "/v1/batches/{batch_id}"): (INFERENCE, READ),
    ("POST", "/v1/batches/{batch_id}/cancel"): (INFERENCE,),
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/ui"): PUBLIC,
    ("GET", "/ui/{asset}"): PUBLIC,
    ("GET", "/admin/workers"): (ADMIN,),
    ("GET", "/admin/queues"): (ADMIN,),
    ("GET", "/admin/models"): (ADMIN,),
    ("POST", "/admin/models/reload"): (ADMIN,),
    ("GET", "/admin/requests"): (ADMIN,),
    ("POST", "/admin/queues/{name}/purge"): (ADMIN,),
    ("POST", "/admin/workers/{worker_id}/shutdown"): (ADMIN,),
    ("POST", "/admin/keys"): (ADMIN,),
    ("GET", "/admin/keys"): (ADMIN,),
    ("GET", "/admin/keys/{key_id}"): (ADMIN,),
    ("POST", "/admin/keys/{key_id}/revoke"): (ADMIN,),
    ("POST", "/admin/keys/{key_id}/rotate"): (ADMIN,),
    ("GET", "/admin/usage"): (ADMIN,),
    ("GET", "/admin/audit"): (ADMIN,),
}

BODIES = {
    "/v1/chat/completions": {
        "model": CHAT,
        "messages": [{"role": "user", "content": "hi"}],
    },
    "/v1/completions": {"model": CHAT, "prompt": "hi"},
    "/v1/embeddings": {"model": EMBED, "input": "hi"},
    "/admin/keys": {"scopes": ["read"]},
}
PARAMS = {
    "{model_id:path}": CHAT,
    "{key_id}": "0123456789abcdef",
    "{name}": "no-such-queue",
    "{worker_id}": "no-such-worker",
    "{asset}": "app.js",
}
PARAMS.update(
    {"{job_id}": "job_none", "{file_id}": "file-none", "{batch_id}": "batch_none"}
)
PARAMS["{vector_store_id}"] = "vs_none"


def _policies(dependant) -> list[Policy]:
    found = [dependant.call] if isinstance(dependant.call, Policy) else []
    for sub in dependant.dependencies:
        found.extend(_policies(sub))
    return found


def _declared(policies: list[Policy]) -> str | tuple[str, ...]:
    if any(isinstance(p, Scoped) for p in policies):
        return tuple(s for p in policies if isinstance(p, Scoped) for s in p.scopes)
    if any(isinstance(p, Authenticated) for p in policies):
        return ANY_KEY
    return PUBLIC


def _endpoints(routes):
    """(methods, path, dependant) of every endpoint, or the route itself if it
    is not one FastAPI resolves dependencies for."""
    for route in routes:
        # FastAPI >= 0.16x keeps included routers as lazy branches; their
        # effective routes carry the router's dependencies merged in.
        if hasattr(route, "effective_candidates"):
            yield from _endpoints(route.effective_candidates())
        elif isinstance(route, APIRoute) or getattr(route, "dependant", None):
            yield route.methods, route.path, route.dependant
        else:
            yield None, getattr(route, "path", repr(route)), None


def test_every_route_declares_its_policy():
    app = create_app(Settings())
    seen = {}
    for methods, path, dependant in _endpoints(app.routes):
        assert dependant is not None, (
            f"{path} is not an API route, so it cannot declare a policy; "
            "serve it from a router with one"
        )
        policies = _policies(dependant)
        assert policies, f"{path} declares no policy (Public, Authenticated, Scoped)"
        for method in methods:
            assert (method, path) in ROUTES, (
                f"{method} {path} is not in ROUTES; add it with its scopes"
            )
            seen[(method, path)] = _declared(policies)
    assert seen == ROUTES


def _url(path: str) -> str:
    for placeholder, value in PARAMS.items():
        path = path.replace(placeholder, value)
    return path


async def test_each_scope_gets_in_exactly_where_it_should(settings):
    async with running(settings) as api:
        keys = {scope: (await api.key("acme", (scope,)))[0] for scope in ALL}
        for (method, path), wanted in ROUTES.items():
            for scope, key in keys.items():
                reply = await api.client.request(
                    method, _url(path), json=BODIES.get(path), headers=bearer(key)
                )
                allowed = wanted in (PUBLIC, ANY_KEY) or grants((scope,), wanted)
                where = f"{method} {path} with a {scope!r} key: {reply.text[:200]}"
                if allowed:
                    assert reply.status_code not in (401, 403), where
                else:
                    assert reply.status_code == 403, where
                    error = reply.json()["error"]
                    assert error["code"] == "insufficient_scope", where
                    assert error["type"] == "invalid_request_error", where


@pytest.mark.parametrize("route", [r for r, w in ROUTES.items() if w != PUBLIC])
async def test_without_a_key_every_protected_route_is_401(settings, route):
    method, path = route
    async with running(settings) as api:
        await api.key("acme", "admin")
        reply = await api.client.request(method, _url(path), json=BODIES.get(path))
        assert reply.status_code == 401
        assert reply.json()["error"]["code"] == "invalid_api_key"
