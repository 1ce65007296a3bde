"""The ``remote`` backend: a model served by another OpenAI-compatible engine.

vLLM, TGI, Ollama, llama.cpp's server or another Hearth do the work; this
backend relays. ``base_url`` is the engine's OpenAI base, the URL an OpenAI
SDK would take (usually ending in ``/v1``). Generation always streams from
the remote, so deltas reach the client as they are made and a cancelled
request closes the connection, which stops the remote's generation too.

The remote engine does its own batching; calls here run concurrently on
one pooled HTTP client.

Errors are mapped at this edge: transport failures and 5xx answers become
RemoteEngineError (502), 4xx answers the client's fault become
InvalidRequest (or ContextLengthExceeded), a remote 429 becomes QueueFull,
and 401/403/404 (a wrong key, URL or model name: the operator's fault)
become RemoteEngineError naming what to check.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import structlog

from server.errors import (
    ConfigError,
    ContextLengthExceeded,
    HearthError,
    InvalidRequest,
    QueueFull,
    RemoteEngineError,
)
from workers.backends.base import (
    ChatInput,
    GenerationParams,
    Sink,
    Usage,
    register_backend,
)

if TYPE_CHECKING:
    import httpx
    import numpy as np

    from server.settings import Settings
    from workers.specs import ModelSpec

log = structlog.get_logger(__name__)

_CONTEXT_HINTS = ("context length", "context_length", "maximum context", "too long")


@register_backend("remote")
def build_remote_backend(spec: ModelSpec, settings: Settings) -> RemoteEngine:
    return RemoteEngine(spec=spec, settings=settings)


class RemoteEngine:
    """Chat, completions or embeddings relayed to an OpenAI-compatible engine."""

    def __init__(self, *, spec: ModelSpec, settings: Settings) -> None:
        import httpx

        assert spec.base_url is not None  # the spec validator guarantees it
        self.spec = spec
        self.base_url = spec.base_url.rstrip("/")
        self.remote_model = spec.remote_model or spec.name
        self._client = httpx.Client(
            base_url=self.base_url + "/",
            headers=_auth_headers(spec),
            timeout=httpx.Timeout(settings.request_timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=max(64, spec.max_batch_size * 4)),
            # Proxy variables are for reaching the internet; the engine is an
            # internal service and must not be routed through them.
            trust_env=False,
        )
        log.info(
            "remote model ready",
            model=spec.name,
            base_url=self.base_url,
            remote_model=self.remote_model,
        )

    def generate(
        self,
        *,
        request_id: str,
        chat: ChatInput,
        params: GenerationParams,
        sink: Sink,
    ) -> Usage:
        """Stream a chat completion (messages) or completion (prompt) to ``sink``.

        Usage comes from the remote's final usage chunk; an engine that sends
        none is counted as 0 prompt tokens and one token per content chunk.
        """
        import httpx

        path, payload = self._generation_payload(chat, params)
        relay = _Relay(sink=sink, n=params.n, chat=chat.messages is not None)
        try:
            with self._client.stream(
                "POST", path, json=payload, headers={"X-Request-Id": request_id}
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._status_error(response)
                for data in _sse_data(response.iter_lines()):
                    if data == "[DONE]":
                        break
                    relay.chunk(self._parse_chunk(data))
                    if sink.cancelled():
                        # Leaving the block closes the connection; the remote
                        # sees the disconnect and stops generating.
                        relay.cancelled = True
                        break
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc

        relay.finish()
        return relay.usage()

    def embed(self, *, request_id: str, texts: list[str]) -> tuple[np.ndarray, int]:
        """Embed ``texts`` with the remote; float32 rows and prompt tokens."""
        import httpx
        import numpy as np

        payload = {
            "model": self.remote_model,
            "input": texts,
            "encoding_format": "float",
        }
        try:
            response = self._client.post(
                "embeddings", json=payload, headers={"X-Request-Id": request_id}
            )
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc
        if response.status_code >= 400:
            raise self._status_error(response)

        try:
            body = response.json()
            rows = sorted(body["data"], key=lambda item: item.get("index", 0))
            vectors = np.asarray([row["embedding"] for row in rows], dtype=np.float32)
            tokens = int((body.get("usage") or {}).get("prompt_tokens", 0))
        except (ValueError, KeyError, TypeError) as exc:
            raise RemoteEngineError(
                f"remote engine {self.base_url} sent an embeddings answer that is "
                f"not in OpenAI's format ({type(exc).__name__}: {exc}); check "
                "that base_url points at an OpenAI-compatible API"
            ) from exc
        if len(vectors) != len(texts):
            raise RemoteEngineError(
                f"remote engine {self.base_url} returned {len(vectors)} vectors for "
                f"{len(texts)} inputs; check the engine"
            )
        return vectors, tokens

    def close(self) -> None:
        self._client.close()

    # -- helpers -----------------------------------------------------------

    def _generation_payload(
        self, chat: ChatInput, params: GenerationParams
    ) -> tuple[str, dict[str, Any]]:
        payload: dict[str, Any] = {
            "model": self.remote_model,
            "stream": True,
            "stream_options": {"include_usage": True},
            "n": params.n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "presence_penalty": params.presence_penalty,
            "frequency_penalty": params.frequency_penalty,
        }
        if params.max_tokens is not None:
            payload["max_tokens"] = params.max_tokens
        if params.seed is not None:
            payload["seed"] = params.seed
        if params.stop:
            payload["stop"] = list(params.stop)

        if chat.messages is not None:
            return "chat/completions", {**payload, "messages": chat.messages}
        if chat.prompt is not None:
            return "completions", {**payload, "prompt": chat.prompt}
        raise InvalidRequest("send either messages or a prompt", param="messages")

    def _parse_chunk(self, data: str) -> dict[str, Any]:
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise RemoteEngineError(
                f"remote engine {self.base_url} streamed a chunk that is not JSON: "
                f"{data[:200]!r}; check that it speaks OpenAI's streaming format"
            ) from exc
        if isinstance(chunk, dict) and chunk.get("error"):
            # Some engines report a failure inside the stream, after a 200.
            message, code = _error_fields(chunk)
            raise RemoteEngineError(
                f"remote engine {self.base_url} failed mid-stream: {message}"
                + (f" ({code})" if code else "")
            )
        if not isinstance(chunk, dict):
            raise RemoteEngineError(
                f"remote engine {self.base_url} streamed {data[:200]!r}, not an "
                "object; check that it speaks OpenAI's streaming format"
            )
        return chunk

    def _status_error(self, response: httpx.Response) -> HearthError:
        status = response.status_code
        message, code = _error_fields(_json_or_text(response))
        where = f"remote engine {self.base_url} (model {self.remote_model!r})"

        if status == 429:
            retry = response.headers.get("retry-after")
            return QueueFull(
                f"{where} is busy: {message}; retry later",
                retry_after=float(retry) if retry and retry.isdigit() else None,
            )
        if status in (401, 403):
            key = (
                f"${self.spec.api_key_env}" if self.spec.api_key_env else "api_key_env"
            )
            return RemoteEngineError(
                f"{where} refused the request with {status}: {message}; check the "
                f"API key in {key}"
            )
        if status == 404:
            return RemoteEngineError(
                f"{where} answered 404: {message}; check base_url (the OpenAI base, "
                "usually ending in /v1) and remote_model"
            )
        if status >= 500:
            return RemoteEngineError(
                f"{where} failed with {status}: {message}; check the engine's "
                "health and logs"
            )
        lowered = message.lower()
        if code == "context_length_exceeded" or any(
            h in lowered for h in _CONTEXT_HINTS
        ):
            return ContextLengthExceeded(message, param="messages")
        return InvalidRequest(message)

    def _transport_error(self, exc: httpx.HTTPError) -> RemoteEngineError:
        import httpx

        if isinstance(exc, httpx.ConnectError):
            hint = "check that the engine is running and that base_url is right"
        elif isinstance(exc, httpx.TimeoutException):
            hint = "it did not answer in time; check its load, or raise the timeout"
        else:
            hint = "check the engine's health and logs"
        return RemoteEngineError(
            f"remote engine {self.base_url} could not be reached or broke off "
            f"({type(exc).__name__}: {exc}); {hint}"
        )


class _Relay:
    """Turns streamed chunks into sink calls and counts what went by."""

    def __init__(self, *, sink: Sink, n: int, chat: bool) -> None:
        self._sink = sink
        self._n = n
        self._chat = chat
        self._open = set(range(n))
        self._chunks = 0
        self._usage: dict[str, Any] | None = None
        self.cancelled = False

    def chunk(self, chunk: dict[str, Any]) -> None:
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            index = int(choice.get("index", 0))
            if self._chat:
                text = (choice.get("delta") or {}).get("content")
            else:
                text = choice.get("text")
            if text:
                self._chunks += 1
                self._sink.delta(index, text)
            reason = choice.get("finish_reason")
            if reason and index in self._open:
                self._open.discard(index)
                self._sink.choice_end(index, reason)

    def finish(self) -> None:
        # A cancelled stream, or one that ended without finish reasons.
        for index in sorted(self._open):
            self._sink.choice_end(index, "stop")
        self._open.clear()

    def usage(self) -> Usage:
        if self._usage is None:
            return Usage(prompt_tokens=0, completion_tokens=self._chunks)
        return Usage(
            prompt_tokens=int(self._usage.get("prompt_tokens", 0)),
            completion_tokens=int(self._usage.get("completion_tokens", 0)),
        )


def _auth_headers(spec: ModelSpec) -> dict[str, str]:
    if not spec.api_key_env:
        return {}
    key = os.environ.get(spec.api_key_env)
    if not key:
        raise ConfigError(
            f"model {spec.name!r} reads its API key from ${spec.api_key_env}, "
            "which is not set; export it, or remove api_key_env"
        )
    return {"Authorization": f"Bearer {key}"}


def _sse_data(lines: Iterator[str]) -> Iterator[str]:
    """The ``data:`` payloads of a server-sent event stream."""
    for line in lines:
        if line.startswith("data:"):
            yield line[5:].strip()


def _json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text.strip()[:500] or f"HTTP {response.status_code}"


def _error_fields(body: Any) -> tuple[str, str | None]:
    """The message and code of an error body, in the shapes engines use."""
    if isinstance(body, str):
        return body, None
    if not isinstance(body, dict):
        return str(body)[:500], None
    error = body.get("error", body)
    if isinstance(error, str):
        return error, body.get("code")
    if isinstance(error, dict):
        message = error.get("message") or error.get("detail") or json.dumps(error)
        code = error.get("code")
        return str(message), str(code) if code is not None else None
    return str(body.get("detail") or body)[:500], None
