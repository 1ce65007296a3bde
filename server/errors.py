"""Hearth's one exception tree, shared by the API, the workers and the CLI.

    HearthError                      500 internal_error
    ├── InvalidRequest               400 invalid_request_error
    │   ├── ContextLengthExceeded    400 context_length_exceeded
    │   ├── UnsupportedParameter     400 unsupported_parameter
    │   └── UnsupportedTool          400 unsupported_tool
    ├── AuthenticationError          401 invalid_api_key (with WWW-Authenticate)
    ├── PermissionDenied             403 insufficient_scope
    ├── ModelNotFound                404 model_not_found
    ├── NotFound                     404 not_found
    ├── Conflict                     409 conflict
    ├── PayloadTooLarge              413 file_too_large
    ├── UnparseableDocument          422 unparseable_document
    ├── QueueFull                    429 queue_full (with Retry-After)
    ├── JobBacklogFull               429 job_backlog_full (with Retry-After)
    ├── RateLimited                  429 rate_limit_exceeded (with Retry-After)
    ├── ServiceUnavailable           503 service_unavailable
    │   ├── NoLiveWorker             503 model_unavailable
    │   ├── BrokerUnavailable        503 broker_unavailable
    │   ├── DatabaseUnavailable      503 database_unavailable
    │   └── RetrievalUnavailable     503 retrieval_unavailable
    ├── ModelRuntimeError            500 model_error
    ├── RemoteEngineError            502 upstream_error
    ├── RequestTimeout               504 timeout
    └── ConfigError                  (startup only; the CLI prints it)

Errors cross the queue as ``to_dict()`` and come back with ``from_dict()``,
so a worker's error reaches the client with the same status and code.
"""

from __future__ import annotations

from typing import Any, ClassVar


class HearthError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    type: ClassVar[str] = "server_error"
    # Extra response headers the API sends with this error.
    headers: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "param": self.param,
            "retry_after": self.retry_after,
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> HearthError:
        cls = _BY_CODE.get(data.get("code", ""), HearthError)
        return cls(
            data.get("message", "unknown error"),
            param=data.get("param"),
            retry_after=data.get("retry_after"),
        )


class InvalidRequest(HearthError):
    status = 400
    code = "invalid_request_error"
    type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class UnsupportedParameter(InvalidRequest):
    """A valid OpenAI parameter that Hearth does not implement, sent with a
    value that would need it (``conversation``, ``background``)."""

    code = "unsupported_parameter"


class UnsupportedTool(InvalidRequest):
    """A Responses tool other than ``file_search``."""

    code = "unsupported_tool"


class AuthenticationError(HearthError):
    status = 401
    code = "invalid_api_key"
    type = "invalid_request_error"
    headers = {"WWW-Authenticate": 'Bearer realm="hearth"'}


class PermissionDenied(HearthError):
    status = 403
    code = "insufficient_scope"
    type = "invalid_request_error"


class ModelNotFound(HearthError):
    status = 404
    code = "model_not_found"
    type = "invalid_request_error"


class NotFound(HearthError):
    status = 404
    code = "not_found"
    type = "invalid_request_error"


class Conflict(HearthError):
    """The object is in a state that does not allow this (cancel a finished
    job, retry one that has not failed, reuse an idempotency key)."""

    status = 409
    code = "conflict"
    type = "invalid_request_error"


class PayloadTooLarge(HearthError):
    status = 413
    code = "file_too_large"
    type = "invalid_request_error"


class UnparseableDocument(HearthError):
    """A document whose bytes cannot become text: encrypted, scanned, corrupt,
    or of a format we do not read. Retrying cannot help; the user must act."""

    status = 422
    code = "unparseable_document"
    type = "invalid_request_error"


class QueueFull(HearthError):
    status = 429
    code = "queue_full"
    type = "rate_limit_error"


class JobBacklogFull(HearthError):
    status = 429
    code = "job_backlog_full"
    type = "rate_limit_error"


class RateLimited(HearthError):
    status = 429
    code = "rate_limit_exceeded"
    type = "rate_limit_error"


class ServiceUnavailable(HearthError):
    status = 503
    code = "service_unavailable"


class NoLiveWorker(ServiceUnavailable):
    code = "model_unavailable"


class BrokerUnavailable(ServiceUnavailable):
    code = "broker_unavailable"


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"


class RetrievalUnavailable(ServiceUnavailable):
    """The database has no pgvector, so collections cannot be stored."""

    code = "retrieval_unavailable"


class ModelRuntimeError(HearthError):
    code = "model_error"


class RemoteEngineError(HearthError):
    status = 502
    code = "upstream_error"


class RequestTimeout(HearthError):
    status = 504
    code = "timeout"


class ConfigError(HearthError):
    code = "config_error"


def _all_subclasses(cls: type[HearthError]) -> list[type[HearthError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_all_subclasses(sub))
    return found


_BY_CODE: dict[str, type[HearthError]] = {
    cls.code: cls for cls in _all_subclasses(HearthError)
}
