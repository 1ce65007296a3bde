"""Plain text in any common encoding, detected; binary is refused."""

from __future__ import annotations

import codecs
import re

from retrieval.parsed import Block, ParsedDocument
from server.errors import UnparseableDocument

# Control bytes other than tab, newline, form feed and carriage return:
# more than a few percent of them means the file is not text.
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0e-\x1f]")
_BINARY_RATIO = 0.05
_PARAGRAPH = re.compile(r"\n\s*\n")


def decode(data: bytes, filename: str) -> str:
    """Bytes to str: BOM, then UTF-8, then charset detection."""
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            return data.decode(encoding, errors="replace")

    sample = data[:65536]
    if len(_CONTROL.findall(sample)) > _BINARY_RATIO * len(sample):
        raise UnparseableDocument(
            f"{filename!r} looks binary, not text (many control bytes); upload "
            "a PDF, DOCX, HTML, Markdown or text file."
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass

    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise UnparseableDocument(
            f"{filename!r}: cannot tell which text encoding it uses; save it as "
            "UTF-8 and upload it again."
        )
    # Short Western text is often guessed as a Baltic or Central European
    # code page; when cp1252 reads it too, it is by far the likelier one.
    if best.encoding.startswith(("cp125", "iso8859", "latin")):
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError:
            pass
    return str(best)


def clean(text: str) -> str:
    """PostgreSQL text cannot hold NUL; stray control characters help no one."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return re.sub(r"[\x00-\x08\x0b\x0e-\x1f\x7f]", "", text)


def parse(data: bytes, filename: str) -> ParsedDocument:
    text = clean(decode(data, filename))
    blocks = [Block(text=p) for p in _PARAGRAPH.split(text) if p.strip()]
    return ParsedDocument(format="text", blocks=blocks)
