"""The ``sentence-transformers`` backend: text embeddings, batched across calls.

One engine thread owns the model. Concurrent ``embed()`` calls queue their
texts; the engine takes up to ``spec.max_batch_size`` texts at a time (a
call with more is split), waits a few milliseconds after the first arrival
for company, and runs one ``encode`` for all of them. Texts keep arriving
while a batch runs, so under load batches fill without waiting at all.

Vectors are normalized to unit length, as OpenAI's are. Inputs longer than
the model's maximum sequence length (256 tokens for all-MiniLM-L6-v2) are
truncated, as sentence-transformers does; usage counts the tokens actually
embedded, after truncation.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from server.errors import ConfigError, HearthError, InvalidRequest, ModelRuntimeError
from server.metrics import EMBED_BATCH_SIZE
from workers.backends.base import register_backend

if TYPE_CHECKING:
    import numpy as np

    from server.settings import Settings
    from workers.specs import ModelSpec

log = structlog.get_logger(__name__)

# How long the engine waits after a first text for others to join its batch.
GATHER_S = 0.004


@register_backend("sentence-transformers")
def build_sentence_backend(spec: ModelSpec, settings: Settings) -> SentenceEmbedder:
    return SentenceEmbedder(spec=spec, settings=settings)


@dataclass(eq=False)
class _Piece:
    """Up to a batch's worth of one call's texts."""

    call: _Call
    start: int
    texts: list[str]


@dataclass(eq=False)
class _Call:
    count: int
    vectors: list[Any] = field(default_factory=list)
    tokens: int = 0
    remaining: int = 0
    error: HearthError | None = None
    done: threading.Event = field(default_factory=threading.Event)


class SentenceEmbedder:
    """An embedding model on sentence-transformers, batched across callers."""

    def __init__(self, *, spec: ModelSpec, settings: Settings) -> None:
        from workers.device import resolve_placement

        self.spec = spec
        started = time.perf_counter()
        placement = resolve_placement(
            model=spec.name,
            device=spec.device,
            dtype=spec.dtype,
            default_device=settings.device,
        )
        self.model = _load(spec, device=placement.device)
        if placement.dtype != self.model.dtype:
            self.model.to(placement.dtype)
        self.dimensions = int(self.model.get_embedding_dimension())
        self.encode_calls = 0

        self._cond = threading.Condition()
        self._queue: deque[_Piece] = deque()
        # How many pieces at the queue's head are interactive.
        self._urgent = 0
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, name=f"embed-{spec.name}", daemon=True
        )
        self._thread.start()
        log.info(
            "embedding model loaded",
            model=spec.name,
            device=placement.device,
            dims=self.dimensions,
            load_s=round(time.perf_counter() - started, 2),
        )

    def embed(
        self, *, request_id: str, texts: list[str], background: bool = False
    ) -> tuple[np.ndarray, int]:
        """Embed ``texts``; returns unit-length float32 rows and tokens used.
        ``background`` texts (ingestion) wait behind every other caller's."""
        import numpy as np

        for number, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidRequest(
                    f"input[{number}] is a {type(text).__name__}; send strings",
                    param="input",
                )
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32), 0

        call = _Call(count=len(texts), vectors=[None] * len(texts))
        size = self.spec.max_batch_size
        pieces = [
            _Piece(call, start, texts[start : start + size])
            for start in range(0, len(texts), size)
        ]
        call.remaining = len(pieces)
        with self._cond:
            if self._closed:
                raise ModelRuntimeError(
                    f"model {self.spec.name!r} is shutting down; retry the request"
                )
            if background:
                self._queue.extend(pieces)
            else:
                # Ahead of queued ingestion, behind earlier interactive calls:
                # a bulk upload must not hold a query's vector for seconds.
                for piece in pieces:
                    self._queue.insert(self._urgent, piece)
                    self._urgent += 1
            self._cond.notify()

        call.done.wait()
        if call.error is not None:
            raise call.error
        return np.stack(call.vectors).astype(np.float32, copy=False), call.tokens

    def embed_background(
        self, *, request_id: str, texts: list[str]
    ) -> tuple[np.ndarray, int]:
        """Embed for ingestion, after every interactive caller."""
        return self.embed(request_id=request_id, texts=texts, background=True)

    def pending(self) -> int:
        """Texts waiting for the engine."""
        with self._cond:
            return sum(len(piece.texts) for piece in self._queue)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(10.0)

    # -- the engine thread ---------------------------------------------------

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                break
            try:
                self._encode(batch)
            except Exception as exc:  # keep serving others
                log.exception("embedding batch failed", model=self.spec.name)
                error = ModelRuntimeError(
                    f"model {self.spec.name!r} failed while embedding: "
                    f"{type(exc).__name__}: {exc}. Retry; if it fails again, "
                    "check the worker log."
                )
                for piece in batch:
                    piece.call.error = error
                    _finish_piece(piece)

        with self._cond:
            left = list(self._queue)
            self._queue.clear()
        for piece in left:
            piece.call.error = ModelRuntimeError(
                f"model {self.spec.name!r} shut down; retry the request"
            )
            _finish_piece(piece)

    def _next_batch(self) -> list[_Piece] | None:
        limit = self.spec.max_batch_size
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            deadline = time.monotonic() + GATHER_S
            while self._queued_texts() < limit and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)

            batch: list[_Piece] = []
            size = 0
            while self._queue and size + len(self._queue[0].texts) <= limit:
                piece = self._queue.popleft()
                self._urgent = max(0, self._urgent - 1)
                batch.append(piece)
                size += len(piece.texts)
            return batch

    def _queued_texts(self) -> int:
        return sum(len(piece.texts) for piece in self._queue)

    def _encode(self, batch: list[_Piece]) -> None:
        texts = [text for piece in batch for text in piece.texts]
        self.encode_calls += 1
        EMBED_BATCH_SIZE.labels(self.spec.name).observe(len(texts))
        vectors = self.model.encode(
            texts,
            batch_size=len(texts),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        # The tokenizer's attention mask counts the tokens the model really saw.
        features = self.model.preprocess(texts)
        counts = features["attention_mask"].sum(dim=1).tolist()

        row = 0
        for piece in batch:
            for offset in range(len(piece.texts)):
                piece.call.vectors[piece.start + offset] = vectors[row]
                piece.call.tokens += int(counts[row])
                row += 1
            _finish_piece(piece)


def _finish_piece(piece: _Piece) -> None:
    # Only the engine thread touches a call's counters; no lock needed.
    piece.call.remaining -= 1
    if piece.call.remaining == 0:
        piece.call.done.set()


def _load(spec: ModelSpec, *, device: str) -> Any:
    from sentence_transformers import SentenceTransformer

    assert spec.path is not None  # the spec validator guarantees it
    if not spec.path.is_dir():
        raise ConfigError(
            f"model {spec.name!r}: folder {str(spec.path)!r} does not exist; "
            "check its path"
        )
    try:
        return SentenceTransformer(str(spec.path), device=device, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"model {spec.name!r} could not be loaded from {str(spec.path)!r}: {exc}"
        ) from exc
