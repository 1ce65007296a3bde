"""Rich Text Format (.rtf) through striprtf, then the text parser's cleaning.

striprtf drops control words, font and colour tables, pictures and other
hidden groups, and decodes escaped characters with the file's code page.
What is left is paragraphs, one per line; table rows come out as cells
ended by "|" and are kept as table lines.
"""

from __future__ import annotations

from retrieval.parsed import Block, ParsedDocument
from retrieval.parsers.text import clean
from server.errors import UnparseableDocument


def _block(line: str) -> Block:
    if line.rstrip().endswith("|"):
        cells = [" ".join(cell.split()) for cell in line.rstrip()[:-1].split("|")]
        return Block(text=" | ".join(cells), kind="table")
    return Block(text=line)


def parse(data: bytes, filename: str) -> ParsedDocument:
    from striprtf.striprtf import rtf_to_text

    # RTF is 7-bit text with escapes; raw 8-bit bytes, if any, are most
    # likely the Windows code page that RTF defaults to.
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError:
        source = data.decode("cp1252", errors="replace")
    try:
        plain = rtf_to_text(source, errors="replace")
    except (ValueError, TypeError, LookupError) as exc:
        raise UnparseableDocument(
            f"{filename!r} is not readable RTF ({type(exc).__name__}: "
            f"{str(exc)[:200]}); open and save it again in Word or LibreOffice."
        ) from exc

    lines = clean(plain).split("\n")
    blocks = [_block(line) for line in lines if line.strip(" \t|")]
    return ParsedDocument(format="rtf", blocks=blocks)
