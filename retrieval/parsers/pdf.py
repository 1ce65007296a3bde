"""PDF text layer through pypdfium2, page by page.

PDFium reads what a viewer reads; it does no OCR, so a scan has no text
and fails with that reason. Paragraphs are rebuilt from lines: a line that
ends a sentence, or a blank line, ends a paragraph.
"""

from __future__ import annotations

import re

from retrieval.parsed import Block, ParsedDocument
from retrieval.parsers.text import clean
from server.errors import UnparseableDocument

# Fewer characters than this on every page means no usable text layer.
_MIN_CHARS_PER_DOC = 20
_HYPHEN_BREAK = re.compile(r"(\w)-\n(\w)")


def _open(data: bytes, filename: str):
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        reason = str(exc).lower()
        if "password" in reason:
            raise UnparseableDocument(
                f"{filename!r} is encrypted with a password; remove the password "
                "(print to PDF or `qpdf --decrypt`) and upload it again."
            ) from exc
        raise UnparseableDocument(
            f"{filename!r} is not a readable PDF ({exc}); it may be damaged or "
            "truncated: export it again from its source and re-upload."
        ) from exc


def _ends_paragraph(line: str, longest: int) -> bool:
    """A line well short of the column width ends its paragraph: the last
    line of a paragraph, a heading, a table row."""
    return (
        len(line) < 0.7 * longest
        or line.endswith((".", ":", "!", "?"))
        and (len(line) < 0.9 * longest)
    )


def _paragraphs(page_text: str) -> list[str]:
    text = _HYPHEN_BREAK.sub(r"\1\2", clean(page_text))
    lines = [line.strip() for line in text.split("\n")]
    longest = max((len(line) for line in lines), default=0)
    paragraphs, current = [], []
    for line in lines:
        if line:
            current.append(line)
        if current and (not line or _ends_paragraph(line, longest)):
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return paragraphs


def parse(data: bytes, filename: str) -> ParsedDocument:
    document = _open(data, filename)
    try:
        blocks: list[Block] = []
        pages = len(document)
        for index in range(pages):
            page = document[index]
            textpage = page.get_textpage()
            try:
                raw = textpage.get_text_range()
            finally:
                textpage.close()
                page.close()
            blocks.extend(Block(text=p, page=index + 1) for p in _paragraphs(raw))
        title = (document.get_metadata_value("Title") or "").strip() or None
    finally:
        document.close()

    if sum(len(b.text) for b in blocks) < _MIN_CHARS_PER_DOC:
        raise UnparseableDocument(
            f"{filename!r} has {pages} page(s) but no text layer (a scan or "
            "blank pages); run OCR on it (e.g. ocrmypdf) and upload the result."
        )
    return ParsedDocument(format="pdf", blocks=blocks, title=title, pages=pages)
