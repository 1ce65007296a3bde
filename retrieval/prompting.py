"""The prompt of a cited answer, fitted into the chat model's context window.

The API holds no model, so it cannot count the chat model's own tokens:
it counts with the embedding model's tokenizer (retrieval.tokens) and
keeps a margin, since a BPE vocabulary can split a text into more pieces
than WordPiece does. Sources are added best first until the budget is
spent; the rest are left out rather than cut mid-sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

from retrieval import tokens
from retrieval.search import Hit

ABSTAIN = "The documents in the selected collections do not say."
INSTRUCTIONS = (
    "Answer the question using only the numbered sources below. After each "
    "statement, cite the sources it comes from in square brackets, like [1] "
    "or [1][2]. If the sources do not contain the answer, reply exactly: "
    f'"{ABSTAIN}" Do not use any other knowledge.'
)
# Headroom for the tokenizer mismatch and the chat template's own tokens.
_MARGIN = 1.25
_TEMPLATE_TOKENS = 64


@dataclass(kw_only=True)
class Prompt:
    system: str
    hits: list[Hit]


def _label(number: int, hit: Hit) -> str:
    row = hit.row
    where = [row["title"] or row["filename"]]
    if row["page_start"] is not None:
        pages = row["page_start"], row["page_end"] or row["page_start"]
        where.append(f"page {pages[0]}" if pages[0] == pages[1] else
                     f"pages {pages[0]}-{pages[1]}")  # fmt: skip
    if row["section"]:
        where.append(row["section"].replace("\n", " > "))
    return f"[{number}] ({'; '.join(where)})\n{row['text'].strip()}"


def _cost(text: str) -> int:
    return int(tokens.count(text) * _MARGIN) + 1


def build(
    *, hits: list[Hit], question_tokens: int, context_length: int, max_tokens: int
) -> Prompt:
    """A system message holding as many of ``hits`` as fit beside the
    question and the answer's ``max_tokens``."""
    budget = context_length - max_tokens - _TEMPLATE_TOKENS
    budget -= int(question_tokens * _MARGIN) + _cost(INSTRUCTIONS)
    parts: list[str] = []
    kept: list[Hit] = []
    for hit in hits:
        part = _label(len(kept) + 1, hit)
        cost = _cost(part)
        if cost > budget:
            continue
        budget -= cost
        parts.append(part)
        kept.append(hit)
    system = INSTRUCTIONS + "\n\nSources:\n\n" + "\n\n".join(parts)
    return Prompt(system=system, hits=kept)


def question_tokens(text: str) -> int:
    return tokens.count(text)
