"""POST /v1/chat/completions and /v1/completions."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from auth.policy import Scoped
from auth.scopes import INFERENCE
from openai_compat.chat import ChatCompletionRequest, CompletionRequest
from retrieval import grounded_chat
from server.deps import CatalogDep, DispatcherDep, PoolDep
from server.dispatch import new_request_id
from server.errors import InvalidRequest
from server.generation import Generation
from workers import protocol
from workers.specs import ModelSpec

router = APIRouter(
    prefix="/v1", tags=["chat"], dependencies=[Depends(Scoped(INFERENCE))]
)


def _chat_model(catalog, name: str) -> ModelSpec:
    spec = catalog.get(name)
    if spec.kind != "chat":
        raise InvalidRequest(
            f"Model {name!r} is an {spec.kind} model; use a chat model here.",
            param="model",
        )
    return spec


async def _generate(*, dispatcher, pool, spec, request_id, body, payload, chat):
    await dispatcher.submit(task=protocol.GENERATE_TASK, spec=spec, payload=payload)
    generation = Generation(
        dispatcher=dispatcher,
        request_id=request_id,
        model=body.model,
        endpoint="/v1/chat/completions" if chat else "/v1/completions",
        chat=chat,
        n=body.n or 1,
        include_usage=body.include_usage,
        pool=pool,
    )
    return await (generation.streamed() if body.stream else generation.whole())


@router.post("/chat/completions")
async def chat_completions(
    body: ChatCompletionRequest,
    catalog: CatalogDep,
    dispatcher: DispatcherDep,
    pool: PoolDep,
):
    """Create a chat completion, whole or streamed as server-sent events;
    with ``collections``, grounded in them and cited."""
    spec = _chat_model(catalog, body.model)
    if body.collections:
        return await grounded_chat.complete(
            body=body, spec=spec, pool=pool, dispatcher=dispatcher, catalog=catalog,
        )  # fmt: skip
    request_id = new_request_id("chatcmpl")
    payload = {
        "request_id": request_id,
        "model": spec.name,
        "messages": body.wire_messages(),
        "params": body.params(),
    }
    return await _generate(
        dispatcher=dispatcher,
        pool=pool,
        spec=spec,
        request_id=request_id,
        body=body,
        payload=payload,
        chat=True,
    )


@router.post("/completions")
async def completions(
    body: CompletionRequest,
    catalog: CatalogDep,
    dispatcher: DispatcherDep,
    pool: PoolDep,
):
    """Complete a plain prompt, whole or streamed."""
    spec = _chat_model(catalog, body.model)
    request_id = new_request_id("cmpl")
    payload = {
        "request_id": request_id,
        "model": spec.name,
        "prompt": body.text(),
        "params": body.params(),
    }
    return await _generate(
        dispatcher=dispatcher,
        pool=pool,
        spec=spec,
        request_id=request_id,
        body=body,
        payload=payload,
        chat=False,
    )
