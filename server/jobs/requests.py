"""Check a job's (or a batch line's) request and build its worker payload.

The same request models validate a job as a synchronous request, so a job
fails at submission for anything the interactive route would refuse.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from openai_compat.chat import ChatCompletionRequest, CompletionRequest
from openai_compat.embeddings import EmbeddingRequest
from server.errors import InvalidRequest
from server.jobs import states
from workers.specs import ModelCatalog, ModelSpec

_MODELS: dict[str, type[BaseModel]] = {
    states.CHAT: ChatCompletionRequest,
    states.COMPLETION: CompletionRequest,
    states.EMBEDDING: EmbeddingRequest,
}


def _describe(exc: ValidationError) -> tuple[str, str | None]:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error.get("loc", ())) or None
    if error.get("type") == "missing":
        return f"Missing required parameter: '{where}'.", where
    return f"Invalid value for '{where}': {error.get('msg')}.", where


def _validate(endpoint: str, body: Any) -> Any:
    if not isinstance(body, dict):
        raise InvalidRequest(
            f"The request must be a JSON object, not {type(body).__name__}.",
            param="request",
        )
    try:
        return _MODELS[endpoint].model_validate(body)
    except ValidationError as exc:
        message, where = _describe(exc)
        raise InvalidRequest(message, param=where) from None


def _model(catalog: ModelCatalog, name: str, kind: str) -> ModelSpec:
    spec = catalog.get(name)
    if spec.kind != kind:
        raise InvalidRequest(
            f"Model {name!r} is a {spec.kind} model; use a {kind} model for "
            "this endpoint.",
            param="model",
        )
    return spec


def build_payload(
    *, endpoint: str, body: Any, catalog: ModelCatalog
) -> tuple[ModelSpec, dict[str, Any]]:
    """The model's spec and the payload a worker runs, or InvalidRequest."""
    states.endpoint_type(endpoint)
    request = _validate(endpoint, body)

    if endpoint == states.EMBEDDING:
        spec = _model(catalog, request.model, "embedding")
        if request.dimensions is not None:
            raise InvalidRequest(
                f"Model {request.model!r} has fixed dimensions; omit 'dimensions'.",
                param="dimensions",
            )
        return spec, {
            "input": request.texts(),
            "encoding_format": request.encoding_format,
        }

    spec = _model(catalog, request.model, "chat")
    if request.stream:
        raise InvalidRequest(
            "A job cannot stream its answer; omit 'stream' and follow "
            "GET /v1/jobs/{id}/events instead.",
            param="stream",
        )
    payload: dict[str, Any] = {"params": request.params()}
    if endpoint == states.CHAT:
        payload["messages"] = request.wire_messages()
    else:
        payload["prompt"] = request.text()
    return spec, payload
