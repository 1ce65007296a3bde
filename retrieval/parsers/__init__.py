"""Bytes to blocks, one module per format; ``parse`` picks the format.

The format comes from the bytes first (a PDF or a ZIP says what it is) and
from the file name only for text formats, which have no signature.
"""

from __future__ import annotations

from pathlib import PurePath

from retrieval.parsed import ParsedDocument
from server.errors import UnparseableDocument

TEXT_SUFFIXES = {".txt", ".text", ".csv", ".tsv", ".log", ".rst", ".json", ""}
MARKDOWN_SUFFIXES = {".md", ".markdown", ".mdown", ".mkd"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
# Formats a user is likely to drop in that we do not read (yet): say so.
_CONVERT_HINT = "convert it to PDF, DOCX, HTML, Markdown or plain text and upload that"


def sniff(data: bytes, filename: str) -> str:
    """pdf, docx, html, markdown or text; raise for anything else."""
    suffix = PurePath(filename).suffix.lower()
    head = data[:1024].lstrip()
    if data[:5] == b"%PDF-" or b"%PDF-" in data[:1024]:
        return "pdf"
    if data[:4] == b"PK\x03\x04":
        if suffix == ".docx" or b"word/" in data[:4096]:
            return "docx"
        raise UnparseableDocument(
            f"{filename!r} is a ZIP-based file ({suffix or 'no suffix'}) that is "
            f"not a Word document; {_CONVERT_HINT}."
        )
    if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        raise UnparseableDocument(
            f"{filename!r} is a legacy Office file (.doc/.xls/.ppt or Outlook "
            f".msg), which is not supported; {_CONVERT_HINT}."
        )
    if suffix in HTML_SUFFIXES:
        return "html"
    if suffix in MARKDOWN_SUFFIXES:
        return "markdown"
    if head[:15].lower().startswith((b"<!doctype html", b"<html")):
        return "html"
    if suffix in TEXT_SUFFIXES or suffix not in _UNSUPPORTED:
        return "text"
    raise UnparseableDocument(
        f"{filename!r}: the {suffix} format is not supported; {_CONVERT_HINT}."
    )


_UNSUPPORTED = {".doc", ".xls", ".xlsx", ".ppt", ".pptx", ".odt", ".rtf", ".epub",
                ".msg", ".eml", ".zip", ".png", ".jpg", ".jpeg", ".gif"}  # fmt: skip


def parse(data: bytes, filename: str) -> ParsedDocument:
    """Parse in this process. Untrusted binary formats should go through
    ``retrieval.sandbox``, which calls this in a limited child process."""
    if not data:
        raise UnparseableDocument(f"{filename!r} is empty (0 bytes); nothing to index.")
    kind = sniff(data, filename)
    if kind == "pdf":
        from retrieval.parsers import pdf

        parsed = pdf.parse(data, filename)
    elif kind == "docx":
        from retrieval.parsers import docx

        parsed = docx.parse(data, filename)
    elif kind == "html":
        from retrieval.parsers import html

        parsed = html.parse(data, filename)
    elif kind == "markdown":
        from retrieval.parsers import markdown

        parsed = markdown.parse(data, filename)
    else:
        from retrieval.parsers import text

        parsed = text.parse(data, filename)

    parsed.layout()
    if not parsed.text.strip():
        raise UnparseableDocument(
            f"{filename!r} ({kind}) contains no text to index; if it is a scan, "
            "run OCR on it first."
        )
    return parsed
