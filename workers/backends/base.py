"""The interface every model backend implements, and how backends register.

A backend object is built once per worker process, when the worker starts,
and is then called from many task threads at once. It must batch those
concurrent calls itself (that is where the throughput comes from) and must
be safe to call from any thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from server.settings import Settings
    from workers.specs import ModelSpec


@dataclass(frozen=True, kw_only=True)
class GenerationParams:
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    n: int = 1

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationParams:
        data = dict(data)
        data["stop"] = tuple(data.get("stop") or ())
        return cls(**data)


@dataclass(frozen=True, kw_only=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


class Sink(Protocol):
    """Where a generation sends its output, as it is produced."""

    def delta(self, index: int, text: str) -> None: ...

    def choice_end(self, index: int, finish_reason: str) -> None: ...

    def cancelled(self) -> bool:
        """True once the client has gone; generation should stop soon."""
        ...


@dataclass(kw_only=True)
class ChatInput:
    """Either chat messages (the model's template applies) or a raw prompt."""

    messages: list[dict[str, Any]] | None = None
    prompt: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class ChatBackend(Protocol):
    spec: ModelSpec

    def generate(
        self,
        *,
        request_id: str,
        chat: ChatInput,
        params: GenerationParams,
        sink: Sink,
    ) -> Usage:
        """Generate to ``sink``; blocks until every choice has ended.

        Raises ContextLengthExceeded when the prompt does not fit, and
        InvalidRequest for inputs the model cannot take.
        """
        ...

    def close(self) -> None: ...


class EmbeddingBackend(Protocol):
    spec: ModelSpec

    def embed(self, *, request_id: str, texts: list[str]) -> tuple[np.ndarray, int]:
        """Embed ``texts``; returns float32 vectors (rows) and tokens used."""
        ...

    def close(self) -> None: ...


BackendFactory = Callable[["ModelSpec", "Settings"], "ChatBackend | EmbeddingBackend"]

_FACTORIES: dict[str, BackendFactory] = {}


def register_backend(name: str) -> Callable[[BackendFactory], BackendFactory]:
    """Register a backend factory under ``name`` (a ModelSpec.backend value)."""

    def decorator(factory: BackendFactory) -> BackendFactory:
        _FACTORIES[name] = factory
        return factory

    return decorator


def backend_factory(name: str) -> BackendFactory:
    return _FACTORIES[name]


def registered_backends() -> list[str]:
    """Names of every registered backend, sorted."""
    return sorted(_FACTORIES)
