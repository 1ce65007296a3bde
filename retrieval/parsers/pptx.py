"""PowerPoint (.pptx) through python-pptx: slides in order, slide = page.

Each slide opens with its title as a heading ("Slide N" when it has none,
so its text is not filed under the previous slide's title), then its text
boxes, tables and chart titles in the slide's order, then the speaker
notes. Every block carries the slide number as its page, so a citation
says which slide. Footers, dates and slide numbers repeat on every slide
and are left out.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

from retrieval.parsed import Block, ParsedDocument
from retrieval.parsers import archive
from retrieval.parsers.text import clean
from server.errors import UnparseableDocument


def _text(text: str) -> str:
    # python-pptx says a line break inside a paragraph as a vertical tab.
    return clean(text.replace("\v", "\n"))


def _table_text(table) -> str:
    rows = []
    for row in table.rows:
        cells = [" ".join(c.text.split()) for c in row.cells if not c.is_spanned]
        rows.append(" | ".join(cells))
    return "\n".join(rows)


def _boilerplate(shape) -> bool:
    from pptx.enum.shapes import PP_PLACEHOLDER

    if not shape.is_placeholder:
        return False
    kind = shape.placeholder_format.type
    return kind in (PP_PLACEHOLDER.FOOTER, PP_PLACEHOLDER.DATE,
                    PP_PLACEHOLDER.SLIDE_NUMBER)  # fmt: skip


def _shape_blocks(shape, page: int) -> Iterator[Block]:
    from pptx.shapes.group import GroupShape

    if isinstance(shape, GroupShape):
        for child in shape.shapes:
            yield from _shape_blocks(child, page)
    elif shape.has_table:
        yield Block(text=_table_text(shape.table), kind="table", page=page)
    elif shape.has_chart and shape.chart.has_title:
        title = shape.chart.chart_title.text_frame.text
        yield Block(text=_text(title), page=page)
    elif shape.has_text_frame and not _boilerplate(shape):
        yield Block(text=_text(shape.text_frame.text), page=page)


def _slide_blocks(slide, page: int) -> list[Block]:
    title = slide.shapes.title
    blocks = [
        block
        for shape in slide.shapes
        if title is None or shape.shape_id != title.shape_id
        for block in _shape_blocks(shape, page)
    ]
    if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
        notes = _text(slide.notes_slide.notes_text_frame.text)
        if notes.strip():
            blocks.append(Block(text=f"Notes: {notes}", page=page))

    heading = _text(title.text_frame.text) if title is not None else ""
    if not heading.strip() and any(block.text.strip() for block in blocks):
        heading = f"Slide {page}"
    if heading.strip():
        blocks.insert(0, Block(text=heading, kind="heading", level=1, page=page))
    return blocks


def parse(data: bytes, filename: str) -> ParsedDocument:
    archive.open_archive(data, filename, kind="pptx")
    import pptx

    try:
        presentation = pptx.Presentation(io.BytesIO(data))
        slides = list(presentation.slides)
        blocks = [
            block
            for page, slide in enumerate(slides, start=1)
            for block in _slide_blocks(slide, page)
        ]
        title = presentation.core_properties.title or None
    except Exception as exc:  # python-pptx raises KeyError, ValueError, lxml errors
        raise UnparseableDocument(
            f"{filename!r} could not be read as PPTX ({type(exc).__name__}); "
            "open and save it again in PowerPoint or LibreOffice."
        ) from exc
    return ParsedDocument(format="pptx", blocks=blocks, title=title, pages=len(slides))
