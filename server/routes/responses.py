"""POST /v1/responses: OpenAI's Responses API, with file_search over
vector stores (server.responses)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from auth.context import Caller
from auth.policy import Scoped
from auth.scopes import INFERENCE
from openai_compat.responses import ResponseCreate
from server import responses
from server.deps import CatalogDep, DispatcherDep, PoolDep

router = APIRouter(prefix="/v1", tags=["responses"])

Inference = Annotated[Caller, Depends(Scoped(INFERENCE))]


@router.post("/responses")
async def create_response(
    body: ResponseCreate, caller: Inference, pool: PoolDep,
    dispatcher: DispatcherDep, catalog: CatalogDep,
):  # fmt: skip
    """Generate a response, whole or as response events; with the
    file_search tool, grounded in the caller's vector stores and cited."""
    spec = responses.chat_model(catalog, body.model)
    tool = body.check()
    reply = responses.Reply(
        dispatcher=dispatcher, pool=pool, spec=spec, body=body, turns=body.turns()
    )
    if tool is not None:
        await reply.ground(catalog=catalog, caller=caller, tool=tool)
    await reply.start()
    if body.stream:
        return await responses.streamed(reply)
    return await responses.whole(reply)
