"""OpenAI's attribute filters, and the attributes and metadata they read.

A comparison (``eq``, ``ne``, ``gt``, ``gte``, ``lt``, ``lte``, ``in``,
``nin``) tests one attribute of a file; ``and`` and ``or`` combine
filters. They are evaluated here, over each document's attributes, and
the search is then restricted to the documents that pass: exact for every
operator and nesting, and a vector store holds few enough files for that
to cost less than the search itself.

Types never mix: ``true`` is not ``1``, and a number is never greater
than a string. A missing attribute equals nothing, so ``ne`` and ``nin``
pass it and every other comparison fails it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from server.errors import InvalidRequest

MAX_PAIRS = 16
MAX_KEY = 64
MAX_VALUE = 512

Scalar = str | float | bool
_MISSING = object()


class Comparison(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "nin"]
    key: str = Field(min_length=1, max_length=MAX_KEY)
    value: Scalar | list[str | float]

    @model_validator(mode="after")
    def _check(self) -> Comparison:
        listed = isinstance(self.value, list)
        if self.type in ("in", "nin") and not listed:
            raise ValueError(f"'{self.type}' compares with a list of values")
        if self.type not in ("in", "nin") and listed:
            raise ValueError(f"'{self.type}' compares with one value, not a list")
        if self.type in ("gt", "gte", "lt", "lte") and isinstance(self.value, bool):
            raise ValueError(f"'{self.type}' compares numbers or strings")
        return self


class Compound(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["and", "or"]
    filters: list[Filter] = Field(min_length=1, max_length=64)


Filter = Annotated[Comparison | Compound, Field(discriminator="type")]
Compound.model_rebuild()


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(have: Any, want: Any) -> bool:
    if _number(have) and _number(want):
        return have == want
    return type(have) is type(want) and have == want


def _order(have: Any, want: Any) -> int | None:
    """-1, 0 or 1 comparing ``have`` with ``want``; None across types."""
    if not (_number(have) and _number(want)) and not (
        isinstance(have, str) and isinstance(want, str)
    ):
        return None
    return (have > want) - (have < want)


def matches(rule: Comparison | Compound, attributes: dict[str, Any]) -> bool:
    """Whether a file with ``attributes`` passes ``rule``."""
    if isinstance(rule, Compound):
        passed = (matches(inner, attributes) for inner in rule.filters)
        return all(passed) if rule.type == "and" else any(passed)

    have = attributes.get(rule.key, _MISSING)
    if rule.type in ("in", "nin"):
        found = have is not _MISSING and any(_same(have, v) for v in rule.value)
        return found if rule.type == "in" else not found
    if rule.type in ("eq", "ne"):
        equal = have is not _MISSING and _same(have, rule.value)
        return equal if rule.type == "eq" else not equal
    order = _order(have, rule.value)
    if order is None:
        return False
    return {"gt": order > 0, "gte": order >= 0, "lt": order < 0, "lte": order <= 0}[
        rule.type
    ]


def _pairs(value: dict[str, Any], param: str) -> None:
    if len(value) > MAX_PAIRS:
        raise InvalidRequest(
            f"'{param}' has {len(value)} keys; at most {MAX_PAIRS} are allowed.",
            param=param,
        )
    for key in value:
        if not key or len(key) > MAX_KEY:
            raise InvalidRequest(
                f"'{param}' key {key[:80]!r} must be 1 to {MAX_KEY} characters.",
                param=param,
            )


def check_attributes(value: dict[str, Any] | None, param: str) -> dict[str, Any]:
    """A file's attributes: strings (up to 512 characters), numbers, booleans."""
    value = value or {}
    _pairs(value, param)
    for key, item in value.items():
        if isinstance(item, str) and len(item) <= MAX_VALUE:
            continue
        if isinstance(item, int | float):
            continue
        raise InvalidRequest(
            f"'{param}.{key}' must be a string of at most {MAX_VALUE} characters, "
            f"a number or a boolean (got {type(item).__name__}).",
            param=f"{param}.{key}",
        )
    return value


def check_metadata(value: dict[str, Any] | None, param: str) -> dict[str, str]:
    """OpenAI's metadata: strings of up to 512 characters."""
    value = value or {}
    _pairs(value, param)
    for key, item in value.items():
        if not isinstance(item, str) or len(item) > MAX_VALUE:
            raise InvalidRequest(
                f"'{param}.{key}' must be a string of at most {MAX_VALUE} characters.",
                param=f"{param}.{key}",
            )
    return value
