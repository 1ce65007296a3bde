"""Citation marks out of generated text, as positions: ``[n]`` to
(n, where it stood).

The chat model cites its numbered sources as ``[1]``; OpenAI's Responses
API returns clean text with ``file_citation`` annotations pointing into
it. ``Marks`` takes the marks out of text that arrives in pieces: a piece
ending in ``[`` or ``[1`` is held back until the next one says whether a
mark follows, and so is trailing white space, which goes with the mark
("acid [1]." becomes "acid." with the citation at the end of "acid").
Numbers that name no source stay in the text as written.
"""

from __future__ import annotations

import re

_MARK = re.compile(r"[ \t]*\[(\d{1,3})\]")
# What may still turn into a mark when more text arrives.
_OPEN_END = re.compile(r"[ \t]*(?:\[\d{0,3})?$")


class Marks:
    def __init__(self, *, sources: int) -> None:
        self.sources = sources
        self.length = 0
        self._held = ""

    def feed(self, text: str) -> tuple[str, list[tuple[int, int]]]:
        """The text to pass on, and the marks found: (number, index in the
        whole text passed on so far)."""
        text = self._held + text
        cut = _OPEN_END.search(text).start()
        self._held = text[cut:]
        return self._take(text[:cut])

    def finish(self) -> tuple[str, list[tuple[int, int]]]:
        held, self._held = self._held, ""
        return self._take(held)

    def _take(self, text: str) -> tuple[str, list[tuple[int, int]]]:
        out: list[str] = []
        found: list[tuple[int, int]] = []
        at = 0
        for match in _MARK.finditer(text):
            number = int(match.group(1))
            if not 1 <= number <= self.sources:
                continue
            out.append(text[at : match.start()])
            self.length += len(out[-1])
            found.append((number, self.length))
            at = match.end()
        out.append(text[at:])
        self.length += len(out[-1])
        return "".join(out), found
