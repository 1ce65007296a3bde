"""Bytes to blocks, one module per format; ``parse`` picks the format.

The format comes from the bytes first (a PDF, an RTF or a ZIP says what it
is, and a ZIP's member names tell DOCX, PPTX, XLSX, ODT and EPUB apart)
and from the file name only for text formats, which have no signature.
"""

from __future__ import annotations

import importlib
import re
from pathlib import PurePath

from retrieval.parsed import ParsedDocument
from retrieval.parsers import archive
from server.errors import UnparseableDocument

TEXT_SUFFIXES = {".txt", ".text", ".csv", ".tsv", ".log", ".rst", ".json", ""}
MARKDOWN_SUFFIXES = {".md", ".markdown", ".mdown", ".mkd"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
# Formats a user is likely to drop in that we do not read (yet): say so.
_CONVERT_HINT = (
    "convert it to PDF, DOCX, PPTX, XLSX, HTML, Markdown or plain text and upload that"
)
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# Office keeps a password-protected DOCX, XLSX or PPTX in the old OLE box.
_PROTECTED_SUFFIXES = {".docx", ".xlsx", ".pptx", ".docm", ".xlsm", ".pptm"}
# A mail file without a suffix starts with headers such as these.
_MAIL_START = re.compile(
    rb"(?:Return-Path|Received|Delivered-To|From|To|Date|Subject|Message-ID"
    rb"|MIME-Version|X-[\w-]+):[ \t]", re.I
)  # fmt: skip
_MAIL_FROM = re.compile(rb"^From:[ \t]", re.I | re.M)


def sniff(data: bytes, filename: str) -> str:
    """pdf, docx, pptx, xlsx, odt, epub, rtf, eml, html, markdown or text;
    raise for anything else."""
    suffix = PurePath(filename).suffix.lower()
    head = data[:1024].lstrip()
    if data[:5] == b"%PDF-" or b"%PDF-" in data[:1024]:
        return "pdf"
    if data[:4] == b"PK\x03\x04":
        return archive.kind_of(data, filename, suffix)
    if data[:8] == _OLE and suffix in _PROTECTED_SUFFIXES:
        raise UnparseableDocument(
            f"{filename!r} is protected with a password (Office encrypts it "
            "into another format); remove the password, save it again and "
            "upload it."
        )
    if data[:8] == _OLE:
        raise UnparseableDocument(
            f"{filename!r} is a legacy Office file (.doc/.xls/.ppt or Outlook "
            f".msg), which is not supported; {_CONVERT_HINT}."
        )
    if head.startswith(b"{\\rtf"):
        return "rtf"
    if suffix == ".eml":
        return "eml"
    if suffix in HTML_SUFFIXES:
        return "html"
    if suffix in MARKDOWN_SUFFIXES:
        return "markdown"
    if head[:15].lower().startswith((b"<!doctype html", b"<html")):
        return "html"
    if not suffix and _MAIL_START.match(head) and _MAIL_FROM.search(data[:8192]):
        return "eml"
    if suffix in TEXT_SUFFIXES or suffix not in _UNSUPPORTED:
        return "text"
    raise UnparseableDocument(
        f"{filename!r}: the {suffix} format is not supported; {_CONVERT_HINT}."
    )


_UNSUPPORTED = {".doc", ".xls", ".ppt", ".msg", ".xlsb", ".ods", ".odp",
                ".zip", ".png", ".jpg", ".jpeg", ".gif"}  # fmt: skip


def parse(data: bytes, filename: str) -> ParsedDocument:
    """Parse in this process. Untrusted binary formats should go through
    ``retrieval.sandbox``, which calls this in a limited child process."""
    if not data:
        raise UnparseableDocument(f"{filename!r} is empty (0 bytes); nothing to index.")
    kind = sniff(data, filename)
    # Each format's module is named after it and imported only when needed.
    module = importlib.import_module(f"{__name__}.{kind}")
    parsed = module.parse(data, filename)

    parsed.layout()
    if not parsed.text.strip():
        raise UnparseableDocument(
            f"{filename!r} ({kind}) contains no text to index; if it is a scan, "
            "run OCR on it first."
        )
    return parsed
