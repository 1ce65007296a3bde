"""Parse untrusted binary files in a child process with limits.

The PDF parser is C code, and the ZIP-based formats (DOCX, PPTX, XLSX,
ODT, EPUB) are inflaters and XML parsers fed by strangers; RTF and e-mail
go through regular expressions and MIME decoders that a crafted file can
make slow. Any of them can crash, loop or eat memory. The child gets a
memory and CPU ceiling and a wall-clock timeout, and whatever happens to
it the worker only sees an UnparseableDocument with a reason. Plain text,
Markdown and HTML are parsed in the worker itself.

    python -m retrieval.sandbox PATH FILENAME   # prints the parse as JSON
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

from retrieval.parsed import ParsedDocument
from retrieval.parsers import parse, sniff
from server.errors import HearthError, UnparseableDocument

MEMORY_BYTES = 2 * 1024**3
CPU_SECONDS = 120
WALL_SECONDS = 180
_IN_CHILD = {"pdf", "docx", "pptx", "xlsx", "odt", "epub", "rtf", "eml"}


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def parse_file(path: Path, filename: str) -> ParsedDocument:
    """Parse the file at ``path``; ``filename`` is the user's name for it,
    used for the format and messages only."""
    data = path.read_bytes()
    # A ZIP goes to the child unopened: even listing its members can cost
    # seconds and hundreds of MB when it holds millions of entries.
    zipped = data[:4] == b"PK\x03\x04"
    if not data or (not zipped and sniff(data, filename) not in _IN_CHILD):
        return parse(data, filename)

    try:
        done = subprocess.run(
            [sys.executable, "-m", "retrieval.sandbox", str(path), filename],
            capture_output=True, timeout=WALL_SECONDS, preexec_fn=_limit,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise UnparseableDocument(
            f"Parsing {filename!r} took longer than {WALL_SECONDS}s and was "
            "stopped; the file may be damaged or hostile. Re-export it and retry."
        ) from exc
    if done.returncode != 0:
        reason = (
            f"signal {signal.Signals(-done.returncode).name}"
            if done.returncode < 0
            else f"exit {done.returncode}"
        )
        raise UnparseableDocument(
            f"The parser stopped on {filename!r} ({reason}: too large, damaged "
            "or hostile); re-export the document and upload it again."
        )
    answer = json.loads(done.stdout)
    if "error" in answer:
        raise HearthError.from_dict(answer["error"])
    return ParsedDocument.from_dict(answer["parsed"])


def _child(path: str, filename: str) -> None:
    try:
        parsed = parse(Path(path).read_bytes(), filename)
        answer = {"parsed": parsed.to_dict()}
    except HearthError as exc:
        answer = {"error": exc.to_dict()}
    except MemoryError:
        answer = {"error": UnparseableDocument(
            f"{filename!r} needs more than {MEMORY_BYTES >> 20} MiB to parse; "
            "split it into smaller files."
        ).to_dict()}  # fmt: skip
    except Exception as exc:  # any parser bug is this file's failure only
        answer = {"error": UnparseableDocument(
            f"{filename!r} could not be parsed ({type(exc).__name__}: "
            f"{str(exc)[:200]}); it may be damaged: re-export it and retry."
        ).to_dict()}  # fmt: skip
    sys.stdout.write(json.dumps(answer))


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
