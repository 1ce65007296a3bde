"""What clients see of collections, documents and search hits."""

from __future__ import annotations

import json
from typing import Any

from server.jobs.public import unix


def collection(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "collection",
        "name": row["name"],
        "description": row["description"],
        "metadata": row["metadata"],
        "tenant": row["tenant"],
        "embedding_model": row["embedding_model"],
        "chunk_tokens": row["chunk_tokens"],
        "chunk_overlap": row["chunk_overlap"],
        "document_count": row.get("document_count", 0),
        "created_at": unix(row["created_at"]),
        "updated_at": unix(row["updated_at"]),
    }


def document(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "collection.document",
        "collection_id": row["collection_id"],
        "tenant": row["tenant"],
        "filename": row["filename"],
        "title": row["title"],
        "metadata": row["metadata"],
        "bytes": row["bytes"],
        "sha256": row["content_sha256"],
        "format": row["format"],
        "pages": row["pages"],
        "state": row["state"],
        "stage": row["stage"],
        "progress": row["progress"],
        "error": row["error"],
        "job_id": row["job_id"],
        "chunk_count": row["chunk_count"],
        "created_at": unix(row["created_at"]),
        "updated_at": unix(row["updated_at"]),
    }


def hit(h) -> dict[str, Any]:
    row = h.row
    return {
        "object": "search.result",
        "chunk_id": row["id"],
        "document_id": row["document_id"],
        "collection_id": row["collection_id"],
        "filename": row["filename"],
        "title": row["title"],
        "metadata": _json(row["metadata"]),
        "score": h.score,
        "scores": {"dense": h.dense, "lexical": h.lexical},
        "text": row["text"],
        "section": row["section"],
        "page_start": row["page_start"],
        "page_end": row["page_end"],
        "char_start": row["char_start"],
        "char_end": row["char_end"],
        "ordinal": row["ordinal"],
    }


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else (value or {})
