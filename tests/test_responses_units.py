"""Pieces of vector stores and the Responses API that need no server:
attribute filters, citation marks in streamed text, request checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import TypeAdapter, ValidationError

from openai_compat.responses import (
    EventStream,
    ResponseCreate,
    conversation,
    history,
    response,
)
from openai_compat.vector_stores import ChunkingStrategy, SearchRequest, vector_store
from retrieval.attribute_filters import (
    Filter,
    check_attributes,
    check_metadata,
    matches,
)
from retrieval.citation_marks import Marks
from server.errors import InvalidRequest, UnsupportedParameter, UnsupportedTool
from server.response_store import input_items

FILTER = TypeAdapter(Filter)
ATTRS = {"team": "blue", "year": 2024, "draft": False, "score": 0.5}


@pytest.mark.parametrize(
    "rule,expected",
    [
        ({"type": "eq", "key": "team", "value": "blue"}, True),
        ({"type": "eq", "key": "team", "value": "red"}, False),
        ({"type": "ne", "key": "team", "value": "red"}, True),
        ({"type": "ne", "key": "missing", "value": "x"}, True),
        ({"type": "eq", "key": "missing", "value": "x"}, False),
        ({"type": "gt", "key": "year", "value": 2023}, True),
        ({"type": "gte", "key": "year", "value": 2024}, True),
        ({"type": "lt", "key": "year", "value": 2024}, False),
        ({"type": "lte", "key": "score", "value": 0.5}, True),
        ({"type": "gt", "key": "team", "value": 3}, False),
        ({"type": "gt", "key": "team", "value": "alpha"}, True),
        ({"type": "eq", "key": "draft", "value": False}, True),
        ({"type": "eq", "key": "draft", "value": 0}, False),
        ({"type": "eq", "key": "year", "value": 2024.0}, True),
        ({"type": "in", "key": "team", "value": ["red", "blue"]}, True),
        ({"type": "nin", "key": "team", "value": ["red", "blue"]}, False),
        ({"type": "nin", "key": "missing", "value": ["red"]}, True),
        (
            {
                "type": "and",
                "filters": [
                    {"type": "eq", "key": "team", "value": "blue"},
                    {
                        "type": "or",
                        "filters": [
                            {"type": "lt", "key": "year", "value": 2000},
                            {"type": "eq", "key": "draft", "value": False},
                        ],
                    },
                ],
            },
            True,
        ),
        (
            {
                "type": "and",
                "filters": [
                    {"type": "eq", "key": "team", "value": "blue"},
                    {"type": "eq", "key": "draft", "value": True},
                ],
            },
            False,
        ),
    ],
)
def test_filters_match_attributes(rule, expected):
    assert matches(FILTER.validate_python(rule), ATTRS) is expected


@pytest.mark.parametrize(
    "rule",
    [
        {"type": "in", "key": "team", "value": "blue"},
        {"type": "eq", "key": "team", "value": ["blue"]},
        {"type": "gt", "key": "draft", "value": True},
        {"type": "near", "key": "team", "value": "blue"},
        {"type": "and", "filters": []},
    ],
)
def test_malformed_filters_are_refused(rule):
    with pytest.raises(ValidationError):
        FILTER.validate_python(rule)


def test_attributes_and_metadata_follow_openais_limits():
    assert check_attributes({"a": "x", "b": 1.5, "c": True}, "attributes")
    with pytest.raises(InvalidRequest) as info:
        check_attributes({"a": ["list"]}, "attributes")
    assert info.value.param == "attributes.a"
    with pytest.raises(InvalidRequest):
        check_attributes({f"k{i}": i for i in range(17)}, "attributes")
    with pytest.raises(InvalidRequest):
        check_metadata({"a": 1}, "metadata")
    with pytest.raises(InvalidRequest):
        check_metadata({"a": "x" * 513}, "metadata")
    assert check_metadata(None, "metadata") == {}


def _run(marks: Marks, pieces: list[str]) -> tuple[str, list[tuple[int, int]]]:
    text, found = "", []
    for piece in pieces:
        out, more = marks.feed(piece)
        text, found = text + out, found + more
    out, more = marks.finish()
    return text + out, found + more


@pytest.mark.parametrize(
    "pieces",
    [
        ["Descaled with citric acid [1]. Stored upside down [2][1]."],
        [
            "Descaled with citric acid ",
            "[",
            "1",
            "]",
            ". Stored upside down",
            " [2]",
            "[1",
            "].",
        ],  # fmt: skip
        list("Descaled with citric acid [1]. Stored upside down [2][1]."),
    ],
)
def test_marks_leave_clean_text_and_positions(pieces):
    text, found = _run(Marks(sources=2), pieces)
    assert text == "Descaled with citric acid. Stored upside down."
    acid = text.index(".")
    assert found == [(1, acid), (2, len(text) - 1), (1, len(text) - 1)]


def test_marks_keep_numbers_that_name_no_source_and_trailing_text():
    text, found = _run(Marks(sources=1), ["See [7] and [1", "2] and [1]", " end ["])
    assert text == "See [7] and [12] and end ["
    assert found == [(1, len("See [7] and [12] and"))]


def _body(**fields) -> ResponseCreate:
    return ResponseCreate.model_validate({"model": "m", "input": "hi", **fields})


def test_input_becomes_chat_turns():
    body = _body(
        input=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "input_text", "text": "Hello"}]},
            {"type": "file_search_call", "id": "fs_1", "status": "completed"},
            {"type": "message", "role": "assistant", "id": "msg_1",
             "content": [{"type": "output_text", "text": "Hi", "annotations": []}]},
            {"role": "user", "content": "Again?"},
        ]
    )  # fmt: skip
    assert body.turns() == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi"},
        {"role": "user", "content": "Again?"},
    ]
    assert _body().turns() == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    "fields,error,param",
    [
        ({"tools": [{"type": "web_search_preview"}]}, UnsupportedTool, "tools[0].type"),
        ({"tools": [{"type": "function", "name": "f"}]}, UnsupportedTool,
         "tools[0].type"),
        ({"tools": [{"type": "file_search"}]}, InvalidRequest, "tools[0]"),
        ({"tool_choice": "required"}, InvalidRequest, "tool_choice"),
        ({"conversation": "conv_1"}, UnsupportedParameter, "conversation"),
        ({"text": {"format": {"type": "json_object"}}}, UnsupportedParameter,
         "text.format"),
    ],
)  # fmt: skip
def test_unsupported_requests_are_refused_with_a_stable_code(fields, error, param):
    with pytest.raises(error) as info:
        _body(**fields).check()
    assert info.value.param == param
    assert info.value.status == 400


def test_previous_response_id_is_accepted_and_store_defaults_to_true():
    body = _body(previous_response_id="resp_1")
    assert body.check() is None
    made = response(response_id="resp_2", created_at=0, body=body,
                    status="completed", output=[], tools=[])  # fmt: skip
    assert made["store"] is True and made["previous_response_id"] == "resp_1"
    assert _body(store=False).stores is False


def test_stored_conversation_becomes_the_same_turns_again():
    turns = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "My cat is Tom."},
        {"role": "assistant", "content": "Hi Tom."},
        {"role": "user", "content": "Who is my cat?"},
    ]
    items = conversation(turns, message_id="msg_out", output_text="Tom.")
    assert items[-1]["id"] == "msg_out" and items[-1]["role"] == "assistant"
    assert items[0]["content"] == [{"type": "input_text", "text": "Be brief."}]
    assert history(items) == [*turns, {"role": "assistant", "content": "Tom."}]


def test_input_items_are_newest_first_without_the_output():
    turns = [{"role": "user", "content": str(n)} for n in range(3)]
    items = conversation(turns, message_id="msg_out", output_text="done")
    listed = input_items(items, limit=2, order="desc", after=None)
    texts = [item["content"][0]["text"] for item in listed["data"]]
    assert texts == ["2", "1"] and listed["has_more"] is True
    assert listed["first_id"] == items[2]["id"]
    rest = input_items(items, limit=2, order="desc", after=listed["last_id"])
    assert [i["content"][0]["text"] for i in rest["data"]] == ["0"]
    assert rest["has_more"] is False
    ascending = input_items(items, limit=20, order="asc", after=None)
    assert [i["id"] for i in ascending["data"]] == [i["id"] for i in items[:3]]


def test_tool_choice_none_skips_the_search():
    tool = {"type": "file_search", "vector_store_ids": ["vs_1"]}
    assert _body(tools=[tool]).check().vector_store_ids == ["vs_1"]
    assert _body(tools=[tool], tool_choice="none").check() is None
    assert _body(tools=[tool], tool_choice={"type": "file_search"}).check()


def test_input_items_that_are_not_text_are_refused():
    body = _body(
        input=[{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]
    )
    with pytest.raises(InvalidRequest) as info:
        body.turns()
    assert info.value.param == "input[0].content[0]"


def test_events_are_numbered_and_named():
    emit = EventStream()
    first, second = emit("response.created", response={}), emit("response.done")
    assert first.startswith(b"event: response.created\ndata: ")
    assert b'"sequence_number": 0' in first and b'"sequence_number": 1' in second


def test_chunking_strategy_limits():
    auto = ChunkingStrategy.model_validate({"type": "auto"})
    assert auto.sizes() is None
    static = {
        "type": "static",
        "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 50},
    }
    assert ChunkingStrategy.model_validate(static).sizes() == (200, 50)
    static["static"]["max_chunk_size_tokens"] = 800
    with pytest.raises(InvalidRequest):
        ChunkingStrategy.model_validate(static).sizes()  # fmt: skip


def test_search_query_may_be_a_list():
    assert SearchRequest(query=["a", " ", "b"]).queries() == ["a", "b"]
    with pytest.raises(InvalidRequest):
        SearchRequest(query=" ").queries()


def test_a_store_past_its_expiry_says_so():
    now = datetime.now(UTC)
    row = {
        "id": "vs_1", "created_at": now, "name": "", "description": None,
        "usage_bytes": 0, "in_progress": 0, "completed": 0, "failed": 0,
        "cancelled": 0, "total": 0, "metadata": {}, "tenant": "t",
        "expires_after_days": 1, "last_active_at": now - timedelta(days=2),
    }  # fmt: skip
    shown = vector_store(row)
    assert shown["status"] == "expired"
    assert shown["expires_at"] == int((now - timedelta(days=1)).timestamp())
    assert shown["expires_after"] == {"anchor": "last_active_at", "days": 1}
    assert vector_store({**row, "last_active_at": now})["status"] == "completed"
    assert vector_store({**row, "expires_after_days": None})["expires_at"] is None
