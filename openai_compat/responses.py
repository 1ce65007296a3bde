"""OpenAI's Responses API on the wire: the request, its input turned into
chat turns, and the output items, response object and stream events.

Hearth runs one tool, ``file_search``, itself: it always searches when
the tool is given (unless ``tool_choice`` is ``"none"``), since no chat
model here decides to call tools. Responses are stored unless
``"store": false`` (server.response_store), as message items that a
later turn's ``previous_response_id`` puts back in front of its input;
clients may instead send earlier turns in ``input``, which may hold the
output items of earlier responses.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from openai_compat.vector_stores import RankingOptions
from retrieval.attribute_filters import Filter
from server.errors import InvalidRequest, UnsupportedParameter, UnsupportedTool

# Items of earlier responses that carry no turn of their own: the search
# is run again for the new question.
_SKIPPED_ITEMS = ("file_search_call", "reasoning", "item_reference")
_TEXT_PARTS = ("input_text", "output_text", "text")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class _Body(BaseModel):
    # Clients send fields Hearth does not use (user, reasoning...).
    model_config = ConfigDict(extra="ignore")


class FileSearchTool(_Body):
    type: Literal["file_search"]
    vector_store_ids: list[str] = Field(min_length=1, max_length=16)
    filters: Filter | None = None
    max_num_results: int | None = Field(None, ge=1, le=50)
    ranking_options: RankingOptions | None = None

    def public(self, *, top_k: int) -> dict[str, Any]:
        threshold = self.ranking_options and self.ranking_options.score_threshold
        return {
            "type": "file_search",
            "vector_store_ids": self.vector_store_ids,
            "filters": self.filters.model_dump() if self.filters else None,
            "max_num_results": top_k,
            "ranking_options": {"ranker": "auto", "score_threshold": threshold or 0.0},
        }


class ResponseCreate(_Body):
    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stream: bool | None = False
    tools: list[dict[str, Any]] = Field(default_factory=list)
    tool_choice: str | dict[str, Any] | None = None
    include: list[str] | None = None
    metadata: dict[str, str] | None = None
    parallel_tool_calls: bool | None = None
    truncation: str | None = None
    user: str | None = None
    previous_response_id: str | None = None
    store: bool | None = None
    background: bool | None = None
    conversation: str | dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    top_logprobs: int | None = None

    def check(self) -> FileSearchTool | None:
        """Refuse what Hearth cannot do; the file_search tool, if searching."""
        for name, hint in (
            ("conversation", "Hearth does not store conversations; name the "
             "last response in 'previous_response_id' or send the earlier "
             "turns in 'input'"),
            ("background", "run it as a durable job instead (POST /v1/jobs)"),
            ("prompt", "send the prompt's text in 'instructions' and 'input'"),
            ("top_logprobs", "omit it"),
        ):  # fmt: skip
            if getattr(self, name):
                raise UnsupportedParameter(
                    f"'{name}' is not supported; {hint}.", param=name
                )
        fmt = (self.text or {}).get("format") or {"type": "text"}
        kind = fmt.get("type") if isinstance(fmt, dict) else fmt
        if kind != "text":
            raise UnsupportedParameter(
                f"text.format {kind!r} is not supported; Hearth returns plain text "
                "('text').",
                param="text.format",
            )
        tool = self._file_search_tool()
        return tool if self._searches(tool) else None

    def _file_search_tool(self) -> FileSearchTool | None:
        found: FileSearchTool | None = None
        for index, raw in enumerate(self.tools):
            kind = raw.get("type")
            if kind != "file_search":
                raise UnsupportedTool(
                    f"Tool type {kind!r} is not supported; Hearth runs only "
                    "'file_search' (with vector_store_ids).",
                    param=f"tools[{index}].type",
                )
            if found is not None:
                raise InvalidRequest(
                    "Send one file_search tool, naming every vector store in its "
                    "vector_store_ids.",
                    param=f"tools[{index}]",
                )
            try:
                found = FileSearchTool.model_validate(raw)
            except ValueError as exc:
                raise InvalidRequest(
                    f"Invalid file_search tool: {_first_error(exc)}.",
                    param=f"tools[{index}]",
                ) from exc
        return found

    def _searches(self, tool: FileSearchTool | None) -> bool:
        choice = self.tool_choice
        if isinstance(choice, dict):
            choice = choice.get("type")
        if choice in (None, "auto"):
            return tool is not None
        if choice == "none":
            return False
        if choice not in ("required", "file_search"):
            raise UnsupportedTool(
                f"tool_choice {choice!r} is not supported; use 'auto', 'none', "
                "'required' or {'type': 'file_search'}.",
                param="tool_choice",
            )
        if tool is None:
            raise InvalidRequest(
                "tool_choice asks for a tool but 'tools' has no file_search tool.",
                param="tool_choice",
            )
        return True

    def turns(self) -> list[dict[str, str]]:
        """``input`` as chat turns (developer becomes system)."""
        if isinstance(self.input, str):
            if not self.input.strip():
                raise InvalidRequest("'input' is empty; send some text.", param="input")
            return [{"role": "user", "content": self.input}]
        turns = []
        for index, item in enumerate(self.input):
            turn = _turn(item, f"input[{index}]")
            if turn is not None:
                turns.append(turn)
        if not any(t["role"] == "user" for t in turns):
            raise InvalidRequest("'input' has no user message; add one.", param="input")
        return turns

    @property
    def wants_results(self) -> bool:
        return "file_search_call.results" in (self.include or [])

    @property
    def stores(self) -> bool:
        """OpenAI stores a response unless told not to."""
        return self.store is not False


def history(conversation: list[dict[str, Any]]) -> list[dict[str, str]]:
    """A stored conversation (message items) as chat turns again."""
    turns = [
        _turn(item, f"previous_response_id[{index}]")
        for index, item in enumerate(conversation)
    ]
    return [turn for turn in turns if turn is not None]


def conversation(
    turns: list[dict[str, str]], *, message_id: str, output_text: str
) -> list[dict[str, Any]]:
    """The turns so far and this turn's output, as message items to store;
    the output comes last and keeps its id."""
    items = [
        {"id": new_id("msg"), "type": "message", "role": turn["role"],
         "content": [{"type": "input_text", "text": turn["content"]}]}
        if turn["role"] != "assistant"
        else message(new_id("msg"), status="completed",
                     parts=[text_part(turn["content"], [])])
        for turn in turns
    ]  # fmt: skip
    items.append(
        message(message_id, status="completed", parts=[text_part(output_text, [])])
    )
    return items


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if errors is None:
        return str(exc)
    first = errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else first["msg"]


def _turn(item: dict[str, Any], where: str) -> dict[str, str] | None:
    kind = item.get("type", "message")
    if kind in _SKIPPED_ITEMS:
        return None
    if kind != "message" or "role" not in item:
        raise InvalidRequest(
            f"{where}: input items of type {kind!r} are not supported; send "
            "messages (role and content).",
            param=where,
        )
    role = item["role"]
    if role not in ("user", "assistant", "system", "developer"):
        raise InvalidRequest(f"{where}: unknown role {role!r}.", param=f"{where}.role")
    text = _text(item.get("content"), where)
    if role == "assistant" and not text:
        return None
    return {"role": "system" if role == "developer" else role, "content": text}


def _text(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise InvalidRequest(
            f"{where}.content must be a string or a list of parts.",
            param=f"{where}.content",
        )
    parts = []
    for number, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "refusal" and isinstance(part.get("refusal"), str):
            parts.append(part["refusal"])
        elif kind in _TEXT_PARTS and isinstance(part.get("text"), str):
            parts.append(part["text"])
        else:
            raise InvalidRequest(
                f"{where}.content[{number}]: part type {kind!r} is not supported "
                "by this model; send input_text parts.",
                param=f"{where}.content[{number}]",
            )
    return "".join(parts)


# Output.


def usage(raw: dict[str, int] | None) -> dict[str, Any]:
    raw = raw or {}
    prompt, completion = raw.get("prompt_tokens", 0), raw.get("completion_tokens", 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def search_call(
    item_id: str, *, status: str, queries: list[str], results: list[dict] | None
) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "file_search_call",
        "status": status,
        "queries": queries,
        "results": results,
    }


def text_part(text: str, annotations: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": annotations,
            "logprobs": []}  # fmt: skip


def message(item_id: str, *, status: str, parts: list[dict]) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": parts,
    }


def response(
    *, response_id: str, created_at: int, body: ResponseCreate, status: str,
    output: list[dict], tools: list[dict], usage_: dict | None = None,
    incomplete: str | None = None, error: dict | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The whole response object (also the snapshot streams carry)."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "max_tool_calls": None,
        "model": body.model,
        "output": output,
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "previous_response_id": body.previous_response_id,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": body.stores,
        "temperature": 1.0 if body.temperature is None else body.temperature,
        "text": {"format": {"type": "text"}},
        "tool_choice": body.tool_choice or "auto",
        "tools": tools,
        "top_p": 1.0 if body.top_p is None else body.top_p,
        "truncation": body.truncation or "disabled",
        "usage": usage_,
        "user": body.user,
        "metadata": body.metadata or {},
    }


class EventStream:
    """Numbers the events of one streamed response and frames them as
    server-sent events named after their type, as OpenAI sends them."""

    def __init__(self) -> None:
        self.sequence = 0

    def __call__(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        data = json.dumps(payload, ensure_ascii=False)
        return f"event: {kind}\ndata: {data}\n\n".encode()
