"""/v1/collections: collections, their documents, search and answers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from auth.context import Caller
from auth.policy import Scoped
from auth.scopes import INFERENCE, INGEST, READ
from openai_compat.lists import page
from retrieval import answer, answer_stream, public, search, service, store, uploads
from retrieval.chunking import OVERLAP_TOKENS, TARGET_TOKENS
from server.deps import CatalogDep, DispatcherDep, PoolDep, SettingsDep
from server.errors import InvalidRequest

router = APIRouter(prefix="/v1", tags=["collections"])

Writer = Annotated[Caller, Depends(Scoped(INGEST))]
Reader = Annotated[Caller, Depends(Scoped(INGEST, READ))]
Searcher = Annotated[Caller, Depends(Scoped(INGEST, READ, INFERENCE))]
DEFAULT_EMBEDDING = "all-minilm-l6-v2"


class CollectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    metadata: dict[str, Any] = Field(default_factory=dict)
    embedding_model: str = DEFAULT_EMBEDDING
    chunk_tokens: int = Field(TARGET_TOKENS, ge=32, le=512)
    chunk_overlap: int = Field(OVERLAP_TOKENS, ge=0, le=256)


class CollectionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    metadata: dict[str, Any] | None = None


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=4000)
    top_k: int = Field(10, ge=1, le=100)
    mode: search.Mode = "hybrid"
    filters: dict[str, Any] | None = Field(
        None, description="Document metadata that must match (JSON containment)."
    )
    rrf_k: int = Field(search.RRF_K, ge=1, le=1000)


def _ip(request: Request) -> str | None:
    return request.client.host if request.client else None


@router.post("/collections", status_code=201)
async def create_collection(
    body: CollectionCreate, request: Request, caller: Writer, pool: PoolDep,
    catalog: CatalogDep,
) -> dict:  # fmt: skip
    """Create a collection; it remembers its embedding model and chunk size."""
    spec = catalog.get(body.embedding_model)
    if spec.kind != "embedding":
        raise InvalidRequest(
            f"Model {body.embedding_model!r} is a {spec.kind} model; name an "
            "embedding model.",
            param="embedding_model",
        )
    async with pool.acquire() as conn, conn.transaction():
        row = await store.create_collection(
            conn, tenant=caller.tenant, name=body.name, description=body.description,
            metadata=body.metadata, embedding_model=spec.name,
            chunk_tokens=body.chunk_tokens, chunk_overlap=body.chunk_overlap,
        )  # fmt: skip
        await service.record(
            conn, caller, service.COLLECTION_CREATE, row["id"], _ip(request)
        )
    return public.collection(row)


@router.get("/collections")
async def list_collections(
    caller: Reader, pool: PoolDep,
    after: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict:  # fmt: skip
    """The caller's collections, newest first."""
    rows, more = await store.list_collections(
        pool, tenant=caller.tenant, limit=limit, after=after
    )
    return page([public.collection(r) for r in rows], has_more=more)


@router.get("/collections/{ref}")
async def get_collection(ref: str, caller: Reader, pool: PoolDep) -> dict:
    """One collection, by id or name."""
    return public.collection(
        await store.get_collection(pool, tenant=caller.tenant, ref=ref)
    )


@router.patch("/collections/{ref}")
async def update_collection(
    ref: str, body: CollectionUpdate, request: Request, caller: Writer, pool: PoolDep
) -> dict:
    """Rename it or change its description or metadata."""
    async with pool.acquire() as conn, conn.transaction():
        row = await store.update_collection(
            conn, tenant=caller.tenant, ref=ref, name=body.name,
            description=body.description, metadata=body.metadata,
        )  # fmt: skip
        await service.record(
            conn, caller, service.COLLECTION_UPDATE, row["id"], _ip(request)
        )
    return public.collection(row)


@router.delete("/collections/{ref}")
async def delete_collection(
    ref: str, request: Request, caller: Writer, pool: PoolDep, settings: SettingsDep
) -> dict:
    """Delete the collection with every document, chunk and file in it."""
    async with pool.acquire() as conn, conn.transaction():
        row, file_ids = await store.delete_collection(
            conn, tenant=caller.tenant, ref=ref
        )
        await service.record(
            conn, caller, service.COLLECTION_DELETE, row["id"], _ip(request),
            {"documents": len(file_ids)},
        )  # fmt: skip
        await service.remove_files(conn, settings, caller.tenant, file_ids)
    return {"id": row["id"], "object": "collection.deleted", "deleted": True}


@router.post("/collections/{ref}/documents", status_code=202)
async def add_documents(
    ref: str, request: Request, caller: Writer, pool: PoolDep, settings: SettingsDep
) -> dict:
    """Upload files (multipart, one or many ``file`` parts, optional JSON
    ``metadata``) or JSON text; 202 with each document and its job."""
    collection = await store.get_collection(pool, tenant=caller.tenant, ref=ref)
    await store.require_chunks_table(pool)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        stored = uploads.store_texts(await _text_body(request), settings=settings)
    else:
        stored = await uploads.receive_files(request, settings=settings)
    placed = await service.ingest(
        pool=pool, settings=settings, caller=caller, collection=collection,
        stored=stored, client_ip=_ip(request),
    )  # fmt: skip
    return {
        "object": "list",
        "data": [
            {**public.document(p["document"]), "action": p["action"]} for p in placed
        ],
        "job_ids": [p["job"]["id"] for p in placed if p["job"]],
    }


async def _text_body(request: Request) -> uploads.TextDocuments:
    try:
        body = await request.json()
    except ValueError as exc:
        raise InvalidRequest(f"The body is not valid JSON ({exc}).") from exc
    if isinstance(body, dict) and "documents" not in body:
        body = {"documents": [body]}
    try:
        return uploads.TextDocuments.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(f"{where}: {first['msg']}", param=where) from exc


@router.get("/collections/{ref}/documents")
async def list_documents(
    ref: str, caller: Reader, pool: PoolDep,
    state: Annotated[str | None, Query()] = None,
    after: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict:  # fmt: skip
    """Documents in the collection with state, stage and counts."""
    collection = await store.get_collection(pool, tenant=caller.tenant, ref=ref)
    rows, more = await store.list_documents(
        pool, tenant=caller.tenant, collection_id=collection["id"], limit=limit,
        after=after, state=state,
    )  # fmt: skip
    return page([public.document(r) for r in rows], has_more=more)


@router.get("/collections/{ref}/documents/{document_id}")
async def get_document(
    ref: str, document_id: str, caller: Reader, pool: PoolDep
) -> dict:
    """A document's metadata, state, stage, error and chunk count."""
    collection = await store.get_collection(pool, tenant=caller.tenant, ref=ref)
    return public.document(
        await store.get_document(
            pool, tenant=caller.tenant, collection_id=collection["id"],
            document_id=document_id,
        )
    )  # fmt: skip


@router.delete("/collections/{ref}/documents/{document_id}")
async def delete_document(
    ref: str, document_id: str, request: Request, caller: Writer, pool: PoolDep,
    settings: SettingsDep,
) -> dict:  # fmt: skip
    """Delete the document, its chunks, vectors and file."""
    collection = await store.get_collection(pool, tenant=caller.tenant, ref=ref)
    async with pool.acquire() as conn, conn.transaction():
        row = await store.delete_document(
            conn, tenant=caller.tenant, collection_id=collection["id"],
            document_id=document_id,
        )  # fmt: skip
        await service.record(
            conn, caller, service.DOCUMENT_DELETE, document_id, _ip(request),
            {"collection_id": collection["id"]},
        )  # fmt: skip
        if row["file_id"]:
            await service.remove_files(conn, settings, caller.tenant, [row["file_id"]])
    return {"id": document_id, "object": "collection.document.deleted", "deleted": True}


@router.post("/collections/{ref}/search")
async def search_collection(
    ref: str, body: SearchRequest, caller: Searcher, pool: PoolDep,
    dispatcher: DispatcherDep, catalog: CatalogDep,
) -> dict:  # fmt: skip
    """Chunks best matching the query: hybrid, dense or lexical."""
    collection = await store.get_collection(pool, tenant=caller.tenant, ref=ref)
    hits = await run_search(
        pool=pool, dispatcher=dispatcher, catalog=catalog, caller=caller,
        collections=[collection], body=body,
    )  # fmt: skip
    return {"object": "list", "data": [public.hit(h) for h in hits]}


async def run_search(
    *, pool, dispatcher, catalog, caller: Caller, collections: list[dict],
    body: SearchRequest,
) -> list[search.Hit]:  # fmt: skip
    await store.require_chunks_table(pool)
    vector = None
    if body.mode != "lexical":
        vector = await search.embed_query(
            dispatcher, catalog, collections[0]["embedding_model"], body.query
        )
    return await search.search(
        pool, tenant=caller.tenant, collections=[c["id"] for c in collections],
        query=body.query, vector=vector, mode=body.mode, top_k=body.top_k,
        where=body.filters, rrf_k=body.rrf_k,
    )  # fmt: skip


@router.post("/collections/{ref}/answer")
async def answer_collection(
    ref: str, body: answer.AnswerRequest, caller: Searcher, pool: PoolDep,
    dispatcher: DispatcherDep, catalog: CatalogDep,
):  # fmt: skip
    """Answer a question from the collection with numbered citations
    (document, page or section, quoted span), whole or as server-sent
    events; says so instead of inventing when nothing relevant is found."""
    collections = await answer.resolve(pool, caller=caller, refs=[ref])
    spec = answer.chat_model(catalog, body.model)
    grounding = await answer.ground(
        pool=pool, dispatcher=dispatcher, catalog=catalog, caller=caller,
        collections=collections, question=body.question, options=body,
        spec=spec, max_tokens=body.max_tokens,
    )  # fmt: skip
    reply = answer.new_answer(
        dispatcher=dispatcher, pool=pool, spec=spec, grounding=grounding,
        collections=collections,
    )  # fmt: skip
    await reply.start(body.question, body)
    if body.stream:
        return await answer_stream.streamed(reply)
    return await answer.whole(reply)
