"""Parsers and chunker on small built documents and a few shared ones."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from retrieval.chunking import chunk
from retrieval.lexical import cjk_bigrams, document_text
from retrieval.parsers import parse
from retrieval.sandbox import parse_file
from server.errors import UnparseableDocument

# Evaluation data stays out of the repository; .ci/run points here at it.
DATA = Path(
    os.environ.get(
        "HEARTH_EVAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
    )
)
DOCS = DATA / "docs"
needs_docs = pytest.mark.skipif(
    not DOCS.exists(),
    reason=f"no evaluation documents at {DOCS}; set HEARTH_EVAL_DATA",
)


def _blank_pdf(pages: int) -> bytes:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument.new()
    for _ in range(pages):
        doc.new_page(612, 792)
    out = io.BytesIO()
    doc.save(out)
    doc.close()
    return out.getvalue()


def _zip_bomb_docx() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b"\0" * (20 * 1024 * 1024))
    return out.getvalue()


@pytest.mark.parametrize(
    "name,data,reason",
    [
        ("blank.pdf", _blank_pdf(3), "no text layer"),
        ("broken.pdf", b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nxref\n0 9\ngarbage",
         "not a readable PDF"),
        ("bomb.docx", _zip_bomb_docx(), "ZIP bomb"),
        ("empty.txt", b"", "empty"),
        ("binary.txt", bytes(range(256)) * 64, "looks binary"),
        ("old.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600, "legacy Office"),
    ],
)  # fmt: skip
def test_hostile_files_fail_with_a_reason(tmp_path, name, data, reason):
    path = tmp_path / "upload"
    path.write_bytes(data)
    with pytest.raises(UnparseableDocument) as caught:
        parse_file(path, name)
    assert reason in caught.value.message


@needs_docs
def test_encrypted_pdf_says_so(tmp_path):
    path = DOCS / "unstructured" / "pdf" / "password.pdf"
    with pytest.raises(UnparseableDocument, match="encrypted"):
        parse_file(path, "password.pdf")


@needs_docs
def test_pdf_keeps_pages_and_offsets():
    doc = parse_file(DOCS / "docling" / "pdf" / "multi_page.pdf", "multi_page.pdf")
    assert doc.pages == 5 and {b.page for b in doc.blocks} == {1, 2, 3, 4, 5}
    chunks = chunk(doc, target=128, overlap=16)
    assert all(doc.text[c.start : c.end] == c.text for c in chunks)
    assert chunks[-1].page_end == 5


def test_text_encodings_and_nul_bytes():
    latin = "Le café est prêt, déjà servi à la fenêtre où l'été brûle."
    assert parse(latin.encode("cp1252"), "a.txt").text == latin
    stray_nul = "A naïve line of text\x00 that a NUL byte slipped into."
    assert "\x00" not in parse(stray_nul.encode(), "b.txt").text
    utf16 = "hello wörld".encode("utf-16")
    assert parse(utf16, "c.txt").text == "hello wörld"


def test_html_drops_scripts_and_keeps_headings():
    html = (b"<html><head><title>T</title><script>var secret=1</script></head>"
            b"<body><h1>Intro</h1><p>Hello <b>there</b>.</p>"
            b"<script>alert(1)</script><table><tr><td>a</td><td>b</td></tr>"
            b"</table></body></html>")  # fmt: skip
    doc = parse(html, "page.html")
    assert "secret" not in doc.text and "alert" not in doc.text
    assert [b.kind for b in doc.blocks] == ["heading", "text", "table"]
    assert doc.title == "T"


def test_chunks_follow_sections_sentences_and_overlap():
    body = " ".join(f"Sentence number {i} is here." for i in range(60))
    md = f"# Top\n\n## Part A\n\n{body}\n\n## Part B\n\nShort tail.".encode()
    doc = parse(md, "doc.md")
    chunks = chunk(doc, target=64, overlap=16)
    assert all(c.tokens <= 64 for c in chunks)
    assert all(c.text.endswith(".") for c in chunks)
    assert chunks[0].section == "Top > Part A"
    assert chunks[-1].section == "Top > Part B"
    # Consecutive chunks of one section share their boundary sentences.
    assert chunks[1].start < chunks[0].end


def test_cjk_is_indexed_as_bigrams():
    assert cjk_bigrams("東京都") == ["東京", "京都"]
    assert "京都" in document_text("京都の天気").split()
