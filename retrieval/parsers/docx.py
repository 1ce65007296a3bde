"""Word (.docx) through python-docx: paragraphs and tables in body order.

A DOCX is a ZIP, so its declared sizes are checked before anything is
inflated: a small file that expands to gigabytes (a zip bomb) is refused.
"""

from __future__ import annotations

import io
import re

from retrieval.parsed import Block, ParsedDocument
from retrieval.parsers import archive
from retrieval.parsers.text import clean
from server.errors import UnparseableDocument

_HEADING_STYLE = re.compile(r"^(?:heading|überschrift|titre)\s*(\d)", re.I)


def _paragraph_block(paragraph) -> Block | None:
    text = paragraph.text
    if not text.strip():
        return None
    style = (paragraph.style.name if paragraph.style is not None else "") or ""
    if style.lower() == "title":
        return Block(text=text, kind="heading", level=1)
    match = _HEADING_STYLE.match(style)
    if match:
        return Block(text=text, kind="heading", level=min(6, int(match.group(1))))
    if "list" in style.lower():
        return Block(text=text, kind="list")
    return Block(text=text)


def _table_block(table) -> Block:
    rows = []
    for row in table.rows:
        cells, last = [], None
        for cell in row.cells:
            # Merged cells repeat the same object; say their text once.
            if cell._tc is not last:
                cells.append(" ".join(cell.text.split()))
            last = cell._tc
        rows.append(" | ".join(cells))
    return Block(text="\n".join(rows), kind="table")


def parse(data: bytes, filename: str) -> ParsedDocument:
    archive.open_archive(data, filename, kind="docx", required="word/document.xml")
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(io.BytesIO(data))
        items = list(document.iter_inner_content())
    except Exception as exc:  # python-docx raises KeyError, lxml errors, ...
        raise UnparseableDocument(
            f"{filename!r} could not be read as DOCX ({type(exc).__name__}); "
            "open and save it again in Word or LibreOffice."
        ) from exc

    blocks = []
    for item in items:
        if isinstance(item, Paragraph):
            block = _paragraph_block(item)
        elif isinstance(item, Table):
            block = _table_block(item)
        else:
            block = None
        if block is not None:
            block.text = clean(block.text)
            blocks.append(block)
    title = document.core_properties.title or None
    return ParsedDocument(format="docx", blocks=blocks, title=title)
