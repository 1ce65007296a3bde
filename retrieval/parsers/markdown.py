"""Markdown through markdown-it-py: headings, paragraphs, lists, code, tables."""

from __future__ import annotations

from markdown_it import MarkdownIt

from retrieval.parsed import Block, ParsedDocument
from retrieval.parsers.text import clean, decode

_INLINE_TEXT = {"text", "code_inline", "html_inline"}


def _inline_text(token) -> str:
    parts = []
    for child in token.children or []:
        if child.type in _INLINE_TEXT:
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif child.type == "image":
            parts.append(child.content)
    return "".join(parts)


def parse(data: bytes, filename: str) -> ParsedDocument:
    source = clean(decode(data, filename))
    tokens = MarkdownIt("commonmark").enable("table").parse(source)
    blocks: list[Block] = []
    heading_level = 0
    row: list[str] = []
    table: list[str] = []
    list_depth = 0
    in_cell = False

    for token in tokens:
        kind = token.type
        if kind == "heading_open":
            heading_level = int(token.tag[1])
        elif kind == "heading_close":
            heading_level = 0
        elif kind in ("bullet_list_open", "ordered_list_open"):
            list_depth += 1
        elif kind in ("bullet_list_close", "ordered_list_close"):
            list_depth -= 1
        elif kind == "html_block":
            blocks.extend(_html_blocks(token.content))
        elif kind in ("fence", "code_block"):
            blocks.append(Block(text=token.content, kind="code"))
        elif kind in ("th_open", "td_open"):
            in_cell = True
        elif kind in ("th_close", "td_close"):
            in_cell = False
        elif kind == "tr_close":
            table.append(" | ".join(row))
            row = []
        elif kind == "table_close":
            blocks.append(Block(text="\n".join(table), kind="table"))
            table = []
        elif kind == "inline":
            text = _inline_text(token)
            if in_cell:
                row.append(text)
            elif heading_level:
                blocks.append(Block(text=text, kind="heading", level=heading_level))
            else:
                blocks.append(Block(text=text, kind="list" if list_depth else "text"))

    title = next((b.text for b in blocks if b.kind == "heading"), None)
    return ParsedDocument(format="markdown", blocks=blocks, title=title)


def _html_blocks(content: str) -> list[Block]:
    from retrieval.parsers import html

    return html.parse(content.encode(), "inline.html").blocks
