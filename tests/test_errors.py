"""The exception tree: every error crosses the queue intact."""

from __future__ import annotations

import pytest

from server import errors
from server.errors import HearthError

ALL = errors._all_subclasses(HearthError)


def test_codes_are_unique():
    codes = [cls.code for cls in ALL]
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_round_trip_through_a_task_message(cls):
    original = cls("what to fix", param="field", retry_after=3)
    back = HearthError.from_dict(original.to_dict())
    assert type(back) is cls
    assert (back.status, back.code, back.message, back.param, back.retry_after) == (
        cls.status,
        cls.code,
        "what to fix",
        "field",
        3,
    )


def test_statuses_are_http_error_statuses():
    for cls in ALL:
        assert 400 <= cls.status < 600, cls


def test_unknown_code_becomes_a_generic_error():
    back = HearthError.from_dict({"code": "brand_new", "message": "m"})
    assert type(back) is HearthError and back.status == 500
