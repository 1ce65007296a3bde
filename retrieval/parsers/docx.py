"""Word (.docx) through python-docx: paragraphs and tables in body order.

A DOCX is a ZIP, so its declared sizes are checked before anything is
inflated: a small file that expands to gigabytes (a zip bomb) is refused.
"""

from __future__ import annotations

import io
import re
import zipfile

from retrieval.parsed import Block, ParsedDocument
from retrieval.parsers.text import clean
from server.errors import UnparseableDocument

MAX_INFLATED_BYTES = 256 * 1024 * 1024
MAX_RATIO = 200
_HEADING_STYLE = re.compile(r"^(?:heading|überschrift|titre)\s*(\d)", re.I)


def check_archive(data: bytes, filename: str) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise UnparseableDocument(
            f"{filename!r} is not a valid DOCX (the ZIP is damaged: {exc}); "
            "open and save it again in Word or LibreOffice."
        ) from exc
    inflated = sum(info.file_size for info in infos)
    packed = max(1, sum(info.compress_size for info in infos))
    if inflated > MAX_INFLATED_BYTES or inflated / packed > MAX_RATIO:
        raise UnparseableDocument(
            f"{filename!r} expands to {inflated} bytes from {packed} (a ZIP "
            "bomb?); it was not opened. Upload the document saved normally."
        )
    if "word/document.xml" not in {info.filename for info in infos}:
        raise UnparseableDocument(
            f"{filename!r} has no word/document.xml, so it is not a Word "
            "document; save it as .docx and upload it again."
        )


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
    check_archive(data, filename)
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
