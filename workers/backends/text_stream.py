"""Turn a growing list of token ids into safe text deltas.

Two things must never reach a client: half of a multi-byte character (a
byte-level tokenizer splits an emoji over several tokens, and decoding only
some of them yields U+FFFD), and any part of a stop string. So text that
could still become either is held back until the next tokens settle it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Decode = Callable[[Sequence[int]], str]


class IncrementalDecoder:
    """Decodes new tokens against a short window of earlier ones.

    Decoding the window, not the whole output, keeps each step cheap while
    still letting the tokenizer merge bytes and spaces across tokens.
    """

    def __init__(self, decode: Decode) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._prefix = 0
        self._read = 0

    def push(self, token_id: int) -> str:
        """Add one token; return the text it settled (maybe empty)."""
        self._ids.append(token_id)
        settled = self._decode(self._ids[self._prefix : self._read])
        current = self._decode(self._ids[self._prefix :])
        if len(current) <= len(settled) or current.endswith("\ufffd"):
            return ""
        self._prefix = self._read
        self._read = len(self._ids)
        return current[len(settled) :]

    def flush(self) -> str:
        """What is still held back, at the end of the output.

        A character whose bytes never completed (the output was cut in the
        middle of it) is dropped rather than sent as U+FFFD.
        """
        settled = self._decode(self._ids[self._prefix : self._read])
        current = self._decode(self._ids[self._prefix :])
        self._prefix = self._read = len(self._ids)
        return current[len(settled) :].rstrip("\ufffd")


class StopScanner:
    """Finds stop strings in streamed text and holds back their prefixes."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._text = ""
        self._sent = 0
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add text; return what is safe to send now.

        After a stop string is seen, ``stopped`` is True and the return value
        is the text before it; everything after is dropped.
        """
        if self.stopped:
            return ""
        self._text += text
        if not self._stops:
            return self._take(len(self._text))

        found = [
            at
            for at in (self._text.find(s, self._sent) for s in self._stops)
            if at >= 0
        ]
        if found:
            self.stopped = True
            return self._take(min(found))
        return self._take(len(self._text) - self._held_back())

    def flush(self) -> str:
        """At the end, a held-back prefix that never completed is just text."""
        return "" if self.stopped else self._take(len(self._text))

    def _held_back(self) -> int:
        # Longest tail of the unsent text that some stop string starts with.
        unsent = len(self._text) - self._sent
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, unsent), longest, -1):
                if self._text.endswith(stop[:size]):
                    longest = size
                    break
        return longest

    def _take(self, end: int) -> str:
        out = self._text[self._sent : end]
        self._sent = max(self._sent, end)
        # Sent text can no longer start a stop string; keep memory bounded.
        keep = self._sent
        if keep > 4096:
            self._text = self._text[keep:]
            self._sent = 0
        return out
