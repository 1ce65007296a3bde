"""Step-level (continuous) batching for one causal language model.

One engine thread owns the model. Callers hand it jobs (a tokenized prompt
and one ``Choice`` per requested completion) and read their results from
the job's event queue. Each turn of the loop:

1. admits waiting jobs while batch slots are free: their prompts are
   prefilled together (left-padded), each prompt once however many choices
   it asks for, and their key/value cache is merged into the running batch;
2. runs one decode step for every running row;
3. samples each row with its own settings, turns tokens into text deltas,
   and retires rows that finished, failed or were cancelled.

A job arriving while others generate therefore joins at the next step,
instead of waiting for the batch to drain.

Rows of the batch have different lengths. The cache is kept left-padded to
a common length: the attention mask hides the padding and every row carries
its own position ids, so a row computes what it would compute alone.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from server.errors import HearthError, ModelRuntimeError
from workers.backends.sampling import RowSampler
from workers.backends.text_stream import IncrementalDecoder, StopScanner

log = structlog.get_logger(__name__)

FINISH_STOP = "stop"
FINISH_LENGTH = "length"

# Padded prompt tokens one admission prefills at once. A burst of long
# prompts is admitted over several steps, so running streams keep moving.
PREFILL_TOKEN_BUDGET = 4096


@dataclass(eq=False, kw_only=True)
class Choice:
    """One completion being generated: a row of the batch while it runs."""

    index: int
    max_new: int
    sampler: RowSampler
    decoder: IncrementalDecoder
    stops: StopScanner
    generated: int = 0
    done: bool = False


@dataclass(eq=False, kw_only=True)
class Job:
    """One generate() call as the engine sees it.

    The engine writes ``("delta", index, text)``, ``("end", index, reason)``
    and ``("error", exc)`` to ``events``; the caller sets ``cancelled``.
    """

    request_id: str
    prompt_ids: list[int]
    choices: list[Choice]
    events: queue.SimpleQueue[tuple[Any, ...]] = field(
        default_factory=queue.SimpleQueue
    )
    cancelled: bool = False
    failed: bool = False
    completion_tokens: int = 0

    def cancel(self) -> None:
        self.cancelled = True


class BatchEngine:
    """Runs generation for many jobs on one model, one decode step at a time."""

    def __init__(
        self,
        *,
        model: Any,
        name: str,
        decode: Any,
        eos_ids: Sequence[int],
        pad_id: int,
        max_batch_size: int,
    ) -> None:
        self._model = model
        self._name = name
        self._decode = decode
        self._eos = frozenset(eos_ids)
        self._pad = pad_id
        self._max_batch = max_batch_size
        self._device = next(model.parameters()).device

        self._cond = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._closed = False

        # The running batch; touched only by the engine thread.
        self._rows: list[tuple[Job, Choice]] = []
        self._cache: Any = None
        self._mask: torch.Tensor | None = None
        self._positions: torch.Tensor | None = None
        self._last: torch.Tensor | None = None
        self._can_merge = True
        # Counters for tests and the benchmark: decode steps, largest batch.
        self.steps = 0
        self.peak_rows = 0

        self._thread = threading.Thread(
            target=self._run, name=f"engine-{name}", daemon=True
        )
        self._thread.start()

    # -- called from any thread -------------------------------------------

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._closed:
                raise ModelRuntimeError(
                    f"model {self._name!r} is shutting down; retry the request"
                )
            self._waiting.append(job)
            self._cond.notify()

    def pending(self) -> int:
        """Jobs waiting for a batch slot."""
        with self._cond:
            return len(self._waiting)

    @property
    def running_rows(self) -> int:
        return len(self._rows)

    def close(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)

    # -- the engine thread ---------------------------------------------------

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                admitted = self._next_admissions()
                if admitted is None:
                    break
                try:
                    if admitted:
                        self._admit(admitted)
                    if self._rows:
                        self._step()
                except Exception as exc:  # keep serving others
                    log.exception("engine step failed", model=self._name)
                    self._fail_running(exc)
        self._shutdown()

    def _next_admissions(self) -> list[Job] | None:
        """Jobs to admit now; waits while idle; None once closed."""
        with self._cond:
            while not self._closed and not self._waiting and not self._rows:
                self._cond.wait()
            if self._closed:
                return None

            admitted: list[Job] = []
            free = self._max_batch - len(self._rows)
            if self._rows and not self._can_merge:
                free = 0
            longest = 0
            while self._waiting:
                job = self._waiting[0]
                if job.cancelled:
                    self._waiting.popleft()
                    self._end_all(job, FINISH_STOP)
                    continue
                width = max(longest, len(job.prompt_ids))
                fits_budget = (
                    not admitted or width * (len(admitted) + 1) <= PREFILL_TOKEN_BUDGET
                )
                if len(job.choices) > free or not fits_budget:
                    break
                self._waiting.popleft()
                admitted.append(job)
                free -= len(job.choices)
                longest = width
            return admitted

    def _admit(self, jobs: list[Job]) -> None:
        try:
            cache, mask, logits = self._prefill([job.prompt_ids for job in jobs])
            repeats = [len(job.choices) for job in jobs]
            if any(r > 1 for r in repeats):
                # One prefill per prompt; each extra choice copies its cache.
                index = torch.repeat_interleave(
                    torch.arange(len(jobs), device=self._device),
                    torch.tensor(repeats, device=self._device),
                )
                _select_rows(cache, index)
                mask = mask.index_select(0, index)
                logits = logits.index_select(0, index)
        except Exception as exc:  # only these jobs fail
            log.exception("prefill failed", model=self._name)
            for job in jobs:
                self._fail(job, exc)
            return

        rows = [(job, choice) for job in jobs for choice in job.choices]
        positions = torch.tensor(
            [len(job.prompt_ids) for job, _ in rows], device=self._device
        )
        first = len(self._rows)
        self._merge(cache, mask, positions, rows)
        self.peak_rows = max(self.peak_rows, len(self._rows))
        log.debug(
            "batch admission",
            model=self._name,
            requests=len(jobs),
            rows=len(rows),
            batch=len(self._rows),
            prefill_tokens=int(mask.shape[1]) * len(jobs),
        )
        self._consume(first, logits)
        self._retire()

    def _prefill(
        self, prompts: list[list[int]]
    ) -> tuple[Any, torch.Tensor, torch.Tensor]:
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self._pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt) :] = torch.tensor(prompt)
            mask[row, width - len(prompt) :] = 1
        ids, mask = ids.to(self._device), mask.to(self._device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)

        cache = DynamicCache(config=self._model.config)
        out = self._model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        if self._can_merge and not _plain_layers(cache):
            # Sliding-window layers keep offsets that left-padding would break;
            # such a model still batches the choices of one request.
            self._can_merge = False
            log.warning(
                "model cache cannot be merged; requests run one at a time",
                model=self._name,
                cache=type(cache.layers[0]).__name__,
            )
        return cache, mask, out.logits[:, -1, :].float()

    def _merge(
        self,
        cache: Any,
        mask: torch.Tensor,
        positions: torch.Tensor,
        rows: list[tuple[Job, Choice]],
    ) -> None:
        last = torch.full(
            (len(rows),), self._pad, dtype=torch.long, device=self._device
        )
        if not self._rows:
            self._cache, self._mask = cache, mask
            self._positions, self._last = positions, last
            self._rows = rows
            return

        width = max(self._mask.shape[1], mask.shape[1])
        for old, new in zip(self._cache.layers, cache.layers, strict=True):
            old.keys = torch.cat(
                [_left_pad(old.keys, width), _left_pad(new.keys, width)]
            )
            old.values = torch.cat(
                [_left_pad(old.values, width), _left_pad(new.values, width)]
            )
        self._mask = torch.cat(
            [
                F.pad(self._mask, (width - self._mask.shape[1], 0)),
                F.pad(mask, (width - mask.shape[1], 0)),
            ]
        )
        self._positions = torch.cat([self._positions, positions])
        self._last = torch.cat([self._last, last])
        self._rows = self._rows + rows

    def _step(self) -> None:
        ones = torch.ones((len(self._rows), 1), dtype=torch.long, device=self._device)
        mask = torch.cat([self._mask, ones], dim=1)
        out = self._model(
            input_ids=self._last[:, None],
            attention_mask=mask,
            position_ids=self._positions[:, None],
            cache=self._cache,
            use_cache=True,
        )
        self._mask = mask
        self._positions = self._positions + 1
        self.steps += 1
        self._consume(0, out.logits[:, -1, :].float())
        self._retire()

    def _consume(self, first: int, logits: torch.Tensor) -> None:
        """Sample rows ``first...`` from ``logits`` and deliver their text."""
        logits = logits.cpu()
        greedy = logits.argmax(dim=-1).tolist()
        chosen: list[int] = []
        for k, (job, choice) in enumerate(self._rows[first:]):
            token = self._pad
            if not (job.cancelled or job.failed):
                try:
                    token = (
                        greedy[k]
                        if choice.sampler.plain_greedy
                        else choice.sampler.pick(logits[k])
                    )
                    self._advance(job, choice, token)
                except Exception as exc:  # only this job fails
                    log.exception("sampling failed", model=self._name)
                    self._fail(job, exc)
            chosen.append(token)
        self._last[first:] = torch.tensor(chosen, device=self._device)

    def _advance(self, job: Job, choice: Choice, token: int) -> None:
        choice.generated += 1
        job.completion_tokens += 1
        choice.sampler.observe(token)

        finish = None
        if token in self._eos:
            text = _final_text(choice)
            finish = FINISH_STOP
        else:
            text = choice.stops.feed(choice.decoder.push(token))
            if choice.stops.stopped:
                finish = FINISH_STOP
            elif choice.generated >= choice.max_new:
                text += _final_text(choice)
                finish = FINISH_LENGTH

        if text:
            job.events.put(("delta", choice.index, text))
        if finish is not None:
            choice.done = True
            job.events.put(("end", choice.index, finish))

    def _retire(self) -> None:
        keep = []
        for row, (job, choice) in enumerate(self._rows):
            if job.cancelled and not choice.done and not job.failed:
                choice.done = True
                job.events.put(("end", choice.index, FINISH_STOP))
            if not (choice.done or job.failed):
                keep.append(row)
        if len(keep) == len(self._rows):
            return
        if not keep:
            self._reset()
            return

        index = torch.tensor(keep, device=self._device)
        _select_rows(self._cache, index)
        self._mask = self._mask.index_select(0, index)
        self._positions = self._positions.index_select(0, index)
        self._last = self._last.index_select(0, index)
        self._rows = [self._rows[row] for row in keep]
        self._trim_padding()

    def _trim_padding(self) -> None:
        # Columns that are padding for every remaining row are dead weight.
        if not self._can_merge:
            return
        used = self._mask.any(dim=0)
        start = int(torch.argmax(used.to(torch.int8)))
        if start == 0:
            return
        for layer in self._cache.layers:
            layer.keys = layer.keys[:, :, start:, :]
            layer.values = layer.values[:, :, start:, :]
        self._mask = self._mask[:, start:]

    def _reset(self) -> None:
        self._rows = []
        self._cache = self._mask = self._positions = self._last = None

    def _fail(self, job: Job, exc: BaseException) -> None:
        if job.failed:
            return
        job.failed = True
        error = exc if isinstance(exc, HearthError) else _runtime_error(self._name, exc)
        job.events.put(("error", error))

    def _fail_running(self, exc: BaseException) -> None:
        # A failed forward pass leaves the shared cache in an unknown state.
        for job, _ in self._rows:
            self._fail(job, exc)
        self._reset()

    def _end_all(self, job: Job, reason: str) -> None:
        for choice in job.choices:
            if not choice.done:
                choice.done = True
                job.events.put(("end", choice.index, reason))

    def _shutdown(self) -> None:
        closing = ModelRuntimeError(
            f"model {self._name!r} shut down before the request finished; retry it"
        )
        with self._cond:
            waiting = list(self._waiting)
            self._waiting.clear()
        for job in waiting + [job for job, _ in self._rows]:
            self._fail(job, closing)
        self._reset()


def _final_text(choice: Choice) -> str:
    return choice.stops.feed(choice.decoder.flush()) + choice.stops.flush()


def _left_pad(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """Pad a [batch, heads, seq, dim] tensor on the left of seq to ``width``."""
    missing = width - tensor.shape[-2]
    return F.pad(tensor, (0, 0, missing, 0)) if missing else tensor


def _select_rows(cache: Any, index: torch.Tensor) -> None:
    for layer in cache.layers:
        layer.keys = layer.keys.index_select(0, index)
        layer.values = layer.values.index_select(0, index)


def _plain_layers(cache: Any) -> bool:
    return all(type(layer) is DynamicLayer for layer in cache.layers)


def _runtime_error(name: str, exc: BaseException) -> ModelRuntimeError:
    error = ModelRuntimeError(
        f"model {name!r} failed while generating: {type(exc).__name__}: {exc}. "
        "The request can be retried; if it fails again, check the worker log."
    )
    error.__cause__ = exc
    return error
