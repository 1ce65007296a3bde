"""POST /v1/embeddings."""

from __future__ import annotations

import base64
import time

import numpy as np
from fastapi import APIRouter, Depends

from auth.policy import Scoped
from auth.scopes import INFERENCE
from openai_compat.embeddings import EmbeddingRequest, embedding_response
from server.deps import CatalogDep, DispatcherDep, PoolDep
from server.dispatch import new_request_id
from server.errors import HearthError, InvalidRequest
from server.usage import UsageRecord, record_usage
from workers import protocol

router = APIRouter(
    prefix="/v1", tags=["embeddings"], dependencies=[Depends(Scoped(INFERENCE))]
)


@router.post("/embeddings")
async def create_embeddings(
    body: EmbeddingRequest,
    catalog: CatalogDep,
    dispatcher: DispatcherDep,
    pool: PoolDep,
) -> dict:
    """Embed one or many texts (or cl100k_base token-id arrays)."""
    started = time.perf_counter()
    spec = catalog.get(body.model)
    if spec.kind != "embedding":
        raise InvalidRequest(
            f"Model {body.model!r} is a {spec.kind} model; use an embedding model.",
            param="model",
        )
    if body.dimensions is not None:
        raise InvalidRequest(
            f"Model {body.model!r} has fixed dimensions; omit 'dimensions'.",
            param="dimensions",
        )
    request_id = new_request_id("emb")
    payload = {"request_id": request_id, "model": spec.name, "input": body.texts()}

    def record(status: int, tokens: int = 0, code: str | None = None) -> None:
        record_usage(
            pool,
            UsageRecord(
                request_id=request_id,
                endpoint="/v1/embeddings",
                model=body.model,
                status=status,
                error_code=code,
                prompt_tokens=tokens,
                latency_ms=(time.perf_counter() - started) * 1000,
            ),
        )

    vectors, usage = None, {}
    try:
        await dispatcher.submit(task=protocol.EMBED_TASK, spec=spec, payload=payload)
        async for event in dispatcher.events(request_id=request_id, model=spec.name):
            if event["type"] == "embeddings":
                raw = base64.b64decode(event["b64"])
                vectors = np.frombuffer(raw, dtype="<f4").reshape(
                    event["rows"], event["dim"]
                )
            elif event["type"] == "done":
                usage = event["usage"]
    except HearthError as exc:
        record(exc.status, code=exc.code)
        raise

    tokens = usage.get("prompt_tokens", 0)
    record(200, tokens)
    return embedding_response(
        model=body.model,
        vectors=vectors,
        encoding_format=body.encoding_format,
        prompt_tokens=tokens,
    )
