"""Cited answers over collections: retrieve, keep what is relevant, prompt
within the chat model's window, generate on its queue, relay with citations.

Relevance is the dense cosine similarity of a chunk to the question: a
hybrid or dense hit below ``min_score`` is dropped, and a lexical-only hit
in hybrid mode is dropped too, because an OR query of the question's words
matches common words anywhere. When nothing is left the answer abstains
without calling the model, so it cannot invent one.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog
from pydantic import BaseModel, ConfigDict, Field

from auth.context import Caller
from retrieval import citations, prompting, search, store
from server.dispatch import Dispatcher, new_request_id
from server.errors import HearthError, InvalidRequest
from server.usage import UsageRecord, record_usage
from workers import protocol
from workers.specs import ModelCatalog, ModelSpec

log = structlog.get_logger(__name__)

ENDPOINT = "/v1/collections/answer"
# MiniLM cosine: unrelated passages score about 0.0-0.2, on-topic ones 0.4+.
MIN_SCORE = 0.3
DEFAULT_MAX_TOKENS = 256


class RetrievalOptions(BaseModel):
    """How sources are found; also the chat completions ``retrieval`` field."""

    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(5, ge=1, le=50)
    mode: search.Mode = "hybrid"
    filters: dict[str, Any] | None = None
    min_score: float = Field(MIN_SCORE, ge=-1.0, le=1.0)


class AnswerRequest(RetrievalOptions):
    """POST /v1/collections/{id}/answer."""

    question: str = Field(min_length=1, max_length=4000)
    model: str | None = Field(None, description="A chat model; the first by default.")
    max_tokens: int = Field(DEFAULT_MAX_TOKENS, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    stream: bool = False


@dataclass(kw_only=True)
class Grounding:
    """The sources of one answer, and the system message that carries them."""

    system: str
    citations: list[dict[str, Any]]
    # The hits behind the citations, in their order (citation n is hits[n-1]).
    hits: list[search.Hit] = field(default_factory=list)

    @property
    def abstains(self) -> bool:
        return not self.citations


def chat_model(catalog: ModelCatalog, name: str | None) -> ModelSpec:
    if name is None:
        chat = [spec for spec in catalog if spec.kind == "chat"]
        if not chat:
            raise InvalidRequest("No chat model is configured; add one to answer.")
        return chat[0]
    spec = catalog.get(name)
    if spec.kind != "chat":
        raise InvalidRequest(
            f"Model {name!r} is an {spec.kind} model; name a chat model.",
            param="model",
        )
    return spec


async def resolve(pool, *, caller: Caller, refs: list[str]) -> list[dict[str, Any]]:
    """The caller's collections by id or name (404 for anyone else's)."""
    found = [
        await store.get_collection(pool, tenant=caller.tenant, ref=ref)
        for ref in dict.fromkeys(refs)
    ]
    models = {c["embedding_model"] for c in found}
    if len(models) > 1:
        raise InvalidRequest(
            f"The collections use different embedding models ({sorted(models)}); "
            "ask each one separately.",
            param="collections",
        )
    return found


def _relevant(hits: list[search.Hit], options: RetrievalOptions) -> list[search.Hit]:
    if options.mode == "lexical":
        return hits
    return [h for h in hits if h.dense is not None and h.dense >= options.min_score]


async def ground(
    *, pool, dispatcher: Dispatcher, catalog: ModelCatalog, caller: Caller,
    collections: list[dict], question: str, options: RetrievalOptions,
    spec: ModelSpec, max_tokens: int, documents: list[str] | None = None,
) -> Grounding:  # fmt: skip
    """Retrieve for ``question`` (from ``documents`` only, when given) and
    build the system message."""
    await store.require_chunks_table(pool)
    vector = None
    if options.mode != "lexical":
        vector = await search.embed_query(
            dispatcher, catalog, collections[0]["embedding_model"], question
        )
    hits = await search.search(
        pool, tenant=caller.tenant, collections=[c["id"] for c in collections],
        query=question, vector=vector, mode=options.mode, top_k=options.top_k,
        where=options.filters, documents=documents,
    )  # fmt: skip
    kept = _relevant(hits, options)
    if max_tokens >= spec.context_length:
        raise InvalidRequest(
            f"max_tokens {max_tokens} leaves no room for sources in the "
            f"{spec.context_length}-token window of {spec.name!r}; ask for fewer.",
            param="max_tokens",
        )
    prompt = prompting.build(
        hits=kept, question_tokens=prompting.question_tokens(question),
        context_length=spec.context_length, max_tokens=max_tokens,
    )  # fmt: skip
    cited = [
        citations.citation(number, hit, question)
        for number, hit in enumerate(prompt.hits, start=1)
    ]
    log.info(
        "answer grounded", collections=[c["id"] for c in collections],
        hits=len(hits), relevant=len(kept), sources=len(cited),
    )  # fmt: skip
    return Grounding(system=prompt.system, citations=cited, hits=prompt.hits)


def params(*, max_tokens: int, temperature: float) -> dict[str, Any]:
    return {
        "max_tokens": max_tokens, "temperature": temperature, "top_p": 1.0,
        "seed": None, "stop": [], "presence_penalty": 0.0,
        "frequency_penalty": 0.0, "n": 1,
    }  # fmt: skip


def messages(grounding: Grounding, turns: list[dict[str, str]]) -> list[dict]:
    """The sources as the first system message; the caller's turns after."""
    return [{"role": "system", "content": grounding.system}, *turns]


@dataclass(kw_only=True)
class Answer:
    """One answer being generated for POST .../answer."""

    dispatcher: Dispatcher
    pool: Any
    spec: ModelSpec
    grounding: Grounding
    request_id: str
    collection_ids: list[str]
    created: int
    started: float

    async def start(self, question: str, body: AnswerRequest) -> None:
        if self.grounding.abstains:
            return
        payload = {
            "request_id": self.request_id, "model": self.spec.name,
            "messages": messages(self.grounding,
                                 [{"role": "user", "content": question}]),
            "params": params(max_tokens=body.max_tokens,
                             temperature=body.temperature),
        }  # fmt: skip
        await self.dispatcher.submit(
            task=protocol.GENERATE_TASK, spec=self.spec, payload=payload
        )

    async def events(self) -> AsyncIterator[dict]:
        """delta, choice_end and done events; invented ones when abstaining."""
        if self.grounding.abstains:
            yield {"type": "delta", "index": 0, "text": prompting.ABSTAIN}
            yield {"type": "choice_end", "index": 0, "finish_reason": "stop"}
            yield {"type": "done", "usage": {}}
            return
        async for event in self.dispatcher.events(
            request_id=self.request_id, model=self.spec.name
        ):
            yield event

    def body(self, text: str, reason: str | None, usage: dict) -> dict[str, Any]:
        cited = citations.mark_cited(self.grounding.citations, text)
        return {
            "id": self.request_id,
            "object": "collection.answer",
            "created": self.created,
            "model": self.spec.name,
            "collection_ids": self.collection_ids,
            "answer": text,
            "abstained": self.grounding.abstains,
            "finish_reason": reason or "stop",
            "cited": cited,
            "citations": self.grounding.citations,
            "usage": usage,
        }

    def record(self, *, status: int, usage: dict | None, code=None, streamed=False):
        usage = usage or {}
        record_usage(self.pool, UsageRecord(
            request_id=self.request_id, endpoint=ENDPOINT, model=self.spec.name,
            status=status, error_code=code,
            latency_ms=(time.perf_counter() - self.started) * 1000,
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0), streamed=streamed,
        ))  # fmt: skip

    async def cancel(self) -> None:
        if not self.grounding.abstains:
            with anyio.CancelScope(shield=True):
                await self.dispatcher.cancel(self.request_id)


def new_answer(*, dispatcher, pool, spec, grounding, collections) -> Answer:
    return Answer(
        dispatcher=dispatcher, pool=pool, spec=spec, grounding=grounding,
        request_id=new_request_id("ans"), collection_ids=[c["id"] for c in collections],
        created=int(time.time()), started=time.perf_counter(),
    )  # fmt: skip


async def collect(events: AsyncIterator[dict]) -> tuple[str, str | None, dict]:
    """One choice's whole reply from its events: text, finish reason, usage."""
    text, reason, usage = "", None, {}
    async for event in events:
        if event["type"] == "delta":
            text += event["text"]
        elif event["type"] == "choice_end":
            reason = event["finish_reason"]
        elif event["type"] == "done":
            usage = event["usage"]
    return text, reason, usage


async def whole(answer: Answer) -> dict[str, Any]:
    try:
        text, reason, usage = await collect(answer.events())
    except HearthError as exc:
        answer.record(status=exc.status, usage=None, code=exc.code)
        raise
    answer.record(status=200, usage=usage)
    return answer.body(text, reason, usage)
