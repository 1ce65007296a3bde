"""The ``transformers`` backend: chat and completions on a causal LM.

Loads a Hugging Face folder, or a GGUF file converted once into a cached
folder (see ``gguf_cache``), and serves every concurrent ``generate()``
through one step-level batching engine per model (see ``batch_engine``).

``generate()`` runs on the caller's thread: it tokenizes, checks the prompt
fits, hands the job to the engine, and relays the engine's events to the
sink. Sink calls (which may write to Redis) and the cancel check therefore
cost the caller's thread, never the engine's decode loop.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING, Any

import structlog

from server.errors import ConfigError, ContextLengthExceeded, InvalidRequest
from workers.backends.base import (
    ChatInput,
    GenerationParams,
    Sink,
    Usage,
    register_backend,
)

if TYPE_CHECKING:
    from server.settings import Settings
    from workers.backends.batch_engine import Job
    from workers.specs import ModelSpec

log = structlog.get_logger(__name__)

# How long the caller waits for engine events before checking for a cancel.
_POLL_S = 0.02


@register_backend("transformers")
def build_transformers_backend(spec: ModelSpec, settings: Settings) -> TransformersChat:
    if spec.kind != "chat":
        raise ConfigError(
            f"model {spec.name!r} is kind {spec.kind!r}; the transformers backend "
            "serves chat models, use backend sentence-transformers for embeddings"
        )
    return TransformersChat(spec=spec, settings=settings)


class TransformersChat:
    """A chat model on transformers, batched across concurrent callers."""

    def __init__(self, *, spec: ModelSpec, settings: Settings) -> None:
        from workers.backends.batch_engine import BatchEngine
        from workers.device import resolve_placement

        self.spec = spec
        started = time.perf_counter()
        placement = resolve_placement(
            model=spec.name,
            device=spec.device,
            dtype=spec.dtype,
            quantization=spec.quantization,
            default_device=settings.device,
        )
        self.model, self.tokenizer = _load(spec, settings, placement.model_kwargs())
        if not placement.on_cuda:
            self.model.to(placement.device)

        # The Rust tokenizer may refuse concurrent calls ("Already borrowed").
        self._encode_lock = threading.Lock()
        self._vocab = _vocab_size(self.model)
        self.engine = BatchEngine(
            model=self.model,
            name=spec.name,
            decode=self._decode,
            eos_ids=_eos_ids(self.model, self.tokenizer),
            pad_id=_pad_id(self.tokenizer),
            max_batch_size=spec.max_batch_size,
        )
        self._warm_up()
        log.info(
            "chat model loaded",
            model=spec.name,
            device=placement.device,
            dtype=str(placement.dtype).removeprefix("torch."),
            load_s=round(time.perf_counter() - started, 2),
        )

    def generate(
        self,
        *,
        request_id: str,
        chat: ChatInput,
        params: GenerationParams,
        sink: Sink,
    ) -> Usage:
        """Generate ``params.n`` choices to ``sink``; blocks until all end.

        ``max_tokens`` is capped by the model's ``max_tokens`` limit and by
        the room left in its context; either cut ends with ``length``. A
        cancelled request ends its choices with ``stop``.
        """
        _check_params(params, max_batch=self.spec.max_batch_size)
        prompt = self._prompt_ids(chat)
        job = self._job(request_id=request_id, prompt=prompt, params=params)
        self.engine.submit(job)
        try:
            _relay(job, sink)
        finally:
            # The caller left early (an error or a failing sink): free the rows.
            job.cancel()
        return Usage(prompt_tokens=len(prompt), completion_tokens=job.completion_tokens)

    def close(self) -> None:
        self.engine.close()

    # -- helpers -----------------------------------------------------------

    def _job(
        self, *, request_id: str, prompt: list[int], params: GenerationParams
    ) -> Job:
        from workers.backends.batch_engine import Choice, Job
        from workers.backends.sampling import RowSampler, choice_seed
        from workers.backends.text_stream import IncrementalDecoder, StopScanner

        room = self.spec.context_length - len(prompt)
        if room < 1:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self.spec.context_length} "
                f"tokens, but the prompt has {len(prompt)} tokens, which leaves no "
                "room for a completion. Shorten the messages or the prompt.",
                param="messages",
            )
        wanted = params.max_tokens if params.max_tokens is not None else room
        max_new = min(wanted, self.spec.max_tokens, room)

        choices = [
            Choice(
                index=index,
                max_new=max_new,
                sampler=RowSampler(
                    temperature=params.temperature,
                    top_p=params.top_p,
                    presence_penalty=params.presence_penalty,
                    frequency_penalty=params.frequency_penalty,
                    seed=choice_seed(params.seed, index),
                    vocab_size=self._vocab,
                ),
                decoder=IncrementalDecoder(self._decode),
                stops=StopScanner(params.stop),
            )
            for index in range(params.n)
        ]
        return Job(request_id=request_id, prompt_ids=prompt, choices=choices)

    def _prompt_ids(self, chat: ChatInput) -> list[int]:
        if chat.messages is not None:
            text = self._render(chat)
            special = False  # the template already wrote the special tokens
        elif chat.prompt is not None:
            text, special = chat.prompt, True
        else:
            raise InvalidRequest("send either messages or a prompt", param="messages")

        with self._encode_lock:
            ids = self.tokenizer.encode(text, add_special_tokens=special)
        if not ids:
            if self.tokenizer.bos_token_id is None:
                raise InvalidRequest(
                    "the prompt is empty; send some text", param="prompt"
                )
            ids = [self.tokenizer.bos_token_id]
        return ids

    def _render(self, chat: ChatInput) -> str:
        if not getattr(self.tokenizer, "chat_template", None):
            raise InvalidRequest(
                f"model {self.spec.name!r} has no chat template; send a prompt to "
                "/v1/completions instead",
                param="messages",
            )
        messages = [_plain_message(m, number) for number, m in enumerate(chat.messages)]
        kwargs = chat.extra.get("chat_template_kwargs") or {}
        try:
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True, **kwargs
            )
        except Exception as exc:  # jinja raises its own errors for bad turns
            raise InvalidRequest(
                f"the messages do not fit model {self.spec.name!r}'s chat "
                f"template: {exc}",
                param="messages",
            ) from exc

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _warm_up(self) -> None:
        # The first forward passes are several times slower (kernel setup);
        # pay for them at load, not on a user's first request.
        job = self._job(
            request_id="warm-up",
            prompt=self._prompt_ids(ChatInput(prompt="Hello")),
            params=GenerationParams(max_tokens=4, temperature=0.0, n=2),
        )
        self.engine.submit(job)
        _relay(job, _NullSink())


def _relay(job: Job, sink: Sink) -> None:
    """Pass the engine's events to ``sink`` until every choice has ended."""
    open_choices = len(job.choices)
    while open_choices:
        try:
            events = [job.events.get(timeout=_POLL_S)]
        except queue.Empty:
            events = []
        while True:
            try:
                events.append(job.events.get_nowait())
            except queue.Empty:
                break

        for event in _coalesce(events):
            kind = event[0]
            if kind == "delta":
                sink.delta(event[1], event[2])
            elif kind == "end":
                sink.choice_end(event[1], event[2])
                open_choices -= 1
            else:
                raise event[1]

        if not job.cancelled and sink.cancelled():
            job.cancel()


def _coalesce(events: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    # Neighbouring deltas of one choice become one write to the sink.
    out: list[tuple[Any, ...]] = []
    for event in events:
        if (
            event[0] == "delta"
            and out
            and out[-1][0] == "delta"
            and out[-1][1] == event[1]
        ):
            out[-1] = ("delta", event[1], out[-1][2] + event[2])
        else:
            out.append(event)
    return out


def _check_params(params: GenerationParams, *, max_batch: int) -> None:
    if params.n < 1 or params.n > max_batch:
        raise InvalidRequest(
            f"n is {params.n}; this model serves 1 to {max_batch} choices per request",
            param="n",
        )
    if params.max_tokens is not None and params.max_tokens < 1:
        raise InvalidRequest(
            f"max_tokens is {params.max_tokens}; it must be at least 1",
            param="max_tokens",
        )
    if params.temperature < 0:
        raise InvalidRequest(
            f"temperature is {params.temperature}; use 0 (greedy) up to 2",
            param="temperature",
        )
    if not 0 < params.top_p <= 1:
        raise InvalidRequest(
            f"top_p is {params.top_p}; it must be above 0 and at most 1",
            param="top_p",
        )


def _plain_message(message: dict[str, Any], number: int) -> dict[str, Any]:
    """A message whose content is a string, as chat templates expect."""
    content = message.get("content")
    if content is None or isinstance(content, str):
        return {**message, "content": content or ""}
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = (
                    part.get("type") if isinstance(part, dict) else type(part).__name__
                )
                raise InvalidRequest(
                    f"messages[{number}] has a {kind!r} part; this model reads "
                    "text parts only",
                    param=f"messages[{number}].content",
                )
            texts.append(str(part.get("text", "")))
        return {**message, "content": "".join(texts)}
    raise InvalidRequest(
        f"messages[{number}].content is a {type(content).__name__}; send a "
        "string or a list of text parts",
        param=f"messages[{number}].content",
    )


def _load(
    spec: ModelSpec, settings: Settings, kwargs: dict[str, Any]
) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workers.backends.gguf_cache import converted_folder

    assert spec.path is not None  # the spec validator guarantees it
    folder = spec.path
    if spec.gguf_file:
        folder = converted_folder(
            name=spec.name,
            gguf=spec.path / spec.gguf_file,
            cache_dir=settings.model_cache_dir,
        )
    if not folder.is_dir():
        raise ConfigError(
            f"model {spec.name!r}: folder {str(folder)!r} does not exist; check "
            "its path"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            folder, local_files_only=True, **kwargs
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(
            f"model {spec.name!r} could not be loaded from {str(folder)!r}: {exc}"
        ) from exc
    return model.eval(), tokenizer


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    found: list[int] = []
    configured = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        found.append(configured)
    elif configured:
        found.extend(int(i) for i in configured)
    if tokenizer.eos_token_id is not None:
        found.append(tokenizer.eos_token_id)
    return sorted(set(found))


def _pad_id(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def _vocab_size(model: Any) -> int:
    head = model.get_output_embeddings()
    return int(getattr(head, "out_features", None) or model.config.vocab_size)


class _NullSink:
    def delta(self, index: int, text: str) -> None:
        pass

    def choice_end(self, index: int, finish_reason: str) -> None:
        pass

    def cancelled(self) -> bool:
        return False
