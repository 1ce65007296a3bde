"""What clients see of jobs, files and batches (OpenAI's shapes for the
latter two); never the rows as they are."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from server.jobs import states


def unix(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


def job(row: dict[str, Any], *, position: int | None = None, full: bool = True):
    body = {
        "id": row["id"],
        "object": "job",
        # Ingestion jobs (retrieval.pipeline) are not an OpenAI endpoint.
        "type": states.ENDPOINT_TYPES.get(row["endpoint"], "ingestion"),
        "endpoint": row["endpoint"],
        "model": row["model"],
        "state": row["state"],
        "priority": row["priority"],
        "tenant": row["tenant"],
        "created_at": unix(row["created_at"]),
        "started_at": unix(row["started_at"]),
        "finished_at": unix(row["finished_at"]),
        "deadline": unix(row["deadline"]),
        "attempts": row["attempt"],
        "max_attempts": row["max_attempts"],
        "attempt_history": row["attempts"],
        "queue_position": position,
        "progress": row["progress"],
        "error": row["error"],
        "idempotency_key": row["idempotency_key"],
        "webhook_url": row["webhook_url"],
        "batch_id": row["batch_id"],
        "custom_id": row["custom_id"],
    }
    if full:
        body["request"] = row["request"]
        body["result"] = row["result"]
    return body


def file(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "file",
        "bytes": row["bytes"],
        "created_at": unix(row["created_at"]),
        "filename": row["filename"],
        "purpose": row["purpose"],
        "status": "processed",
        "status_details": None,
        "tenant": row["tenant"],
    }


def batch(row: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
    errors = row["errors"]
    return {
        "id": row["id"],
        "object": "batch",
        "endpoint": row["endpoint"],
        "errors": {"object": "list", "data": errors} if errors else None,
        "input_file_id": row["input_file_id"],
        "completion_window": row["completion_window"],
        "status": row["status"],
        "output_file_id": row["output_file_id"],
        "error_file_id": row["error_file_id"],
        "created_at": unix(row["created_at"]),
        "in_progress_at": unix(row["in_progress_at"]),
        "expires_at": unix(row["expires_at"]),
        "finalizing_at": unix(row["finalizing_at"]),
        "completed_at": unix(row["completed_at"]),
        "failed_at": unix(row["failed_at"]),
        "expired_at": unix(row["expired_at"]),
        "cancelling_at": unix(row["cancelling_at"]),
        "cancelled_at": unix(row["cancelled_at"]),
        "request_counts": counts,
        "metadata": row["metadata"],
        "tenant": row["tenant"],
    }
