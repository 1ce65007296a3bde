"""The scopes a key may hold, and what each lets it do."""

from __future__ import annotations

from collections.abc import Iterable

from server.errors import InvalidRequest

ADMIN = "admin"  # keys, usage, audit, workers; implies every other scope
INFERENCE = "inference"  # chat, completions, embeddings, models
INGEST = "ingest"  # documents and collections (arriving with retrieval)
READ = "read"  # listing models and, later, reading documents and jobs

ALL = (ADMIN, INFERENCE, INGEST, READ)


def parse_scopes(values: str | Iterable[str]) -> tuple[str, ...]:
    """``"inference,read"`` or a list, checked and in a stable order."""
    if isinstance(values, str):
        values = values.split(",")
    given = {value.strip() for value in values if value.strip()}
    unknown = sorted(given - set(ALL))
    if unknown:
        raise InvalidRequest(
            f"Unknown scope(s) {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(ALL)}.",
            param="scopes",
        )
    if not given:
        raise InvalidRequest(
            f"A key needs at least one scope; choose from {', '.join(ALL)}.",
            param="scopes",
        )
    return tuple(scope for scope in ALL if scope in given)


def grants(held: Iterable[str], wanted: Iterable[str]) -> bool:
    """True if ``held`` allows any one of ``wanted``."""
    held = set(held)
    return ADMIN in held or bool(held & set(wanted))
