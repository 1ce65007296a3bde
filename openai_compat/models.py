"""The model list as OpenAI's /v1/models returns it."""

from __future__ import annotations

from workers.specs import ModelSpec

_CREATED = 1_700_000_000


def model_object(spec: ModelSpec, *, name: str | None = None) -> dict:
    return {
        "id": name or spec.name,
        "object": "model",
        "created": _CREATED,
        "owned_by": spec.owned_by,
        # Extensions, ignored by OpenAI clients, useful to everyone else.
        "kind": spec.kind,
        "backend": spec.backend,
        "aliases": list(spec.aliases),
        "context_length": spec.context_length,
        "max_tokens": spec.max_tokens,
    }
