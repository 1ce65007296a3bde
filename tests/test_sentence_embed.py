"""The sentence-transformers backend on the bundled all-MiniLM-L6-v2."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from server.errors import InvalidRequest
from server.settings import Settings
from workers.backends import load_backend
from workers.specs import MINILM, bundled_specs

TEXTS = [
    f"sentence number {i} about {topic}"
    for i, topic in enumerate(
        ["cats", "bread", "rivers", "Paris", "stars", "tea", "snow", "violins"]
    )
]


@pytest.fixture(scope="module")
def spec():
    return next(s for s in bundled_specs() if s.name == MINILM)


@pytest.fixture(scope="module")
def embedder(spec):
    backend = load_backend(spec, Settings(device="cpu"))
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def reference(spec):
    model = SentenceTransformer(str(spec.path), device="cpu", local_files_only=True)
    return model.encode(TEXTS, normalize_embeddings=True)


def embed_concurrently(embedder, groups):
    results: list = [None] * len(groups)

    def target(i):
        results[i] = embedder.embed(request_id=f"r{i}", texts=groups[i])

    threads = [threading.Thread(target=target, args=(i,)) for i in range(len(groups))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_concurrent_calls_match_a_direct_encode(embedder, reference):
    groups = [[text] for text in TEXTS]
    results = embed_concurrently(embedder, groups)

    for i, (vectors, tokens) in enumerate(results):
        assert vectors.dtype == np.float32 and vectors.shape == (1, 384)
        np.testing.assert_allclose(vectors[0], reference[i], atol=1e-5)
        assert tokens == len(embedder.model.tokenizer(TEXTS[i])["input_ids"])


def test_concurrent_calls_share_one_encode(embedder, monkeypatch):
    # The first encode waits until every text is either in it or queued, so
    # eight calls must go out in at most two encodes.
    real_encode = embedder.model.encode
    calls: list[int] = []
    release = threading.Event()

    def encode(texts, **kwargs):
        calls.append(len(texts))
        if len(calls) == 1:
            release.wait(30)
        return real_encode(texts, **kwargs)

    monkeypatch.setattr(embedder.model, "encode", encode)

    def watch():
        while not calls or calls[0] + embedder.pending() < len(TEXTS):
            threading.Event().wait(0.005)
        release.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    results = embed_concurrently(embedder, [[t] for t in TEXTS])
    watcher.join(30)

    assert sum(calls) == len(TEXTS)
    assert len(calls) <= 2
    assert all(r[0].shape == (1, 384) for r in results)


def test_a_call_larger_than_a_batch_is_split_and_reassembled(embedder, reference):
    texts = TEXTS * 10  # 80 texts; the batch limit is 64
    vectors, tokens = embedder.embed(request_id="big", texts=texts)

    assert vectors.shape == (80, 384)
    np.testing.assert_allclose(vectors[8:16], reference, atol=1e-5)
    assert tokens > 80


def test_long_input_is_truncated_not_refused(embedder):
    vectors, tokens = embedder.embed(request_id="long", texts=["word " * 2000])
    assert vectors.shape == (1, 384)
    assert tokens == embedder.model.max_seq_length


def test_non_string_input_is_refused(embedder):
    with pytest.raises(InvalidRequest, match=r"input\[1\] is a int"):
        embedder.embed(request_id="bad", texts=["ok", 5])


def test_interactive_texts_go_before_queued_background_ones(embedder, monkeypatch):
    # The first (background) encode is held until a full batch of background
    # texts and then one interactive text are queued behind it: the next
    # encode must take the interactive text, not the older background ones.
    real_encode = embedder.model.encode
    seen: list[list[str]] = []
    release = threading.Event()

    def encode(texts, **kwargs):
        seen.append(list(texts))
        if len(seen) == 1:
            release.wait(30)
        return real_encode(texts, **kwargs)

    monkeypatch.setattr(embedder.model, "encode", encode)
    bulk = [f"ingested passage {i}" for i in range(64)]
    threads = [
        threading.Thread(target=embedder.embed_background,
                         kwargs={"request_id": "b1", "texts": ["first"]}),
        threading.Thread(target=embedder.embed_background,
                         kwargs={"request_id": "b2", "texts": bulk}),
        threading.Thread(target=embedder.embed,
                         kwargs={"request_id": "q", "texts": ["the query"]}),
    ]  # fmt: skip
    threads[0].start()
    while not seen:
        threading.Event().wait(0.005)
    for thread, queued in zip(threads[1:], (64, 65), strict=True):
        thread.start()
        while embedder.pending() < queued:
            threading.Event().wait(0.005)
    release.set()
    for thread in threads:
        thread.join(60)

    assert seen[0] == ["first"]
    assert seen[1] == ["the query"]
    assert sorted(seen[2]) == sorted(bulk)
