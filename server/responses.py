"""POST /v1/responses: ground in vector stores when file_search is asked
for, generate on the chat model's queue, answer whole or as OpenAI's
stream of response events.

With file_search the sources are found and fitted into the prompt before
anything is answered (retrieval.answer), so a missing store or a full
queue still gets its own status code. The model cites sources as ``[n]``;
those marks become ``file_citation`` annotations on clean text. When the
model marks none, every file it was given is cited at the end of the
text: the answer was written from them. When no source is relevant the
reply says so without calling the model, as cited answers do.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog
from fastapi.responses import JSONResponse, StreamingResponse

from auth.context import Caller
from openai_compat import responses as wire
from openai_compat import sse
from retrieval import answer, prompting, vector_store_sql, vector_stores
from retrieval.citation_marks import Marks
from server import response_store
from server.dispatch import Dispatcher
from server.errors import HearthError, InvalidRequest
from server.usage import UsageRecord, record_usage
from workers import protocol
from workers.specs import ModelCatalog, ModelSpec

log = structlog.get_logger(__name__)

ENDPOINT = "/v1/responses"
# Sources handed to the model when the tool names no max_num_results; the
# prompt budget may keep fewer.
DEFAULT_SOURCES = 5


def chat_model(catalog: ModelCatalog, name: str) -> ModelSpec:
    spec = catalog.get(name)
    if spec.kind != "chat":
        raise InvalidRequest(
            f"Model {name!r} is an {spec.kind} model; use a chat model here.",
            param="model",
        )
    return spec


def _question(turns: list[dict[str, str]]) -> str:
    for turn in reversed(turns):
        if turn["role"] == "user" and turn["content"].strip():
            return turn["content"]
    raise InvalidRequest(
        "file_search needs a user message to search for; add one.", param="input"
    )


@dataclass(kw_only=True)
class Search:
    """What file_search found: the call item's parts and the sources."""

    tool: wire.FileSearchTool
    top_k: int
    query: str
    grounding: answer.Grounding
    # One per numbered source: file_id, filename, score, attributes, text.
    sources: list[dict[str, Any]]


@dataclass(kw_only=True)
class Reply:
    dispatcher: Dispatcher
    pool: Any
    spec: ModelSpec
    body: wire.ResponseCreate
    tenant: str
    # The previous response's turns, then this request's input.
    turns: list[dict[str, str]]
    search: Search | None = None
    response_id: str = field(default_factory=lambda: wire.new_id("resp"))
    message_id: str = field(default_factory=lambda: wire.new_id("msg"))
    call_id: str = field(default_factory=lambda: wire.new_id("fs"))
    created: int = field(default_factory=lambda: int(time.time()))
    started: float = field(default_factory=time.perf_counter)

    @property
    def abstains(self) -> bool:
        return self.search is not None and self.search.grounding.abstains

    @property
    def max_tokens(self) -> int:
        return self.body.max_output_tokens or self.spec.max_tokens

    async def ground(
        self, *, catalog: ModelCatalog, caller: Caller, tool: wire.FileSearchTool
    ) -> None:
        """Search the tool's vector stores (the caller's only) and fit the
        relevant sources into the prompt."""
        stores = await vector_stores.for_search(
            self.pool, caller, tool.vector_store_ids
        )
        collections = [
            {"id": s["collection_id"], "embedding_model": s["embedding_model"]}
            for s in stores
        ]
        query = _question(self.turns)
        top_k = tool.max_num_results or DEFAULT_SOURCES
        threshold = tool.ranking_options and tool.ranking_options.score_threshold
        options = answer.RetrievalOptions(
            top_k=top_k, min_score=answer.MIN_SCORE if threshold is None else threshold
        )
        allowed = await vector_stores.allowed_documents(
            self.pool, [c["id"] for c in collections], tool.filters
        )
        if allowed == []:
            grounding = answer.Grounding(system="", citations=[])
        else:
            grounding = await answer.ground(
                pool=self.pool, dispatcher=self.dispatcher, catalog=catalog,
                caller=caller, collections=collections, question=query,
                options=options, spec=self.spec, max_tokens=self.max_tokens,
                documents=allowed,
            )  # fmt: skip
        sources = await vector_stores.results(self.pool, grounding.hits)
        await vector_store_sql.touch(
            self.pool, vector_store_ids=[s["id"] for s in stores]
        )
        self.search = Search(
            tool=tool, top_k=top_k, query=query, grounding=grounding, sources=sources
        )

    def _messages(self) -> list[dict[str, str]]:
        system = [self.body.instructions] if self.body.instructions else []
        if self.search is not None:
            system.append(self.search.grounding.system)
        head = [{"role": "system", "content": "\n\n".join(system)}] if system else []
        return head + self.turns

    async def start(self) -> None:
        if self.abstains:
            return
        body = self.body
        payload = {
            "request_id": self.response_id, "model": self.spec.name,
            "messages": self._messages(),
            "params": {
                "max_tokens": body.max_output_tokens,
                "temperature": 1.0 if body.temperature is None else body.temperature,
                "top_p": 1.0 if body.top_p is None else body.top_p,
                "seed": None, "stop": [], "presence_penalty": 0.0,
                "frequency_penalty": 0.0, "n": 1,
            },
        }  # fmt: skip
        await self.dispatcher.submit(
            task=protocol.GENERATE_TASK, spec=self.spec, payload=payload
        )

    async def events(self) -> AsyncIterator[dict]:
        """delta, choice_end and done events; made up when abstaining."""
        if self.abstains:
            yield {"type": "delta", "index": 0, "text": prompting.ABSTAIN}
            yield {"type": "choice_end", "index": 0, "finish_reason": "stop"}
            yield {"type": "done", "usage": {}}
            return
        async for event in self.dispatcher.events(
            request_id=self.response_id, model=self.spec.name
        ):
            yield event

    async def cancel(self) -> None:
        if not self.abstains:
            with anyio.CancelScope(shield=True):
                await self.dispatcher.cancel(self.response_id)

    def record(self, *, status: int, usage: dict | None, code=None, streamed=False):
        usage = usage or {}
        record_usage(self.pool, UsageRecord(
            request_id=self.response_id, endpoint=ENDPOINT, model=self.spec.name,
            status=status, error_code=code,
            latency_ms=(time.perf_counter() - self.started) * 1000,
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0), streamed=streamed,
        ))  # fmt: skip

    async def keep(self, response: dict[str, Any]) -> None:
        """Store the finished response and the conversation so far, unless
        the request said ``"store": false``."""
        if not self.body.stores:
            return
        message = response["output"][-1]
        conversation = wire.conversation(
            self.turns, message_id=message["id"],
            output_text=message["content"][0]["text"],
        )  # fmt: skip
        # Shielded: a client leaving now must not lose a finished answer.
        with anyio.CancelScope(shield=True):
            await response_store.save(
                self.pool, tenant=self.tenant, response=response,
                conversation=conversation,
            )  # fmt: skip

    # The pieces of the response.

    def marks(self) -> Marks:
        sources = len(self.search.sources) if self.search else 0
        return Marks(sources=sources)

    def annotation(self, number: int, index: int) -> dict[str, Any]:
        source = self.search.sources[number - 1]
        return {"type": "file_citation", "file_id": source["file_id"],
                "filename": source["filename"], "index": index}  # fmt: skip

    def fallback(self, *, marked: bool, length: int) -> list[dict[str, Any]]:
        """Every source file, cited at ``length``, when the model marked none."""
        if marked or self.search is None or self.abstains:
            return []
        first: dict[str, int] = {}
        for number, source in enumerate(self.search.sources, start=1):
            first.setdefault(source["file_id"], number)
        return [self.annotation(number, length) for number in first.values()]

    def call_item(self, status: str) -> dict[str, Any]:
        search = self.search
        done = status == "completed"
        results = None
        if done and self.body.wants_results:
            results = [
                {key: s[key] for key in ("file_id", "filename", "score",
                                         "attributes", "text")}
                for s in search.sources
            ]  # fmt: skip
        return wire.search_call(
            self.call_id, status=status, queries=[search.query] if done else [],
            results=results,
        )  # fmt: skip

    def tools(self) -> list[dict[str, Any]]:
        if self.search is None:
            return []
        return [self.search.tool.public(top_k=self.search.top_k)]

    def whole_response(
        self, *, status: str, output: list[dict], usage: dict | None,
        incomplete: str | None = None, error: dict | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        return wire.response(
            response_id=self.response_id, created_at=self.created, body=self.body,
            status=status, output=output, tools=self.tools(),
            usage_=None if usage is None else wire.usage(usage),
            incomplete=incomplete, error=error,
        )  # fmt: skip


async def whole(reply: Reply) -> JSONResponse:
    try:
        text, reason, usage = await answer.collect(reply.events())
    except HearthError as exc:
        reply.record(status=exc.status, usage=None, code=exc.code)
        raise
    reply.record(status=200, usage=usage)

    marks = reply.marks()
    head, found = marks.feed(text)
    tail, more = marks.finish()
    clean, found = head + tail, found + more
    annotations = [reply.annotation(n, i) for n, i in found]
    annotations += reply.fallback(marked=bool(found), length=len(clean))
    incomplete = "max_output_tokens" if reason == "length" else None
    status = "incomplete" if incomplete else "completed"
    output = [reply.call_item("completed")] if reply.search else []
    output.append(wire.message(
        reply.message_id, status=status, parts=[wire.text_part(clean, annotations)]
    ))  # fmt: skip
    response = reply.whole_response(
        status=status, output=output, usage=usage, incomplete=incomplete
    )
    await reply.keep(response)
    return JSONResponse(response)


async def streamed(reply: Reply) -> StreamingResponse:
    return await sse.open_stream(
        reply.events(),
        lambda first, events: _sse(reply, first, events),
        on_error=lambda exc: reply.record(
            status=exc.status, usage=None, code=exc.code, streamed=True
        ),
    )


async def _sse(
    reply: Reply, first: dict, events: AsyncIterator[dict]
) -> AsyncIterator[bytes]:
    emit = wire.EventStream()
    usage: dict | None = None
    status, code, finished = 200, None, False
    try:
        snapshot = reply.whole_response(status="in_progress", output=[], usage=None)
        yield emit("response.created", response=snapshot)
        yield emit("response.in_progress", response=snapshot)
        output: list[dict] = []
        if reply.search is not None:
            for part in _search_events(reply, emit):
                yield part
            output.append(reply.call_item("completed"))

        text_events = _text_events(reply, emit, len(output), first, events)
        async for part in text_events:
            if isinstance(part, bytes):
                yield part
            else:
                item, reason, usage = part
        output.append(item)
        incomplete = "max_output_tokens" if reason == "length" else None
        final = reply.whole_response(
            status="incomplete" if incomplete else "completed", output=output,
            usage=usage, incomplete=incomplete,
        )  # fmt: skip
        # Stored before the last event, so a client that has seen it can
        # retrieve the response at once.
        await reply.keep(final)
        kind = "response.incomplete" if incomplete else "response.completed"
        yield emit(kind, response=final)
        finished = True
    except HearthError as exc:
        status, code = exc.status, exc.code
        yield emit("error", code=exc.code, message=exc.message, param=exc.param)
        failed = reply.whole_response(
            status="failed", output=[], usage=usage,
            error={"code": exc.code, "message": exc.message},
        )  # fmt: skip
        yield emit("response.failed", response=failed)
        finished = True
    finally:
        if not finished:
            status, code = 499, "client_disconnected"
            await reply.cancel()
            log.info("client disconnected; response cancelled",
                     request_id=reply.response_id)  # fmt: skip
        reply.record(status=status, usage=usage, code=code, streamed=True)


def _search_events(reply: Reply, emit: wire.EventStream) -> list[bytes]:
    """The file_search call, which ran before the stream began."""
    where = {"output_index": 0, "item_id": reply.call_id}
    return [
        emit("response.output_item.added", output_index=0,
             item=reply.call_item("in_progress")),
        emit("response.file_search_call.in_progress", **where),
        emit("response.file_search_call.searching", **where),
        emit("response.file_search_call.completed", **where),
        emit("response.output_item.done", output_index=0,
             item=reply.call_item("completed")),
    ]  # fmt: skip


async def _text_events(
    reply: Reply, emit: wire.EventStream, index: int, first: dict,
    events: AsyncIterator[dict],
) -> AsyncIterator[bytes | tuple]:  # fmt: skip
    """The message item's events, then (item, finish reason, usage)."""
    where = {"item_id": reply.message_id, "output_index": index, "content_index": 0}
    empty = wire.message(reply.message_id, status="in_progress", parts=[])
    yield emit("response.output_item.added", output_index=index, item=empty)
    yield emit("response.content_part.added", **where, part=wire.text_part("", []))
    marks = reply.marks()
    text, reason, usage, annotations = "", None, {}, []

    def added(annotation: dict[str, Any]) -> bytes:
        annotations.append(annotation)
        return emit(
            "response.output_text.annotation.added", **where,
            annotation_index=len(annotations) - 1, annotation=annotation,
        )  # fmt: skip

    marked = False
    event: dict | None = first
    while event is not None:
        if event["type"] == "delta":
            piece, found = marks.feed(event["text"])
            marked = marked or bool(found)
            if piece:
                text += piece
                yield emit("response.output_text.delta", **where, delta=piece,
                           logprobs=[])  # fmt: skip
            for number, at in found:
                yield added(reply.annotation(number, at))
        elif event["type"] == "choice_end":
            reason = event["finish_reason"]
        elif event["type"] == "done":
            usage = event["usage"]
        event = await anext(events, None)

    piece, found = marks.finish()
    marked = marked or bool(found)
    if piece:
        text += piece
        yield emit("response.output_text.delta", **where, delta=piece, logprobs=[])
    for number, at in found:
        yield added(reply.annotation(number, at))
    for annotation in reply.fallback(marked=marked, length=len(text)):
        yield added(annotation)

    status = "incomplete" if reason == "length" else "completed"
    part = wire.text_part(text, annotations)
    yield emit("response.output_text.done", **where, text=text, logprobs=[])
    yield emit("response.content_part.done", **where, part=part)
    item = wire.message(reply.message_id, status=status, parts=[part])
    yield emit("response.output_item.done", output_index=index, item=item)
    yield item, reason, usage
