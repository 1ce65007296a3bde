"""The BM25 index on a real embedded PostgreSQL: its statistics follow
every write and delete, its ranking is BM25's, and a filtered search finds
what the per-term posting cap would have cut."""

from __future__ import annotations

import asyncio
import hashlib

import asyncpg
import pytest

from retrieval import lexical, search, store
from server.child_registry import ChildRegistry
from server.db import migrate_database
from server.embedded import start_database

TENANT = "t-lexical"


@pytest.fixture(scope="module")
def database_url(tmp_path_factory) -> str:
    registry = ChildRegistry()
    url = start_database(registry, data_dir=tmp_path_factory.mktemp("pg"))
    try:
        asyncio.run(migrate_database(url))
        yield url
    finally:
        registry.stop(["database"])


def run(database_url: str, work):
    async def main():
        conn = await asyncpg.connect(database_url)
        try:
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(main())


async def _collection(conn, name: str) -> str:
    made = await store.create_collection(
        conn, tenant=TENANT, name=name, description=None, metadata={},
        embedding_model="m", chunk_tokens=200, chunk_overlap=20,
    )  # fmt: skip
    return made["id"]


async def _document(conn, collection: str, name: str, texts: list[str],
                    metadata: dict | None = None) -> str:  # fmt: skip
    sha = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    placed = await store.place_document(
        conn, tenant=TENANT, collection_id=collection,
        incoming=store.Incoming(filename=name, title=None, metadata=metadata or {},
                                file_id="f", sha256=sha, size=1),
    )  # fmt: skip
    document = placed.document["id"]
    await _index(conn, document, sha, texts)
    return document


async def _index(conn, document: str, sha: str, texts: list[str]) -> None:
    rows = [
        store.ChunkRow(
            ordinal=i, text=text, context=None, section=None, page_start=None,
            page_end=None, char_start=0, char_end=len(text), tokens=len(text.split()),
            embedding=[0.1] * 384, lexical=lexical.document_text(text),
        )
        for i, text in enumerate(texts)
    ]  # fmt: skip
    written = await store.replace_chunks(
        conn, document_id=document, sha256=sha, text="\n".join(texts),
        format="text", pages=None, title=None, rows=rows,
    )  # fmt: skip
    assert written


async def _statistics_match_chunks(conn, collection: str) -> None:
    """What the triggers kept equals what the chunks say now."""
    kept = await conn.fetchrow(
        "SELECT lexical_chunks, lexical_length FROM collections WHERE id = $1",
        collection,
    )
    actual = await conn.fetchrow(
        "SELECT count(*) AS chunks, coalesce(sum(hearth_tsv_length(tsv)), 0)"
        " AS length FROM chunks WHERE collection_id = $1",
        collection,
    )
    assert (kept["lexical_chunks"], kept["lexical_length"]) == tuple(actual)

    terms = await conn.fetch(
        "SELECT term, df FROM lexical_terms WHERE collection_id = $1 ORDER BY term",
        collection,
    )
    counted = await conn.fetch(
        "SELECT u.lexeme AS term, count(*) AS df FROM chunks c, unnest(c.tsv) u"
        " WHERE c.collection_id = $1 GROUP BY 1 ORDER BY 1",
        collection,
    )
    assert [tuple(r) for r in terms] == [tuple(r) for r in counted]

    postings = await conn.fetchval(
        "SELECT count(*) FROM lexical_postings p JOIN lexical_terms t"
        " ON t.id = p.term_id WHERE t.collection_id = $1",
        collection,
    )
    words = await conn.fetchval(
        "SELECT count(*) FROM chunks c, unnest(c.tsv) WHERE c.collection_id = $1",
        collection,
    )
    assert postings == words
    orphans = await conn.fetchval(
        "SELECT count(*) FROM lexical_postings p"
        " WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.id = p.chunk_id)"
    )
    assert orphans == 0


def test_statistics_follow_inserts_replacements_and_deletes(database_url):
    async def work(conn):
        collection = await _collection(conn, "stats")
        other = await _collection(conn, "stats-other")
        first = await _document(
            conn,
            collection,
            "a.txt",
            ["Kettles boil water.", "Kettles whistle loudly."],
        )
        await _document(conn, collection, "b.txt", ["Teapots steep tea leaves."])
        await _document(conn, other, "c.txt", ["Kettles in another collection."])
        await _statistics_match_chunks(conn, collection)

        # New bytes for the same document replace its chunks.
        sha = hashlib.sha256(b"v2").hexdigest()
        await conn.execute(
            "UPDATE documents SET content_sha256 = $2 WHERE id = $1", first, sha
        )
        await _index(conn, first, sha, ["Copper kettles tarnish."] * 3)
        await _statistics_match_chunks(conn, collection)

        await store.delete_document(
            conn, tenant=TENANT, collection_id=collection, document_id=first
        )
        await _statistics_match_chunks(conn, collection)
        assert await conn.fetchval(
            "SELECT count(*) FROM lexical_terms WHERE collection_id = $1"
            " AND term = 'kettl'", collection,
        ) == 0  # fmt: skip

        # Another collection's numbers were never touched.
        await _statistics_match_chunks(conn, other)
        await store.delete_collection(conn, tenant=TENANT, ref=collection)
        assert await conn.fetchval(
            "SELECT count(*) FROM lexical_terms WHERE collection_id = $1", collection
        ) == 0  # fmt: skip
        await _statistics_match_chunks(conn, other)

    run(database_url, work)


def test_ranking_is_bm25(database_url):
    async def work(conn):
        collection = await _collection(conn, "rank")
        # "pump" is in every chunk, "valve" in one: the rare word decides.
        await _document(
            conn, collection, "common.txt", ["pump pump pump station", "pump house"]
        )
        rare = await _document(conn, collection, "rare.txt", ["pump valve"])
        hits = await search.words(
            conn, tenant=TENANT, collections=[collection], where=None,
            query="pump valve", limit=3,
        )  # fmt: skip
        assert hits[0][0]["document_id"] == rare

        # At equal term frequency the shorter chunk wins.
        short = await _document(conn, collection, "short.txt", ["gasket"])
        await _document(
            conn,
            collection,
            "long.txt",
            ["gasket " + "flange bolt nut washer seal " * 5],
        )
        hits = await search.words(
            conn, tenant=TENANT, collections=[collection], where=None,
            query="gasket", limit=2,
        )  # fmt: skip
        assert hits[0][0]["document_id"] == short
        assert hits[0][1] > hits[1][1] > 0

        # Another tenant naming this collection finds nothing.
        assert await search.words(
            conn, tenant="t-other", collections=[collection], where=None,
            query="gasket", limit=2,
        ) == []  # fmt: skip

    run(database_url, work)


def test_a_filter_reaches_past_the_posting_cap(database_url, monkeypatch):
    monkeypatch.setattr(search, "POSTINGS_PER_TERM", 2)

    async def work(conn):
        collection = await _collection(conn, "cap")
        for i in range(4):
            text = f"anchor anchor anchor chain {i}"
            await _document(conn, collection, f"top{i}.txt", [text], {"kind": "top"})
        text = "anchor " + "rope " * 30
        wanted = await _document(conn, collection, "weak.txt", [text], {"kind": "weak"})

        unfiltered = await search.words(
            conn, tenant=TENANT, collections=[collection], where=None,
            query="anchor", limit=10,
        )  # fmt: skip
        # The cap keeps the two best postings; the weak chunk is not one.
        assert len(unfiltered) == 2
        assert wanted not in {row["document_id"] for row, _ in unfiltered}

        filtered = await search.words(
            conn, tenant=TENANT, collections=[collection], where={"kind": "weak"},
            query="anchor", limit=10,
        )  # fmt: skip
        assert [row["document_id"] for row, _ in filtered] == [wanted]

    run(database_url, work)


def test_the_index_is_built_for_chunks_written_before_it(database_url):
    async def work(conn):
        collection = await _collection(conn, "backfill")
        await _document(conn, collection, "a.txt", ["Lanterns glow.", "Moths fly."])
        before = await search.words(
            conn, tenant=TENANT, collections=[collection], where=None,
            query="moths", limit=5,
        )  # fmt: skip

        # As a database migrated before the index existed would be.
        async with conn.transaction():
            await conn.execute(
                "DROP TABLE lexical_postings, lexical_terms;"
                " DROP TRIGGER chunks_lexical_added ON chunks;"
                " DROP TRIGGER chunks_lexical_removed ON chunks;"
                " UPDATE collections SET lexical_chunks = 0, lexical_length = 0;"
                " SELECT hearth_retrieval_schema();"
            )
        for name in await conn.fetch("SELECT id FROM collections"):
            await _statistics_match_chunks(conn, name["id"])
        after = await search.words(
            conn, tenant=TENANT, collections=[collection], where=None,
            query="moths", limit=5,
        )  # fmt: skip
        assert before and [(r["id"], s) for r, s in after] == [
            (r["id"], s) for r, s in before
        ]

    run(database_url, work)


def test_deleting_a_collection_while_a_document_is_written_does_not_deadlock(
    database_url,
):
    async def main():
        writer = await asyncpg.connect(database_url)
        deleter = await asyncpg.connect(database_url)
        try:
            collection = await _collection(writer, "race")
            texts = [f"lantern {i} wick oil glass" for i in range(2000)]
            sha = hashlib.sha256("\n".join(texts).encode()).hexdigest()
            placed = await store.place_document(
                writer, tenant=TENANT, collection_id=collection,
                incoming=store.Incoming(filename="big.txt", title=None, metadata={},
                                        file_id="f", sha256=sha, size=1),
            )  # fmt: skip
            document = placed.document["id"]
            writing = asyncio.create_task(_index(writer, document, sha, texts))

            # Delete while the writer is inserting the chunks.
            pid = writer.get_server_pid()
            while not await deleter.fetchval(
                "SELECT query LIKE 'INSERT INTO chunks%' FROM pg_stat_activity"
                " WHERE pid = $1 AND state = 'active'", pid,
            ):  # fmt: skip
                assert not writing.done(), "the chunks were written too fast"
                await asyncio.sleep(0.002)
            async with deleter.transaction():
                await store.delete_collection(deleter, tenant=TENANT, ref=collection)
            await writing

            assert await deleter.fetchval(
                "SELECT count(*) FROM chunks WHERE collection_id = $1", collection
            ) == 0  # fmt: skip
            assert await deleter.fetchval(
                "SELECT count(*) FROM lexical_postings p WHERE NOT EXISTS"
                " (SELECT 1 FROM chunks c WHERE c.id = p.chunk_id)"
            ) == 0  # fmt: skip
        finally:
            await writer.close()
            await deleter.close()

    asyncio.run(main())
