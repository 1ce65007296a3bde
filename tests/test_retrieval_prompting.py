"""Quotes, citation marks and the prompt's token budget, without a stack."""

from __future__ import annotations

from retrieval import citations, prompting
from retrieval.search import Hit

_TEXT = (
    "Kettles are stored upside down. The blue kettle is descaled with citric "
    "acid every March. Vinegar leaves a smell."
)


def _hit(number: int, text: str = _TEXT, page: int | None = 3) -> Hit:
    row = {
        "id": number, "document_id": f"doc_{number}", "collection_id": "col_1",
        "filename": "kettles.pdf", "title": "Kettles", "section": "Care",
        "page_start": page, "page_end": page, "char_start": 100,
        "char_end": 100 + len(text), "text": text,
    }  # fmt: skip
    return Hit(row=row, score=0.5, dense=0.6)


def test_quote_is_the_sentence_sharing_most_words_with_the_question():
    start, end = citations.quote(_TEXT, "How is the blue kettle descaled?")

    assert _TEXT[start:end] == (
        "The blue kettle is descaled with citric acid every March."
    )


def test_citation_offsets_point_into_the_document_text():
    item = citations.citation(1, _hit(1), "citric acid")

    assert item["quote"].startswith("The blue kettle")
    assert item["quote_start"] == 100 + _TEXT.index("The blue kettle")
    assert item["quote_end"] - item["quote_start"] == len(item["quote"])
    assert (item["page_start"], item["section"]) == (3, "Care")


def test_mark_cited_keeps_only_numbers_that_exist():
    items = [citations.citation(n, _hit(n), "kettle") for n in (1, 2)]

    assert citations.mark_cited(items, "Citric acid [2], see also [7].") == [2]
    assert [item["cited"] for item in items] == [False, True]


def test_prompt_keeps_the_best_sources_that_fit_the_window():
    hits = [_hit(n, _TEXT * 20) for n in range(1, 6)]

    roomy = prompting.build(
        hits=hits, question_tokens=10, context_length=8192, max_tokens=256
    )
    tight = prompting.build(
        hits=hits, question_tokens=10, context_length=1200, max_tokens=256
    )

    assert [h.row["id"] for h in roomy.hits] == [1, 2, 3, 4, 5]
    assert [h.row["id"] for h in tight.hits] == [1]
    assert "[1] (Kettles; page 3; Care)" in tight.system
    assert "\n[2] (" not in tight.system
