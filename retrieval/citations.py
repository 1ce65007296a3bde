"""Numbered citations for an answer: which passage, where, and what it says.

Each source handed to the chat model gets a number; the answer cites it as
``[n]``. A citation names the document, its page or section, and quotes the
sentence of the passage that best matches the question, with that
sentence's character offsets in the document's text.
"""

from __future__ import annotations

import re
from typing import Any

from retrieval.search import Hit

_SENTENCE = re.compile(r"[^.!?。！？\n]+(?:[.!?。！？]+|\n|$)")
_WORD = re.compile(r"\w+", re.UNICODE)
_MARK = re.compile(r"\[(\d{1,3})\]")
# Short words ("the", "of") match everywhere and say nothing of relevance.
_MIN_WORD = 3
_QUOTE_MAX_CHARS = 400


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text) if len(w) >= _MIN_WORD}


def quote(text: str, question: str) -> tuple[int, int]:
    """The span (start, end) within ``text`` of its sentence sharing the most
    words with ``question``; the first sentence when none shares any."""
    wanted = _words(question)
    best, best_span = -1, (0, min(len(text), _QUOTE_MAX_CHARS))
    for match in _SENTENCE.finditer(text):
        sentence = match.group()
        if not sentence.strip():
            continue
        score = len(_words(sentence) & wanted)
        if score > best:
            start = match.start() + len(sentence) - len(sentence.lstrip())
            end = match.start() + len(sentence.rstrip())
            best, best_span = score, (start, min(end, start + _QUOTE_MAX_CHARS))
    return best_span


def citation(index: int, hit: Hit, question: str) -> dict[str, Any]:
    row = hit.row
    start, end = quote(row["text"], question)
    base = row["char_start"]
    return {
        "index": index,
        "chunk_id": row["id"],
        "document_id": row["document_id"],
        "collection_id": row["collection_id"],
        "filename": row["filename"],
        "title": row["title"],
        "section": row["section"],
        "page_start": row["page_start"],
        "page_end": row["page_end"],
        "quote": row["text"][start:end],
        "quote_start": None if base is None else base + start,
        "quote_end": None if base is None else base + end,
        "score": hit.score,
        "similarity": hit.dense,
        "cited": False,
    }


def mark_cited(citations: list[dict[str, Any]], answer: str) -> list[int]:
    """Set ``cited`` on the citations the answer refers to; their numbers."""
    used = {int(n) for n in _MARK.findall(answer)}
    for item in citations:
        item["cited"] = item["index"] in used
    return sorted(used & {item["index"] for item in citations})
