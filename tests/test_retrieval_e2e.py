"""Collections end to end over HTTP against the session's `hearth up`:
upload -> ingestion job -> search, idempotent re-upload, replace, delete,
a failing PDF, CJK and metadata filters."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from tests import office_files

pytestmark = pytest.mark.stack

_NOTES = (
    "# Kettles\n\n## Descaling\n\nThe blue kettle is descaled with citric acid "
    "every March. Vinegar leaves a smell that lingers for days.\n\n"
    "## Storage\n\nKettles are stored upside down in the west cupboard.\n"
)


@pytest.fixture
def api(base_url: str, api_key: str):
    with httpx.Client(
        base_url=base_url, timeout=60, headers={"Authorization": f"Bearer {api_key}"}
    ) as client:
        yield client  # fmt: skip


@pytest.fixture
def collection(api):
    made = api.post("/collections", json={"name": f"t-{uuid.uuid4().hex[:8]}"})
    assert made.status_code == 201, made.text
    yield made.json()["id"]
    api.delete(f"/collections/{made.json()['id']}")


def _settled(api, collection: str, document_id: str) -> dict:
    for _ in range(240):
        doc = api.get(f"/collections/{collection}/documents/{document_id}").json()
        if doc["state"] in ("ready", "failed"):
            return doc
        time.sleep(0.25)
    raise AssertionError(f"document {document_id} never settled: {doc}")


def _upload(api, collection, name, data, metadata="{}") -> dict:
    reply = api.post(
        f"/collections/{collection}/documents",
        files={"file": (name, data)},
        data={"metadata": metadata},
    )
    assert reply.status_code == 202, reply.text  # fmt: skip
    return reply.json()["data"][0]


def _search(api, collection, query, **extra) -> list[dict]:
    reply = api.post(f"/collections/{collection}/search",
                     json={"query": query, "top_k": 5, **extra})  # fmt: skip
    assert reply.status_code == 200, reply.text
    return reply.json()["data"]


def test_upload_search_reupload_replace_delete(api, collection):
    doc = _upload(api, collection, "notes.md", _NOTES.encode(), '{"team": "a"}')
    assert doc["action"] == "created" and doc["job_id"]
    ready = _settled(api, collection, doc["id"])
    assert ready["state"] == "ready" and ready["chunk_count"] >= 1
    job = api.get(f"/jobs/{doc['job_id']}").json()
    assert job["state"] == "succeeded" and job["progress"]["stage"] == "indexing"

    for mode in ("hybrid", "dense", "lexical"):
        hits = _search(api, collection, "How is the kettle descaled?", mode=mode)
        assert hits and hits[0]["document_id"] == doc["id"], mode
        top = hits[0]
        assert "citric acid" in top["text"] and top["section"].startswith("Kettles")
    assert _search(api, collection, "kettle", filters={"team": "b"}) == []

    again = _upload(api, collection, "notes.md", _NOTES.encode(), '{"team": "a"}')
    assert again["action"] == "unchanged" and again["id"] == doc["id"]

    changed = _NOTES.replace("citric acid", "lemon juice")
    replaced = _upload(api, collection, "notes.md", changed.encode())
    assert replaced["action"] == "replaced" and replaced["id"] == doc["id"]
    _settled(api, collection, doc["id"])
    texts = " ".join(h["text"] for h in _search(api, collection, "descaled"))
    assert "lemon juice" in texts and "citric acid" not in texts

    gone = api.delete(f"/collections/{collection}/documents/{doc['id']}")
    assert gone.status_code == 200
    assert _search(api, collection, "kettle descaled", mode="lexical") == []
    missing = api.get(f"/collections/{collection}/documents/{doc['id']}")
    assert missing.status_code == 404


def test_a_broken_pdf_fails_its_own_job_with_a_reason(api, collection):
    bad = _upload(api, collection, "broken.pdf", b"%PDF-1.7\nnot really a pdf")
    good = _upload(api, collection, "ok.txt", b"Cats sleep sixteen hours a day.")
    failed = _settled(api, collection, bad["id"])
    assert failed["state"] == "failed" and failed["chunk_count"] == 0
    assert failed["error"]["code"] == "unparseable_document"
    job = api.get(f"/jobs/{bad['job_id']}").json()
    assert job["state"] == "failed"
    assert job["error"]["code"] == "unparseable_document"
    assert _settled(api, collection, good["id"])["state"] == "ready"


def test_cjk_text_is_found_by_a_cjk_query(api, collection):
    text = "東京都は日本の首都です。京都は古い都です。".encode()
    doc = _upload(api, collection, "jp.txt", text)
    assert _settled(api, collection, doc["id"])["state"] == "ready"
    hits = _search(api, collection, "日本の首都", mode="lexical")
    assert hits and hits[0]["document_id"] == doc["id"]


@pytest.mark.parametrize(
    "name,build,query,page",
    [("deck.pptx", office_files.pptx_file, "region revenue grew", 2),
     ("book.xlsx", office_files.xlsx_file, "North units price", None),
     ("guide.odt", office_files.odt_file, "mallard teal species", None),
     ("winter.epub", office_files.epub_file, "rinks freeze december", None),
     ("plans.eml", office_files.email_file, "petting zoo noon", None),
     ("menu.rtf", lambda: office_files.RTF.encode(), "espresso costs", None)],
)  # fmt: skip
def test_office_formats_are_indexed_and_found(
    api, collection, name, build, query, page
):
    doc = _upload(api, collection, name, build())
    settled = _settled(api, collection, doc["id"])
    assert settled["state"] == "ready", settled
    assert settled["format"] == name.rsplit(".", 1)[1]

    hits = _search(api, collection, query, mode="lexical")
    assert hits and hits[0]["document_id"] == doc["id"]
    if page is not None:
        # The slide it came from; a small deck may be one chunk.
        assert hits[0]["page_start"] <= page <= hits[0]["page_end"]


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
def test_a_query_with_nul_characters_is_refused(api, collection, mode):
    reply = api.post(f"/collections/{collection}/search",
                     json={"query": "kettle\u0000descaling", "mode": mode})  # fmt: skip
    assert reply.status_code == 400, reply.text
    assert "NUL" in reply.json()["error"]["message"]
