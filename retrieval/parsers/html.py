"""HTML through BeautifulSoup on lxml: visible text in blocks, headings kept.

Scripts, styles and other invisible parts are dropped. Encoding comes from
the BOM, the meta charset or detection (BeautifulSoup's UnicodeDammit).
"""

from __future__ import annotations

import warnings

from bs4 import BeautifulSoup, Comment, NavigableString, Tag
from bs4.element import Declaration, Doctype, ProcessingInstruction

from retrieval.parsed import Block, ParsedDocument
from retrieval.parsers.text import clean

_SKIP = {"script", "style", "noscript", "template", "head", "svg", "iframe",
         "object", "canvas", "button", "select", "input", "textarea"}  # fmt: skip
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_BLOCKS = {"p", "div", "section", "article", "main", "header", "footer", "nav",
           "aside", "li", "ul", "ol", "dl", "dt", "dd", "table", "tr", "thead",
           "tbody", "tfoot", "caption", "blockquote", "pre", "figure",
           "figcaption", "form", "fieldset", "address", "details", "summary",
           "hr", "body", "center"}  # fmt: skip
_NOT_TEXT = (Comment, Declaration, Doctype, ProcessingInstruction)


class _Walker:
    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.buffer: list[str] = []
        self.kind = "text"

    def flush(self) -> None:
        text = " ".join("".join(self.buffer).split())
        if text:
            self.blocks.append(Block(text=text, kind=self.kind))
        self.buffer = []
        self.kind = "text"

    def walk(self, node: Tag) -> None:
        for child in node.children:
            if isinstance(child, _NOT_TEXT):
                continue
            if isinstance(child, NavigableString):
                self.buffer.append(str(child))
                continue
            if not isinstance(child, Tag) or child.name in _SKIP:
                continue
            self._tag(child)

    def _tag(self, tag: Tag) -> None:
        name = tag.name
        if name in _HEADINGS:
            self.flush()
            text = " ".join(tag.get_text(" ").split())
            if text:
                self.blocks.append(Block(text=text, kind="heading", level=int(name[1])))
        elif name == "br":
            self.buffer.append(" ")
        elif name in ("td", "th"):
            self.buffer.append(" ")
            self.walk(tag)
            self.buffer.append(" |")
        elif name in _BLOCKS:
            self.flush()
            if name in ("li", "tr", "pre"):
                self.kind = {"li": "list", "tr": "table", "pre": "code"}[name]
            self.walk(tag)
            self.flush()
        else:
            self.walk(tag)


def parse(data: bytes | str, filename: str) -> ParsedDocument:
    """``data`` is bytes from a file, or text already decoded (an e-mail's
    HTML part), which then cannot be misread by a stale meta charset."""
    with warnings.catch_warnings():
        # XHTML and fragments warn that they look like XML or a URL; the HTML
        # parser still reads them correctly.
        warnings.simplefilter("ignore")
        soup = BeautifulSoup(data, "lxml")
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    walker = _Walker()
    walker.walk(soup)
    walker.flush()
    for block in walker.blocks:
        block.text = clean(block.text.removesuffix(" |"))
    return ParsedDocument(format="html", blocks=walker.blocks, title=title or None)
