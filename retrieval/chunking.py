"""Blocks to chunks that keep their structure.

A chunk is a run of whole sentences from one section, about ``target``
tokens long, that repeats the last ``overlap`` tokens of the chunk before
it. It starts afresh at a new section (once the current chunk has some
substance), knows the heading path above it, its pages and its character
offsets in the document's text, so a citation can quote it exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from retrieval import tokens
from retrieval.parsed import ParsedDocument

TARGET_TOKENS = 192
OVERLAP_TOKENS = 32
# A new section starts a new chunk only when the current one has at least
# this share of the target; tiny sections ride along with the next one.
_MIN_SHARE = 0.25
_SENTENCE_END = re.compile(
    r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9\u00c0-\u024f])"
    r"|(?<=[。！？])\s*"
    r"|\n+"
)


@dataclass(kw_only=True)
class _Unit:
    start: int
    end: int
    tokens: int
    section: tuple[str, ...]
    page: int | None


@dataclass(kw_only=True)
class Chunk:
    index: int
    text: str
    start: int
    end: int
    tokens: int
    section: str | None
    page_start: int | None
    page_end: int | None

    def context(self, title: str | None) -> str:
        """The title and heading path, said before the text when embedding
        and indexing so that a chunk is found by what it is about."""
        return "\n".join(part for part in (title, self.section) if part)


def _sentences(text: str, base: int) -> list[tuple[int, int]]:
    spans, at = [], 0
    for match in _SENTENCE_END.finditer(text):
        if match.start() > at:
            spans.append((base + at, base + match.start()))
        at = match.end()
    if at < len(text):
        spans.append((base + at, base + len(text)))
    return spans


def _units(doc: ParsedDocument) -> list[_Unit]:
    headings: list[tuple[int, str]] = []
    spans, sections, pages = [], [], []
    for block, start in zip(doc.blocks, doc.starts, strict=True):
        if block.kind == "heading":
            while headings and headings[-1][0] >= block.level:
                headings.pop()
            headings.append((block.level, block.text))
            continue
        section = tuple(text for _, text in headings)
        for span in _sentences(block.text, start):
            spans.append(span)
            sections.append(section)
            pages.append(block.page)

    counts = tokens.count_many([doc.text[s:e] for s, e in spans])
    return [
        _Unit(start=s, end=e, tokens=n, section=sec, page=page)
        for (s, e), n, sec, page in zip(spans, counts, sections, pages, strict=True)
    ]


def _split_long(unit: _Unit, text: str, target: int) -> list[_Unit]:
    """A sentence longer than a chunk (a table, a run-on list) is cut into
    pieces of about ``target`` tokens, at whitespace where there is some."""
    if unit.tokens <= target:
        return [unit]
    length = unit.end - unit.start
    step = max(1, int(length * target / unit.tokens))
    pieces, at = [], unit.start
    while at < unit.end:
        end = min(unit.end, at + step)
        if end < unit.end:
            space = text.rfind(" ", at + step // 2, end)
            end = space if space > at else end
        pieces.append(
            _Unit(
                start=at,
                end=end,
                tokens=round(unit.tokens * (end - at) / length),
                section=unit.section,
                page=unit.page,
            )  # fmt: skip
        )
        at = end
        while at < unit.end and text[at].isspace():
            at += 1
    return pieces


def _make(doc: ParsedDocument, units: list[_Unit], index: int) -> Chunk:
    pages = [u.page for u in units if u.page is not None]
    return Chunk(
        index=index,
        text=doc.text[units[0].start : units[-1].end],
        start=units[0].start,
        end=units[-1].end,
        tokens=sum(u.tokens for u in units),
        section=" > ".join(units[0].section) or None,
        page_start=min(pages) if pages else None,
        page_end=max(pages) if pages else None,
    )


def _tail(units: list[_Unit], overlap: int) -> list[_Unit]:
    kept, total = [], 0
    for unit in reversed(units[1:]):
        if total + unit.tokens > overlap:
            break
        kept.insert(0, unit)
        total += unit.tokens
    return kept


def chunk(
    doc: ParsedDocument,
    *,
    target: int = TARGET_TOKENS,
    overlap: int = OVERLAP_TOKENS,
) -> list[Chunk]:
    units = [
        piece for unit in _units(doc) for piece in _split_long(unit, doc.text, target)
    ]
    chunks: list[Chunk] = []
    current: list[_Unit] = []
    size = 0

    for unit in units:
        new_section = current and unit.section != current[0].section
        if new_section and size >= _MIN_SHARE * target:
            chunks.append(_make(doc, current, len(chunks)))
            current, size = [], 0
        elif current and size + unit.tokens > target:
            chunks.append(_make(doc, current, len(chunks)))
            current = _tail(current, overlap) if not new_section else []
            size = sum(u.tokens for u in current)
        current.append(unit)
        size += unit.tokens

    if current:
        chunks.append(_make(doc, current, len(chunks)))
    return chunks
