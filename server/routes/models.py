"""GET /v1/models and /v1/models/{id}."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from auth.policy import Scoped
from auth.scopes import INFERENCE, READ
from openai_compat.models import model_object
from server.deps import CatalogDep

router = APIRouter(
    prefix="/v1", tags=["models"], dependencies=[Depends(Scoped(INFERENCE, READ))]
)


@router.get("/models")
async def list_models(catalog: CatalogDep) -> dict:
    """List the models this server can serve."""
    return {"object": "list", "data": [model_object(spec) for spec in catalog]}


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, catalog: CatalogDep) -> dict:
    """Describe one model, by name or alias."""
    return model_object(catalog.get(model_id), name=model_id)
