"""/v1/responses: OpenAI's Responses API, with file_search over vector
stores (server.responses) and stored responses (server.response_store)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from auth.context import Caller
from auth.policy import Scoped
from auth.scopes import INFERENCE
from openai_compat.responses import ResponseCreate, history
from server import response_store, responses
from server.deps import CatalogDep, DispatcherDep, PoolDep
from server.errors import InvalidRequest

router = APIRouter(prefix="/v1", tags=["responses"])

# Reading or deleting a stored response needs what creating it needed.
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
    turns = await _earlier_turns(pool, caller, body) + body.turns()
    reply = responses.Reply(
        dispatcher=dispatcher, pool=pool, spec=spec, body=body,
        tenant=caller.tenant, turns=turns,
    )  # fmt: skip
    if tool is not None:
        await reply.ground(catalog=catalog, caller=caller, tool=tool)
    await reply.start()
    if body.stream:
        return await responses.streamed(reply)
    return await responses.whole(reply)


async def _earlier_turns(pool, caller: Caller, body: ResponseCreate) -> list[dict]:
    """The conversation of ``previous_response_id`` (its instructions are
    not carried over, as with OpenAI)."""
    if body.previous_response_id is None:
        return []
    previous = await response_store.find(
        pool, tenant=caller.tenant, response_id=body.previous_response_id
    )
    if previous is None:
        raise InvalidRequest(
            f"previous_response_id {body.previous_response_id!r} names no stored "
            'response of yours; it may have been sent with "store": false or '
            "deleted. Send the earlier turns in 'input' instead.",
            param="previous_response_id",
        )
    return history(previous["conversation"])


@router.get("/responses/{response_id}")
async def get_response(response_id: str, caller: Inference, pool: PoolDep):
    """A stored response, as it was returned."""
    row = await response_store.get(pool, tenant=caller.tenant, response_id=response_id)
    return row["response"]


@router.delete("/responses/{response_id}")
async def delete_response(response_id: str, caller: Inference, pool: PoolDep):
    """Forget a stored response; the turns that continued from it stay."""
    return await response_store.delete(
        pool, tenant=caller.tenant, response_id=response_id
    )


@router.get("/responses/{response_id}/input_items")
async def list_input_items(
    response_id: str, caller: Inference, pool: PoolDep,
    after: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
):  # fmt: skip
    """The input a stored response answered, earlier turns included."""
    row = await response_store.get(pool, tenant=caller.tenant, response_id=response_id)
    return response_store.input_items(
        row["conversation"], limit=limit, order=order, after=after
    )
