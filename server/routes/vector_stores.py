"""/v1/vector_stores: OpenAI's vector stores, their files and search,
over collections (retrieval.vector_stores). Same scopes as collections."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from auth.context import Caller
from auth.policy import Scoped
from auth.scopes import INFERENCE, INGEST, READ
from openai_compat import vector_stores as wire
from openai_compat.lists import page
from retrieval import vector_store_sql as sql
from retrieval import vector_stores
from server.deps import CatalogDep, DispatcherDep, PoolDep, SettingsDep
from server.errors import InvalidRequest
from server.routes.collections import DEFAULT_EMBEDDING

router = APIRouter(prefix="/v1", tags=["vector stores"])

Writer = Annotated[Caller, Depends(Scoped(INGEST))]
Reader = Annotated[Caller, Depends(Scoped(INGEST, READ))]
Searcher = Annotated[Caller, Depends(Scoped(INGEST, READ, INFERENCE))]
Limit = Annotated[int, Query(ge=1, le=100)]
Order = Annotated[Literal["asc", "desc"], Query()]
Cursor = Annotated[str | None, Query(max_length=200)]
FileStatus = Literal["in_progress", "completed", "failed", "cancelled"]


def _ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _one_cursor(after: str | None, before: str | None) -> None:
    if after and before:
        raise InvalidRequest("Send 'after' or 'before', not both.", param="before")


@router.post("/vector_stores")
async def create_vector_store(
    body: wire.VectorStoreCreate, request: Request, caller: Writer, pool: PoolDep,
    settings: SettingsDep,
) -> dict:  # fmt: skip
    """Create a vector store (a collection), attaching ``file_ids``."""
    row = await vector_stores.create(
        pool=pool, settings=settings, caller=caller, body=body,
        embedding_model=DEFAULT_EMBEDDING, client_ip=_ip(request),
    )  # fmt: skip
    return wire.vector_store(row)


@router.get("/vector_stores")
async def list_vector_stores(
    caller: Reader, pool: PoolDep, limit: Limit = 20, order: Order = "desc",
    after: Cursor = None, before: Cursor = None,
) -> dict:  # fmt: skip
    """The caller's vector stores, newest first by default."""
    _one_cursor(after, before)
    rows, more = await sql.list_vector_stores(
        pool, tenant=caller.tenant, limit=limit, order=order, after=after,
        before=before,
    )  # fmt: skip
    return page([wire.vector_store(r) for r in rows], has_more=more)


@router.get("/vector_stores/{vector_store_id}")
async def get_vector_store(vector_store_id: str, caller: Reader, pool: PoolDep):
    """One vector store with its file counts."""
    return wire.vector_store(await vector_stores.get(pool, caller, vector_store_id))


@router.post("/vector_stores/{vector_store_id}")
async def update_vector_store(
    vector_store_id: str, body: wire.VectorStoreUpdate, request: Request,
    caller: Writer, pool: PoolDep,
) -> dict:  # fmt: skip
    """Rename it, change its metadata or its expiry policy."""
    row = await vector_stores.update(
        pool=pool, caller=caller, vector_store_id=vector_store_id, body=body,
        client_ip=_ip(request),
    )  # fmt: skip
    return wire.vector_store(row)


@router.delete("/vector_stores/{vector_store_id}")
async def delete_vector_store(
    vector_store_id: str, request: Request, caller: Writer, pool: PoolDep,
    settings: SettingsDep,
) -> dict:  # fmt: skip
    """Delete the store and its index; the files stay in /v1/files."""
    await vector_stores.delete(
        pool=pool, settings=settings, caller=caller,
        vector_store_id=vector_store_id, client_ip=_ip(request),
    )  # fmt: skip
    return {"id": vector_store_id, "object": "vector_store.deleted", "deleted": True}


def _file(row: dict, store: dict, response: Response) -> dict:
    if row["status"] == "in_progress":
        response.headers.update(wire.POLL_AFTER)
    return wire.vector_store_file(row, store)


@router.post("/vector_stores/{vector_store_id}/files")
async def attach_file(
    vector_store_id: str, body: wire.FileCreate, request: Request,
    response: Response, caller: Writer, pool: PoolDep, settings: SettingsDep,
) -> dict:  # fmt: skip
    """Attach an uploaded file (purpose ``assistants``); it is indexed by
    an ingestion job, and its status says how far that got."""
    store = await vector_stores.get(pool, caller, vector_store_id)
    row = await vector_stores.attach(
        pool=pool, settings=settings, caller=caller, vector_store=store,
        file_id=body.file_id, attributes=body.attributes,
        chunking=body.chunking_strategy, client_ip=_ip(request),
    )  # fmt: skip
    return _file(row, store, response)


@router.get("/vector_stores/{vector_store_id}/files")
async def list_files(
    vector_store_id: str, caller: Reader, pool: PoolDep, limit: Limit = 20,
    order: Order = "desc", after: Cursor = None, before: Cursor = None,
    filter: Annotated[FileStatus | None, Query()] = None,
) -> dict:  # fmt: skip
    """The store's files with their status, newest first by default."""
    _one_cursor(after, before)
    store = await vector_stores.get(pool, caller, vector_store_id)
    rows, more = await sql.list_files(
        pool, tenant=caller.tenant, collection_id=store["collection_id"],
        limit=limit, order=order, after=after, before=before, status=filter,
    )  # fmt: skip
    return page([wire.vector_store_file(r, store) for r in rows], has_more=more)


@router.get("/vector_stores/{vector_store_id}/files/{file_id}")
async def get_file(
    vector_store_id: str, file_id: str, response: Response, caller: Reader,
    pool: PoolDep,
) -> dict:  # fmt: skip
    """One attached file: status, last error, attributes."""
    store = await vector_stores.get(pool, caller, vector_store_id)
    row = await vector_stores.file(pool, caller, store, file_id)
    return _file(row, store, response)


@router.post("/vector_stores/{vector_store_id}/files/{file_id}")
async def update_file(
    vector_store_id: str, file_id: str, body: wire.FileUpdate, request: Request,
    response: Response, caller: Writer, pool: PoolDep,
) -> dict:  # fmt: skip
    """Replace the file's attributes."""
    store = await vector_stores.get(pool, caller, vector_store_id)
    row = await vector_stores.set_attributes(
        pool=pool, caller=caller, vector_store=store, file_id=file_id,
        attributes=body.attributes, client_ip=_ip(request),
    )  # fmt: skip
    return _file(row, store, response)


@router.delete("/vector_stores/{vector_store_id}/files/{file_id}")
async def detach_file(
    vector_store_id: str, file_id: str, request: Request, caller: Writer,
    pool: PoolDep, settings: SettingsDep,
) -> dict:  # fmt: skip
    """Remove the file from the store (the upload itself stays)."""
    store = await vector_stores.get(pool, caller, vector_store_id)
    await vector_stores.detach(
        pool=pool, settings=settings, caller=caller, vector_store=store,
        file_id=file_id, client_ip=_ip(request),
    )  # fmt: skip
    return {"id": file_id, "object": "vector_store.file.deleted", "deleted": True}


@router.get("/vector_stores/{vector_store_id}/files/{file_id}/content")
async def file_content(
    vector_store_id: str, file_id: str, caller: Reader, pool: PoolDep
) -> dict:
    """The text extracted from the file (empty until it is indexed)."""
    store = await vector_stores.get(pool, caller, vector_store_id)
    row = await vector_stores.file(pool, caller, store, file_id)
    data = [{"type": "text", "text": row["text"]}] if row["text"] else []
    return {
        "object": "vector_store.file_content.page",
        "data": data,
        "has_more": False,
        "next_page": None,
    }


@router.post("/vector_stores/{vector_store_id}/search")
async def search_vector_store(
    vector_store_id: str, body: wire.SearchRequest, caller: Searcher,
    pool: PoolDep, dispatcher: DispatcherDep, catalog: CatalogDep,
) -> dict:  # fmt: skip
    """Chunks best matching the query (hybrid), with their file and
    attributes; ``filters`` select files by attribute."""
    store = await vector_stores.get(pool, caller, vector_store_id)
    found = await vector_stores.run_search(
        pool=pool, dispatcher=dispatcher, catalog=catalog, caller=caller,
        vector_store=store, body=body,
    )  # fmt: skip
    return wire.search_page(body.queries(), found)


def _batch(row: dict, response: Response) -> dict:
    body = wire.file_batch(row)
    if body["status"] == "in_progress":
        response.headers.update(wire.POLL_AFTER)
    return body


@router.post("/vector_stores/{vector_store_id}/file_batches")
async def create_file_batch(
    vector_store_id: str, body: wire.FileBatchCreate, request: Request,
    response: Response, caller: Writer, pool: PoolDep, settings: SettingsDep,
) -> dict:  # fmt: skip
    """Attach several uploaded files at once; the batch counts them."""
    store = await vector_stores.get(pool, caller, vector_store_id)
    row = await vector_stores.create_batch(
        pool=pool, settings=settings, caller=caller, vector_store=store,
        entries=body.entries(), client_ip=_ip(request),
    )  # fmt: skip
    return _batch(row, response)


@router.get("/vector_stores/{vector_store_id}/file_batches/{batch_id}")
async def get_file_batch(
    vector_store_id: str, batch_id: str, response: Response, caller: Reader,
    pool: PoolDep,
) -> dict:  # fmt: skip
    """A batch's status and file counts."""
    store = await vector_stores.get(pool, caller, vector_store_id)
    return _batch(await vector_stores.batch(pool, caller, store, batch_id), response)


@router.post("/vector_stores/{vector_store_id}/file_batches/{batch_id}/cancel")
async def cancel_file_batch(
    vector_store_id: str, batch_id: str, request: Request, response: Response,
    caller: Writer, pool: PoolDep, dispatcher: DispatcherDep,
    settings: SettingsDep,
) -> dict:  # fmt: skip
    """Cancel the batch's files still waiting or being indexed."""
    store = await vector_stores.get(pool, caller, vector_store_id)
    row = await vector_stores.cancel_batch(
        pool=pool, redis=dispatcher.redis, namespace=settings.namespace,
        caller=caller, vector_store=store, batch_id=batch_id,
        client_ip=_ip(request),
    )  # fmt: skip
    return _batch(row, response)


@router.get("/vector_stores/{vector_store_id}/file_batches/{batch_id}/files")
async def list_batch_files(
    vector_store_id: str, batch_id: str, caller: Reader, pool: PoolDep,
    limit: Limit = 20, order: Order = "desc", after: Cursor = None,
    before: Cursor = None, filter: Annotated[FileStatus | None, Query()] = None,
) -> dict:  # fmt: skip
    """The batch's files with their status."""
    _one_cursor(after, before)
    store = await vector_stores.get(pool, caller, vector_store_id)
    await vector_stores.batch(pool, caller, store, batch_id)
    rows, more = await sql.list_files(
        pool, tenant=caller.tenant, collection_id=store["collection_id"],
        limit=limit, order=order, after=after, before=before, status=filter,
        batch_id=batch_id,
    )  # fmt: skip
    return page([wire.vector_store_file(r, store) for r in rows], has_more=more)
