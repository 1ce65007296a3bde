"""What every parser returns: blocks in reading order, with pages."""

from __future__ import annotations

from dataclasses import dataclass, field

SEPARATOR = "\n\n"


@dataclass(kw_only=True)
class Block:
    text: str
    kind: str = "text"  # heading, text, table, list, code
    level: int = 0  # 1-6 for headings
    page: int | None = None  # 1-based, for paged formats


@dataclass(kw_only=True)
class ParsedDocument:
    format: str
    blocks: list[Block]
    title: str | None = None
    pages: int | None = None
    # Filled by ``layout``: where each block starts in ``text``.
    starts: list[int] = field(default_factory=list)
    text: str = ""

    def layout(self) -> ParsedDocument:
        """Join the blocks into one text; chunk offsets point into it."""
        self.blocks = [b for b in self.blocks if b.text.strip()]
        parts, starts, at = [], [], 0
        for block in self.blocks:
            block.text = block.text.strip()
            starts.append(at)
            parts.append(block.text)
            at += len(block.text) + len(SEPARATOR)
        self.text = SEPARATOR.join(parts)
        self.starts = starts
        return self

    def to_dict(self) -> dict:
        return {
            "format": self.format,
            "title": self.title,
            "pages": self.pages,
            "blocks": [vars(b) for b in self.blocks],
        }

    @staticmethod
    def from_dict(data: dict) -> ParsedDocument:
        blocks = [Block(**b) for b in data["blocks"]]
        return ParsedDocument(
            format=data["format"],
            blocks=blocks,
            title=data.get("title"),
            pages=data.get("pages"),
        ).layout()
