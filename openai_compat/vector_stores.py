"""OpenAI's vector stores on the wire: request bodies and the objects
clients see (``vector_store``, ``vector_store.file``, search results)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from retrieval.attribute_filters import Filter
from server.errors import InvalidRequest
from server.jobs.public import unix

# Hearth's chunker and embedding window, also the limits of collections.
MIN_CHUNK_TOKENS, MAX_CHUNK_TOKENS, MAX_OVERLAP_TOKENS = 32, 512, 256
# OpenAI answers a poll sooner than its SDK's default second when asked.
POLL_AFTER = {"openai-poll-after-ms": "250"}
_LAST_ERROR_CODES = {"unparseable_document": "invalid_file"}


class _Body(BaseModel):
    # SDKs newer than this file may send fields it does not know; ignore them.
    model_config = ConfigDict(extra="ignore")


class ExpiresAfter(_Body):
    anchor: Literal["last_active_at"]
    days: int = Field(ge=1, le=365)


class StaticChunking(_Body):
    max_chunk_size_tokens: int
    chunk_overlap_tokens: int


class ChunkingStrategy(_Body):
    type: Literal["auto", "static"]
    static: StaticChunking | None = None

    @model_validator(mode="after")
    def _static_needs_sizes(self) -> ChunkingStrategy:
        if self.type == "static" and self.static is None:
            raise ValueError("a 'static' strategy needs 'static' sizes")
        return self

    def sizes(self) -> tuple[int, int] | None:
        """(tokens, overlap) for a static strategy; None for ``auto``."""
        if self.type == "auto" or self.static is None:
            return None
        tokens = self.static.max_chunk_size_tokens
        overlap = self.static.chunk_overlap_tokens
        if not MIN_CHUNK_TOKENS <= tokens <= MAX_CHUNK_TOKENS:
            raise InvalidRequest(
                f"max_chunk_size_tokens {tokens} is outside {MIN_CHUNK_TOKENS}-"
                f"{MAX_CHUNK_TOKENS}: the embedding model reads at most "
                f"{MAX_CHUNK_TOKENS} tokens of a chunk; use a smaller size.",
                param="chunking_strategy.static.max_chunk_size_tokens",
            )
        if not 0 <= overlap <= min(tokens // 2, MAX_OVERLAP_TOKENS):
            raise InvalidRequest(
                f"chunk_overlap_tokens {overlap} must be between 0 and half of "
                f"max_chunk_size_tokens (at most {MAX_OVERLAP_TOKENS}).",
                param="chunking_strategy.static.chunk_overlap_tokens",
            )
        return tokens, overlap


class VectorStoreCreate(_Body):
    name: str | None = Field(None, max_length=256)
    description: str | None = Field(None, max_length=2000)
    file_ids: list[str] = Field(default_factory=list, max_length=500)
    metadata: dict[str, Any] | None = None
    expires_after: ExpiresAfter | None = None
    chunking_strategy: ChunkingStrategy | None = None


class VectorStoreUpdate(_Body):
    name: str | None = Field(None, max_length=256)
    metadata: dict[str, Any] | None = None
    # Sent as null, it removes the policy; left out, it keeps it.
    expires_after: ExpiresAfter | None = None


class FileCreate(_Body):
    file_id: str = Field(min_length=1, max_length=200)
    attributes: dict[str, Any] | None = None
    chunking_strategy: ChunkingStrategy | None = None


class BatchFile(_Body):
    file_id: str = Field(min_length=1, max_length=200)
    attributes: dict[str, Any] | None = None
    chunking_strategy: ChunkingStrategy | None = None


class FileBatchCreate(_Body):
    """``file_ids`` sharing ``attributes`` and ``chunking_strategy``, or
    ``files`` each with its own."""

    file_ids: list[str] | None = Field(None, min_length=1, max_length=500)
    files: list[BatchFile] | None = Field(None, min_length=1, max_length=500)
    attributes: dict[str, Any] | None = None
    chunking_strategy: ChunkingStrategy | None = None

    def entries(self) -> list[BatchFile]:
        if (self.file_ids is None) == (self.files is None):
            raise InvalidRequest(
                "Send either 'file_ids' or 'files', not both and not neither.",
                param="file_ids",
            )
        if self.files is not None:
            return self.files
        return [
            BatchFile(
                file_id=file_id,
                attributes=self.attributes,
                chunking_strategy=self.chunking_strategy,
            )  # fmt: skip
            for file_id in dict.fromkeys(self.file_ids)
        ]


class FileUpdate(_Body):
    attributes: dict[str, Any] | None


class RankingOptions(_Body):
    ranker: Literal["none", "auto", "default-2024-11-15"] | None = None
    score_threshold: float | None = Field(None, ge=0.0, le=1.0)


class SearchRequest(_Body):
    query: str | list[str]
    filters: Filter | None = None
    max_num_results: int = Field(10, ge=1, le=50)
    ranking_options: RankingOptions | None = None
    rewrite_query: bool = False

    def queries(self) -> list[str]:
        queries = [self.query] if isinstance(self.query, str) else self.query
        queries = [q for q in queries if q.strip()]
        if not queries or sum(map(len, queries)) > 4000:
            raise InvalidRequest(
                "Send a non-empty 'query' of at most 4000 characters.", param="query"
            )
        return queries


def _expires_at(row: dict[str, Any]) -> int | None:
    days = row["expires_after_days"]
    if days is None:
        return None
    return unix(row["last_active_at"] + timedelta(days=days))


def is_expired(row: dict[str, Any]) -> bool:
    expires_at = _expires_at(row)
    return expires_at is not None and expires_at <= time.time()


def vector_store(row: dict[str, Any]) -> dict[str, Any]:
    days = row["expires_after_days"]
    if is_expired(row):
        status = "expired"
    else:
        status = "in_progress" if row["in_progress"] else "completed"
    return {
        "id": row["id"],
        "object": "vector_store",
        "created_at": unix(row["created_at"]),
        "name": row["name"],
        "description": row["description"],
        "usage_bytes": row["usage_bytes"],
        "file_counts": {
            name: row[name]
            for name in ("in_progress", "completed", "failed", "cancelled", "total")
        },
        "status": status,
        "last_active_at": unix(row["last_active_at"]),
        "metadata": row["metadata"],
        "expires_after": None
        if days is None
        else {"anchor": "last_active_at", "days": days},
        "expires_at": _expires_at(row),
        "tenant": row["tenant"],
    }


def _last_error(row: dict[str, Any]) -> dict[str, str] | None:
    if row["status"] != "failed":
        return None
    error = row["error"] or row["job_error"] or {}
    return {
        "code": _LAST_ERROR_CODES.get(error.get("code"), "server_error"),
        "message": error.get("message") or "The file could not be indexed.",
    }


def vector_store_file(row: dict[str, Any], store: dict[str, Any]) -> dict[str, Any]:
    """``row`` from retrieval.vector_store_sql; ``store`` is its vector store."""
    tokens = row["file_chunk_tokens"] or store["chunk_tokens"]
    overlap = row["file_chunk_overlap"]
    overlap = store["chunk_overlap"] if overlap is None else overlap
    return {
        "id": row["id"],
        "object": "vector_store.file",
        "created_at": unix(row["created_at"]),
        "vector_store_id": store["id"],
        "status": row["status"],
        "last_error": _last_error(row),
        "usage_bytes": row["bytes"] if row["status"] == "completed" else 0,
        "attributes": row["metadata"],
        "chunking_strategy": {
            "type": "static",
            "static": {
                "max_chunk_size_tokens": tokens,
                "chunk_overlap_tokens": overlap,
            },
        },
        "tenant": row["tenant"],
    }


def batch_status(row: dict[str, Any]) -> str:
    if row["cancelled_at"] is not None:
        return "cancelled"
    if row["in_progress"]:
        return "in_progress"
    if row["total"] and row["failed"] == row["total"]:
        return "failed"
    return "completed"


def file_batch(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "vector_store.files_batch",
        "created_at": unix(row["created_at"]),
        "vector_store_id": row["vector_store_id"],
        "status": batch_status(row),
        "file_counts": {
            name: row[name]
            for name in ("in_progress", "completed", "failed", "cancelled", "total")
        },
        "tenant": row["tenant"],
    }


def search_page(queries: list[str], results: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "object": "vector_store.search_results.page",
        "search_query": queries,
        "data": results,
        "has_more": False,
        "next_page": None,
    }
