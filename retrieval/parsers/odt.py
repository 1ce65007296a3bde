"""OpenDocument text (.odt): content.xml read from the ZIP, in body order.

Headings (text:h) keep their outline level; paragraphs, list items and
tables become blocks like DOCX's. The XML goes through defusedxml, which
refuses entity declarations and external references, so a crafted file
cannot expand entities into gigabytes or make the parser read a local
file. Footnotes, comments and tracked deletions are left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from xml.etree.ElementTree import Element, ParseError

from retrieval.parsed import Block, ParsedDocument
from retrieval.parsers import archive
from retrieval.parsers.text import clean
from server.errors import UnparseableDocument

_TEXT = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
_TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
_OFFICE = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"
_DC = "{http://purl.org/dc/elements/1.1/}"
_WHITESPACE = re.compile(r"[ \t\r\n]+")
_ROW_GROUPS = {f"{_TABLE}table-header-rows", f"{_TABLE}table-rows",
               f"{_TABLE}table-row-group"}  # fmt: skip
# Inside a paragraph: notes and comments would cut a sentence in two.
_SKIP_INLINE = {f"{_TEXT}note", f"{_OFFICE}annotation"}
# Around paragraphs: declarations, deleted text, a generated table of contents.
_SKIP_BLOCKS = {f"{_TEXT}tracked-changes", f"{_TEXT}sequence-decls",
                f"{_TEXT}variable-decls", f"{_TEXT}table-of-content",
                f"{_OFFICE}forms"}  # fmt: skip


def _collapse(text: str | None) -> str:
    # As in HTML, runs of XML whitespace in text are one space; real spaces,
    # tabs and line breaks are elements of their own.
    return _WHITESPACE.sub(" ", text or "")


def _inline(element: Element) -> str:
    parts = [_collapse(element.text)]
    for child in element:
        if child.tag == f"{_TEXT}s":
            parts.append(" ")
        elif child.tag == f"{_TEXT}tab":
            parts.append("\t")
        elif child.tag == f"{_TEXT}line-break":
            parts.append("\n")
        elif child.tag not in _SKIP_INLINE:
            parts.append(_inline(child))
        parts.append(_collapse(child.tail))
    return "".join(parts)


def _rows(table: Element) -> Iterator[Element]:
    for child in table:
        if child.tag == f"{_TABLE}table-row":
            yield child
        elif child.tag in _ROW_GROUPS:
            yield from _rows(child)


def _table_text(table: Element) -> str:
    lines = []
    for row in _rows(table):
        cells = [
            " ".join(" ".join(_inline(part).split()) for part in cell).strip()
            for cell in row
            if cell.tag == f"{_TABLE}table-cell"
        ]
        while cells and not cells[-1]:
            cells.pop()
        if cells:
            lines.append(" | ".join(cells))
    return "\n".join(lines)


def _level(heading: Element) -> int:
    try:
        return min(6, max(1, int(heading.get(f"{_TEXT}outline-level", "1"))))
    except ValueError:
        return 1


def _blocks(element: Element, kind: str = "text") -> Iterator[Block]:
    for child in element:
        tag = child.tag
        if tag == f"{_TEXT}h":
            yield Block(text=_inline(child), kind="heading", level=_level(child))
        elif tag == f"{_TEXT}p":
            yield Block(text=_inline(child), kind=kind)
        elif tag == f"{_TABLE}table":
            yield Block(text=_table_text(child), kind="table")
        elif tag == f"{_TEXT}list":
            yield from _blocks(child, "list")
        elif tag not in _SKIP_BLOCKS:
            yield from _blocks(child, kind)


def _xml(data: bytes, name: str, filename: str) -> Element:
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    try:
        return fromstring(data)
    except DefusedXmlException as exc:
        raise UnparseableDocument(
            f"{filename!r} declares XML entities or external references in "
            f"{name} ({type(exc).__name__}), which are refused; save it again "
            "in LibreOffice."
        ) from exc
    except ParseError as exc:
        raise UnparseableDocument(
            f"{filename!r} has a damaged {name} ({exc}); open and save it again "
            "in LibreOffice."
        ) from exc


def _title(zipped, filename: str) -> str | None:
    if "meta.xml" not in zipped.namelist():
        return None
    meta = _xml(archive.read_member(zipped, "meta.xml", filename, kind="odt"),
                "meta.xml", filename)  # fmt: skip
    title = meta.find(f".//{_DC}title")
    if title is None:
        return None
    return (title.text or "").strip() or None


def parse(data: bytes, filename: str) -> ParsedDocument:
    zipped = archive.open_archive(data, filename, kind="odt", required="content.xml")
    if "META-INF/manifest.xml" in zipped.namelist():
        manifest = archive.read_member(
            zipped, "META-INF/manifest.xml", filename, kind="odt"
        )
        if b"encryption-data" in manifest:
            raise UnparseableDocument(
                f"{filename!r} is encrypted with a password; save it again "
                "without the password in LibreOffice and upload it."
            )

    content = archive.read_member(zipped, "content.xml", filename, kind="odt")
    root = _xml(content, "content.xml", filename)
    body = root.find(f"{_OFFICE}body/{_OFFICE}text")
    if body is None:
        raise UnparseableDocument(
            f"{filename!r} has no text body, so it is not an OpenDocument text; "
            "save it as .odt in LibreOffice Writer and upload it again."
        )
    try:
        blocks = list(_blocks(body))
    except RecursionError as exc:
        raise UnparseableDocument(
            f"{filename!r} nests its XML too deeply to read; open and save it "
            "again in LibreOffice."
        ) from exc
    for block in blocks:
        block.text = clean(block.text)
    return ParsedDocument(format="odt", blocks=blocks, title=_title(zipped, filename))
