"""The transformers chat backend on the bundled SmolLM2, with real batching.

The model loads once for the whole session; its GGUF conversion is cached in
HEARTH_CACHE_DIR (the Makefile points it at .cache/hearth in the checkout).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from server.errors import ContextLengthExceeded, InvalidRequest, ModelRuntimeError
from server.settings import Settings
from workers.backends import load_backend
from workers.backends.base import ChatInput, GenerationParams
from workers.specs import SMOLLM2, bundled_specs

STORY = [{"role": "user", "content": "Tell me a story about a cat."}]
RECIPE = [
    {"role": "system", "content": "You are a cook who explains things slowly."},
    {"role": "user", "content": "How do I bake bread at home? Give the steps."},
]


class RecordingSink:
    def __init__(self, *, cancel_after: int | None = None) -> None:
        self.deltas: dict[int, list[str]] = {}
        self.ends: dict[int, str] = {}
        self.cancel_after = cancel_after
        self.first_delta = threading.Event()

    def delta(self, index: int, text: str) -> None:
        self.deltas.setdefault(index, []).append(text)
        self.first_delta.set()

    def choice_end(self, index: int, finish_reason: str) -> None:
        assert index not in self.ends, "a choice ended twice"
        self.ends[index] = finish_reason

    def cancelled(self) -> bool:
        count = sum(len(parts) for parts in self.deltas.values())
        return self.cancel_after is not None and count >= self.cancel_after

    def text(self, index: int = 0) -> str:
        return "".join(self.deltas.get(index, []))


@pytest.fixture(scope="session")
def chat():
    cache = (
        os.environ.get("HEARTH_CACHE_DIR")
        or Path(__file__).parents[1] / ".cache/hearth"
    )
    spec = next(s for s in bundled_specs() if s.name == SMOLLM2)
    backend = load_backend(spec, Settings(cache_dir=cache, device="cpu"))
    yield backend
    backend.close()


def run(backend, *, messages=None, prompt=None, **params):
    sink = RecordingSink(cancel_after=params.pop("cancel_after", None))
    usage = backend.generate(
        request_id="test",
        chat=ChatInput(messages=messages, prompt=prompt),
        params=GenerationParams(**params),
        sink=sink,
    )
    return sink, usage


def in_threads(calls):
    """Run ``calls`` (zero-argument functions) at once; return their results."""
    results: list = [None] * len(calls)
    errors: list = []

    def target(i, call):
        try:
            results[i] = call()
        except Exception as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    threads = [
        threading.Thread(target=target, args=(i, c)) for i, c in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    if errors:
        raise errors[0]
    return results


def test_greedy_text_is_the_same_batched_or_alone(chat):
    alone_story, _ = run(chat, messages=STORY, max_tokens=24, temperature=0)
    alone_recipe, _ = run(chat, messages=RECIPE, max_tokens=24, temperature=0)

    # The recipe starts first; the story joins it mid-generation.
    recipe = RecordingSink()
    thread = threading.Thread(
        target=chat.generate,
        kwargs=dict(
            request_id="r",
            chat=ChatInput(messages=RECIPE),
            params=GenerationParams(max_tokens=24, temperature=0),
            sink=recipe,
        ),
    )
    thread.start()
    assert recipe.first_delta.wait(60)
    joined, _ = run(chat, messages=STORY, max_tokens=24, temperature=0)
    thread.join(60)

    assert joined.text() == alone_story.text()
    assert recipe.text() == alone_recipe.text()
    assert chat.engine.peak_rows >= 2


def test_eight_concurrent_requests_each_get_their_max_tokens(chat):
    calls = [
        (lambda k=k: run(chat, messages=STORY, max_tokens=4 + k, temperature=0))
        for k in range(8)
    ]
    results = in_threads(calls)

    for k, (sink, usage) in enumerate(results):
        assert usage.completion_tokens == 4 + k
        assert sink.ends == {0: "length"}
        assert usage.prompt_tokens == results[0][1].prompt_tokens
    assert chat.engine.peak_rows >= 4


def test_stop_string_never_reaches_the_client(chat):
    full, _ = run(chat, messages=STORY, max_tokens=40, temperature=0)
    text = full.text()
    stop = text[25:33]  # several characters, likely spanning tokens
    assert text.find(stop) == 25

    sink, _ = run(chat, messages=STORY, max_tokens=40, temperature=0, stop=(stop,))

    assert sink.text() == text[:25]
    assert sink.ends == {0: "stop"}
    assert all(stop not in part for part in sink.deltas[0])


def test_streaming_pieces_join_to_the_whole_text(chat):
    # The engine streams the same text a non-streaming caller would get.
    sink, _ = run(chat, messages=STORY, max_tokens=30, temperature=0)
    assert len(sink.deltas[0]) > 1
    tokens = chat.tokenizer.encode(sink.text(), add_special_tokens=False)
    assert chat.tokenizer.decode(tokens) == sink.text()


def test_a_seed_reproduces_the_text_alone_and_batched(chat):
    params = dict(messages=STORY, max_tokens=30, temperature=1.0, top_p=0.95, seed=7)
    first, _ = run(chat, **params)
    again, _ = run(chat, **params)
    other, _ = run(chat, **{**params, "seed": 8})

    batched = in_threads(
        [lambda: run(chat, **params), lambda: run(chat, **{**params, "seed": 9})]
    )

    assert first.text() == again.text()
    assert batched[0][0].text() == first.text()
    assert other.text() != first.text()


def test_penalties_change_greedy_output(chat):
    plain, _ = run(chat, messages=STORY, max_tokens=40, temperature=0)
    penalised, _ = run(
        chat, messages=STORY, max_tokens=40, temperature=0, frequency_penalty=2.0
    )
    assert penalised.text() != plain.text()


def test_cancel_stops_within_a_few_tokens_and_frees_the_slot(chat):
    sink, usage = run(
        chat, messages=STORY, max_tokens=400, temperature=0, cancel_after=3
    )

    assert sink.ends == {0: "stop"}
    assert usage.completion_tokens < 20
    for _ in range(200):
        if chat.engine.running_rows == 0:
            break
        threading.Event().wait(0.01)
    assert chat.engine.running_rows == 0


def test_prompt_longer_than_the_context_is_refused(chat):
    with pytest.raises(ContextLengthExceeded, match=r"8192 tokens.*prompt has \d+"):
        run(chat, prompt="hello " * 9000, max_tokens=5)


def test_context_limit_ends_the_output_with_length(chat, monkeypatch):
    short = chat.spec.model_copy(update={"context_length": 60})
    monkeypatch.setattr(chat, "spec", short)

    sink, usage = run(chat, messages=STORY, temperature=0)

    assert usage.prompt_tokens + usage.completion_tokens == 60
    assert sink.ends == {0: "length"}


def test_n_choices_share_one_prompt(chat):
    one, usage_one = run(chat, messages=STORY, max_tokens=10, temperature=1.0, seed=3)
    two, usage_two = run(
        chat, messages=STORY, max_tokens=10, temperature=1.0, seed=3, n=2
    )

    assert set(two.ends) == {0, 1}
    assert two.text(0) == one.text()
    assert two.text(1) and two.text(1) != two.text(0)
    assert usage_two.prompt_tokens == usage_one.prompt_tokens
    assert usage_two.completion_tokens == 20


def test_completion_prompt_runs_without_a_template(chat):
    sink, usage = run(
        chat, prompt="The capital of France is", max_tokens=5, temperature=0
    )
    assert sink.ends[0] in {"length", "stop"}
    assert usage.prompt_tokens == len(chat.tokenizer.encode("The capital of France is"))


def test_unicode_arrives_whole(chat):
    prompt = "Emoji list: 😀 😃 😄 😁 🐱 🐶 🍕 🎉 猫 犬 鳥 魚 😀 😃 😄 😁 🐱"
    sink, _ = run(chat, prompt=prompt, max_tokens=40, temperature=0)
    assert all("\ufffd" not in part for part in sink.deltas.get(0, []))


def test_bad_parameters_are_refused_with_the_value(chat):
    with pytest.raises(InvalidRequest, match="top_p is 0"):
        run(chat, messages=STORY, top_p=0)
    with pytest.raises(InvalidRequest, match="n is 99"):
        run(chat, messages=STORY, n=99)
    with pytest.raises(InvalidRequest, match="'image_url' part"):
        run(chat, messages=[{"role": "user", "content": [{"type": "image_url"}]}])


def test_an_engine_failure_fails_only_its_request(chat, monkeypatch):
    from workers.backends import sampling

    real_pick = sampling.RowSampler.pick

    def pick(self, logits):
        if self.temperature == 0.5:
            raise RuntimeError("boom")
        return real_pick(self, logits)

    monkeypatch.setattr(sampling.RowSampler, "pick", pick)

    def bad():
        return run(chat, messages=STORY, max_tokens=8, temperature=0.5)

    def good():
        return run(chat, messages=STORY, max_tokens=8, temperature=0.7)

    with pytest.raises(ModelRuntimeError, match="RuntimeError: boom"):
        in_threads([good, bad])
    sink, usage = good()
    assert usage.completion_tokens == 8 and sink.ends == {0: "length"}
