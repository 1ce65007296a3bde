"""Words for PostgreSQL full-text search, including CJK.

PostgreSQL's parser splits on spaces and punctuation, so a run of Chinese
or Japanese characters becomes one "word" that no query matches. Each run
is also said as overlapping character bigrams (the usual CJK indexing
unit), on both the document and the query side.
"""

from __future__ import annotations

import re

_CJK = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+"
)


def cjk_bigrams(text: str) -> list[str]:
    grams = []
    for run in _CJK.findall(text):
        if len(run) == 1:
            grams.append(run)
        grams.extend(run[i : i + 2] for i in range(len(run) - 1))
    return grams


def document_text(*parts: str | None) -> str:
    """What goes into ``to_tsvector``, for chunks and queries alike: the
    parts and their CJK bigrams."""
    text = "\n".join(p for p in parts if p)
    grams = cjk_bigrams(text)
    return f"{text}\n{' '.join(grams)}" if grams else text
