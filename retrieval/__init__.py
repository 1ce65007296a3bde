"""Documents and answers: parsing, chunking, indexing, search, citations.

``parsers`` turn bytes into blocks (headings, paragraphs, pages),
``chunking`` cuts blocks into overlapping chunks that keep their section
and page, ``store`` owns the collections, documents and chunks tables,
``pipeline`` is the ingestion job a worker runs, ``search`` fuses full-text
and vector rankings, and ``answers`` turns retrieved chunks into a cited
answer. ``vector_stores`` puts OpenAI's vector stores on collections
(``vector_store_sql`` their tables, ``attribute_filters`` their filters).
"""
