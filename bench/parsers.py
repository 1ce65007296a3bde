"""Parser quality and speed on the shared real documents.

Quality: token-level F1 of each docling test document's extracted text
against docling's expected Markdown (words only, case-folded, as
multisets, so Markdown syntax and table pipes do not count). Speed: parse
and chunk every file under ../shared/data/docs, pages per second for PDFs.

    .venv/bin/python -m bench.parsers [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from collections import Counter
from pathlib import Path

from retrieval.chunking import chunk
from retrieval.parsers import parse
from server.errors import UnparseableDocument

_WORD = re.compile(r"\w+", re.UNICODE)


def f1(got: str, want: str) -> float:
    a = Counter(w.lower() for w in _WORD.findall(got))
    b = Counter(w.lower() for w in _WORD.findall(want))
    common = sum((a & b).values())
    if not common:
        return 0.0
    precision, recall = common / sum(a.values()), common / sum(b.values())
    return 2 * precision * recall / (precision + recall)


def quality(data: Path) -> dict[str, list[float]]:
    by_format: dict[str, list[float]] = {}
    reference = data / "docs-reference" / "docling"
    for fmt in ("pdf", "docx", "html", "md"):
        for ref in sorted((reference / fmt).glob("*.md")):
            name = ref.name.removesuffix(".md") if fmt != "pdf" else ref.stem + ".pdf"
            source = data / "docs" / "docling" / fmt / name
            if not source.exists():
                continue
            try:
                text = parse(source.read_bytes(), source.name).text
            except UnparseableDocument:
                text = ""
            score = f1(text, ref.read_text())
            by_format.setdefault(fmt, []).append(score)
            print(f"  {fmt:5} {score:.3f}  {source.name}")
    return by_format


def speed(data: Path) -> None:
    parsed = failed = pages = chunks = 0
    started = time.perf_counter()
    pdf_seconds = 0.0
    for path in sorted((data / "docs").rglob("*")):
        if not path.is_file() or path.name.startswith("LICENSE"):
            continue
        t = time.perf_counter()
        try:
            doc = parse(path.read_bytes(), path.name)
        except UnparseableDocument as exc:
            failed += 1
            print(f"  failed  {path.relative_to(data)}: {exc.message[:90]}")
            continue
        chunks += len(chunk(doc))
        parsed += 1
        if doc.format == "pdf":
            pages += doc.pages or 0
            pdf_seconds += time.perf_counter() - t
    total = time.perf_counter() - started
    print(
        f"speed: {parsed} parsed, {failed} refused, {chunks} chunks in {total:.1f}s;"
        f" PDF {pages} pages in {pdf_seconds:.1f}s"
        f" ({pages / max(pdf_seconds, 1e-9):.0f} pages/s incl. chunking)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    print("quality (token F1 vs docling reference):")
    scores = quality(args.data)
    for fmt, values in scores.items():
        print(f"  mean {fmt:5} {statistics.mean(values):.3f} over {len(values)} files")
    speed(args.data)


if __name__ == "__main__":
    main()
