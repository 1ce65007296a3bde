"""EPUB: the chapters in reading order, each through the HTML parser.

An EPUB is a ZIP of XHTML pages. META-INF/container.xml names the package
file, whose spine lists the chapters in reading order; each chapter goes
through ``html.parse``, so scripts are dropped and headings kept. The
package XML goes through defusedxml (no entities, no external files). The
table of contents page repeats the headings and is left out; a book whose
chapters are encrypted (DRM) is refused.
"""

from __future__ import annotations

import posixpath
import zipfile
from urllib.parse import unquote
from xml.etree.ElementTree import Element, ParseError

from retrieval.parsed import Block, ParsedDocument
from retrieval.parsers import archive, html
from server.errors import UnparseableDocument

_CONTAINER = "{urn:oasis:names:tc:opendocument:xmlns:container}"
_OPF = "{http://www.idpf.org/2007/opf}"
_DC = "{http://purl.org/dc/elements/1.1/}"
_XMLENC = "{http://www.w3.org/2001/04/xmlenc#}"
_CHAPTER_TYPES = {"application/xhtml+xml", "text/html"}


def _xml(zipped: zipfile.ZipFile, name: str, filename: str) -> Element:
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    data = archive.read_member(zipped, name, filename, kind="epub")
    try:
        return fromstring(data)
    except (DefusedXmlException, ParseError) as exc:
        raise UnparseableDocument(
            f"{filename!r} has an unreadable {name} ({type(exc).__name__}: "
            f"{exc}); convert the book again with Calibre and upload it."
        ) from exc


def _package(zipped: zipfile.ZipFile, filename: str) -> tuple[str, Element]:
    container = _xml(zipped, "META-INF/container.xml", filename)
    rootfile = container.find(f".//{_CONTAINER}rootfile")
    path = rootfile.get("full-path") if rootfile is not None else None
    if not path:
        raise UnparseableDocument(
            f"{filename!r} does not name its package file in "
            "META-INF/container.xml; convert the book again with Calibre."
        )
    return path, _xml(zipped, path, filename)


def _chapters(package: Element, package_path: str) -> list[str]:
    """Paths in the ZIP of the spine's XHTML pages, in reading order."""
    base = posixpath.dirname(package_path)
    pages = {}
    for item in package.iterfind(f"{_OPF}manifest/{_OPF}item"):
        properties = (item.get("properties") or "").split()
        if item.get("media-type") in _CHAPTER_TYPES and "nav" not in properties:
            href = unquote((item.get("href") or "").split("#")[0])
            pages[item.get("id")] = posixpath.normpath(posixpath.join(base, href))
    spine = [
        pages[ref.get("idref")]
        for ref in package.iterfind(f"{_OPF}spine/{_OPF}itemref")
        if ref.get("idref") in pages
    ]
    return list(dict.fromkeys(spine))


def _refuse_drm(zipped: zipfile.ZipFile, chapters: list[str], filename: str) -> None:
    # Fonts may be obfuscated under the same file; only encrypted text counts.
    if "META-INF/encryption.xml" not in zipped.namelist():
        return
    encryption = _xml(zipped, "META-INF/encryption.xml", filename)
    encrypted = {
        unquote(ref.get("URI") or "")
        for ref in encryption.iter(f"{_XMLENC}CipherReference")
    }
    if encrypted & set(chapters):
        raise UnparseableDocument(
            f"{filename!r} is DRM-protected (its chapters are encrypted); "
            "upload a DRM-free copy of the book."
        )


def parse(data: bytes, filename: str) -> ParsedDocument:
    zipped = archive.open_archive(
        data, filename, kind="epub", required="META-INF/container.xml"
    )
    package_path, package = _package(zipped, filename)
    chapters = _chapters(package, package_path)
    if not chapters:
        raise UnparseableDocument(
            f"{filename!r} lists no XHTML chapters in its spine; convert the "
            "book again with Calibre and upload it."
        )
    _refuse_drm(zipped, chapters, filename)

    blocks: list[Block] = []
    for chapter in chapters:
        page = archive.read_member(zipped, chapter, filename, kind="epub")
        blocks.extend(html.parse(page, chapter).blocks)
    title = package.findtext(f"{_OPF}metadata/{_DC}title") or ""
    return ParsedDocument(format="epub", blocks=blocks, title=title.strip() or None)
