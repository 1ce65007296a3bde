"""Hybrid search: BM25 over PostgreSQL full-text terms and pgvector, fused
by rank.

Each ranking is one SQL query filtered by tenant, collections and
document metadata. Reciprocal rank fusion adds 1 / (k + rank) over the
rankings a chunk appears in; k was tuned on SciFact's train split only
(bench/scifact.py --split train).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
import numpy as np

from retrieval import lexical
from retrieval.store import require_chunks_table
from server.dispatch import Dispatcher, new_request_id
from server.errors import InvalidRequest
from workers import protocol
from workers.specs import ModelCatalog

Mode = Literal["hybrid", "dense", "lexical"]
# SciFact train nDCG@10 by k, with BM25: 5 0.7290, 10 0.7291, 15 0.7312,
# 30 0.7290, 60 0.7254 (bench/results/scifact-train.md); the test split was
# not looked at to choose.
RRF_K = 15
# Each ranking contributes this many candidates per result asked for.
_DEPTH = 4
_MIN_DEPTH = 50
_EF_SEARCH = 100

_SELECT = (
    "SELECT c.id, c.document_id, c.collection_id, c.ordinal, c.text, c.section,"
    " c.page_start, c.page_end, c.char_start, c.char_end,"
    " d.filename, d.title, d.metadata"
)
_WHERE = (
    " FROM chunks c JOIN documents d ON d.id = c.document_id"
    " WHERE c.tenant = $1 AND c.collection_id = ANY($2::text[])"
    " AND ($3::jsonb IS NULL OR d.metadata @> $3::jsonb)"
    " AND ($6::text[] IS NULL OR c.document_id = ANY($6::text[]))"
)


@dataclass(kw_only=True)
class Hit:
    row: dict[str, Any]
    score: float
    dense: float | None = None
    lexical: float | None = None


async def embed_query(
    dispatcher: Dispatcher, catalog: ModelCatalog, model: str, text: str
) -> list[float]:
    if "\x00" in text:
        # PostgreSQL would refuse it anyway: say so before embedding it.
        raise InvalidRequest(
            "The query contains NUL characters; remove them and retry.",
            param="query",
        )
    spec = catalog.get(model)
    request_id = new_request_id("qry")
    payload = {"request_id": request_id, "model": spec.name, "input": [text]}
    await dispatcher.submit(task=protocol.EMBED_TASK, spec=spec, payload=payload)
    vector = None
    async for event in dispatcher.events(request_id=request_id, model=spec.name):
        if event["type"] == "embeddings":
            raw = base64.b64decode(event["b64"])
            vector = np.frombuffer(raw, dtype="<f4").reshape(event["rows"], -1)[0]
    return vector.tolist()


def _vector(values: list[float]) -> str:
    return "[" + ",".join(f"{v:.7g}" for v in values) + "]"


async def dense(
    conn: asyncpg.Connection, *, tenant: str, collections: list[str],
    where: dict | None, vector: list[float], limit: int,
    documents: list[str] | None = None,
) -> list[tuple[dict, float]]:  # fmt: skip
    async with conn.transaction():
        # Filtered HNSW scans keep going until enough rows pass the filter.
        await conn.execute(f"SET LOCAL hnsw.ef_search = {max(_EF_SEARCH, limit)}")
        await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        rows = await conn.fetch(
            f"{_SELECT}, c.embedding <=> $4::vector AS distance {_WHERE}"
            " ORDER BY distance LIMIT $5",
            tenant, collections, _json(where), _vector(vector), limit, documents,
        )  # fmt: skip
    ranked = sorted(rows, key=lambda r: r["distance"])
    return [(dict(r), 1.0 - float(r["distance"])) for r in ranked]


# Each query term reads at most this many of its postings, best impact
# first: the long tails of common words decide no top ten.
POSTINGS_PER_TERM = 1000
# The postings' impacts (the order they are read in) use the same k1 and b.
_K1, _B = 1.2, 0.75

# Okapi BM25 over the collections' postings (server/migrations/0006).
_BM25 = f"""
WITH query AS (
    SELECT DISTINCT lexeme AS term FROM unnest(to_tsvector('english', $4))
), totals AS (
    SELECT greatest(sum(lexical_chunks), 1)::float8 AS chunks,
           greatest(sum(lexical_length)::float8
                    / greatest(sum(lexical_chunks), 1), 1) AS avgdl
    FROM collections WHERE id = ANY($2::text[])
), terms AS (
    SELECT t.id, sum(t.df) OVER (PARTITION BY t.term) AS df
    FROM lexical_terms t
    WHERE t.collection_id = ANY($2::text[])
      AND t.term IN (SELECT term FROM query)
), scored AS (
    SELECT p.chunk_id,
           sum(ln(1 + (n.chunks - terms.df + 0.5) / (terms.df + 0.5))
               * p.tf * {_K1 + 1} / (p.tf + {_K1}
                   * ({1 - _B} + {_B} * p.length / n.avgdl))) AS score
    FROM terms CROSS JOIN totals n CROSS JOIN LATERAL (
        SELECT chunk_id, tf, length FROM lexical_postings
        WHERE term_id = terms.id ORDER BY impact DESC LIMIT $7
    ) p
    GROUP BY p.chunk_id ORDER BY score DESC LIMIT $8
)
{_SELECT}, s.score AS rank
FROM scored s JOIN chunks c ON c.id = s.chunk_id
JOIN documents d ON d.id = c.document_id
WHERE c.tenant = $1 AND c.collection_id = ANY($2::text[])
  AND ($3::jsonb IS NULL OR d.metadata @> $3::jsonb)
  AND ($6::text[] IS NULL OR c.document_id = ANY($6::text[]))
ORDER BY rank DESC LIMIT $5
"""


async def words(
    conn: asyncpg.Connection, *, tenant: str, collections: list[str],
    where: dict | None, query: str, limit: int, documents: list[str] | None = None,
) -> list[tuple[dict, float]]:  # fmt: skip
    text = lexical.document_text(query)
    filtered = bool(where) or documents is not None
    # A filter applies after scoring, so a filtered search first tries the
    # top postings and, if the filter leaves too few, scores them all.
    for cap in (POSTINGS_PER_TERM, None):
        rows = await conn.fetch(
            _BM25, tenant, collections, _json(where), text, limit, documents,
            cap, None if filtered else limit,
        )  # fmt: skip
        if len(rows) >= limit or not filtered:
            break
    return [(dict(r), float(r["rank"])) for r in rows]


def fuse(rankings: dict[str, list[tuple[dict, float]]], *, k: int = RRF_K) -> list[Hit]:
    hits: dict[int, Hit] = {}
    for name, ranking in rankings.items():
        for rank, (row, score) in enumerate(ranking, start=1):
            hit = hits.setdefault(row["id"], Hit(row=row, score=0.0))
            hit.score += 1.0 / (k + rank)
            setattr(hit, name, score)
    return sorted(hits.values(), key=lambda h: h.score, reverse=True)


async def search(
    pool: asyncpg.Pool, *, tenant: str, collections: list[str], query: str,
    vector: list[float] | None, mode: Mode, top_k: int, where: dict | None,
    rrf_k: int = RRF_K, documents: list[str] | None = None,
) -> list[Hit]:  # fmt: skip
    """The best ``top_k`` chunks; ``documents``, when given, are the only
    documents searched (attribute filters are resolved to them)."""
    depth = top_k if mode != "hybrid" else max(_MIN_DEPTH, _DEPTH * top_k)
    rankings: dict[str, list[tuple[dict, float]]] = {}
    async with pool.acquire() as conn:
        await require_chunks_table(conn)
        if mode in ("hybrid", "dense") and vector is not None:
            rankings["dense"] = await dense(
                conn, tenant=tenant, collections=collections, where=where,
                vector=vector, limit=depth, documents=documents,
            )  # fmt: skip
        if mode in ("hybrid", "lexical"):
            rankings["lexical"] = await words(
                conn, tenant=tenant, collections=collections, where=where,
                query=query, limit=depth, documents=documents,
            )  # fmt: skip
    if mode != "hybrid":
        (ranking,) = rankings.values()
        return [Hit(row=row, score=score, **{mode: score}) for row, score in ranking][
            :top_k
        ]
    return fuse(rankings, k=rrf_k)[:top_k]


def _json(value: dict | None) -> str | None:
    return None if not value else json.dumps(value)
