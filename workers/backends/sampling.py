"""Choosing the next token for each row of a batch, each with its own settings.

Every row carries its own temperature, top-p, penalties and random generator,
so a request's output depends only on its own settings and seed, never on
which other requests happen to share its batch.
"""

from __future__ import annotations

import secrets

import torch


class RowSampler:
    """Next-token choice for one sequence, with OpenAI's parameter semantics."""

    def __init__(
        self,
        *,
        temperature: float,
        top_p: float,
        presence_penalty: float,
        frequency_penalty: float,
        seed: int | None,
        vocab_size: int,
    ) -> None:
        self.temperature = temperature
        self.top_p = top_p
        self.presence = presence_penalty
        self.frequency = frequency_penalty
        self.greedy = temperature <= 0.0
        self.penalised = bool(presence_penalty or frequency_penalty)
        self._counts = (
            torch.zeros(vocab_size, dtype=torch.float32) if self.penalised else None
        )
        self._generator: torch.Generator | None = None
        if not self.greedy:
            self._generator = torch.Generator()
            self._generator.manual_seed(
                seed if seed is not None else secrets.randbits(63)
            )

    @property
    def plain_greedy(self) -> bool:
        """True when the batch-wide argmax is already this row's answer."""
        return self.greedy and not self.penalised

    def pick(self, logits: torch.Tensor) -> int:
        """Choose a token from one row of float32 logits (on the CPU)."""
        if self._counts is not None:
            # OpenAI: mu[j] -= c[j] * frequency + (c[j] > 0) * presence.
            logits = (
                logits
                - self._counts * self.frequency
                - (self._counts > 0).float() * self.presence
            )
        if self.greedy:
            return int(torch.argmax(logits))

        logits = logits / self.temperature
        if self.top_p < 1.0:
            logits = _top_p_filter(logits, self.top_p)
        probs = torch.softmax(logits, dim=-1)
        return int(torch.multinomial(probs, 1, generator=self._generator))

    def observe(self, token: int) -> None:
        """Record a generated token for the penalties."""
        if self._counts is not None:
            self._counts[token] += 1.0


def _top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    ordered, order = torch.sort(logits, descending=True)
    probs = torch.softmax(ordered, dim=-1)
    # Drop a token when the tokens ranked above it already reach top_p; the
    # first token always stays.
    drop = (probs.cumsum(dim=-1) - probs) >= top_p
    ordered = ordered.masked_fill(drop, float("-inf"))
    return torch.empty_like(logits).scatter_(0, order, ordered)


def choice_seed(seed: int | None, index: int) -> int | None:
    """Seed for choice ``index``: choices of one request must differ."""
    if seed is None or index == 0:
        return seed
    return (seed * 1_000_003 + index * 7_919) % (2**63)
