"""``hearth ingest``, ``hearth search`` and ``hearth ask`` as a user runs them,
against the session's real ``hearth up``: a folder with Markdown, text, a
PDF made here and a corrupt PDF goes in through the upload route; the
corrupt one is reported with its reason and the exit code says so."""

from __future__ import annotations

import re
import subprocess
import uuid

import httpx
import pytest

from tests.stackutil import HEARTH, base_env, free_port

pytestmark = pytest.mark.stack

_NOTES = (
    "# Kettles\n\n## Descaling\n\nThe blue kettle is descaled with citric acid "
    "every March. Vinegar leaves a smell that lingers for days.\n\n"
    "## Storage\n\nKettles are stored upside down in the west cupboard.\n"
)
_FACTS = "Otters hold hands while they sleep so that they do not drift apart.\n"
_PDF_PAGES = [
    "Greenhouse manual. Open the vents when the air is warm.",
    "Tomato seedlings are watered every second morning with rain water.",
]


def text_pdf(pages: list[str]) -> bytes:
    """A small valid PDF with one line of Helvetica text per page."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]
    font = 3
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    kids = []
    for text in pages:
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = f"BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET".encode()
        objects.append(
            b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)
        )
        content = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
            b" /Resources << /Font << /F1 %d 0 R >> >> /Contents %d 0 R >>"
            % (font, content)
        )
        kids.append(len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids), len(kids),
    )  # fmt: skip

    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref,
    )  # fmt: skip
    return bytes(out)


def hearth(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [HEARTH, *args], env=base_env(), capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


@pytest.fixture(scope="module")
def ingested(base_url, api_key, tmp_path_factory):
    """A folder ingested once by the CLI: (collection name, completed run)."""
    folder = tmp_path_factory.mktemp("cli") / "library"
    folder.mkdir()
    (folder / "notes.md").write_text(_NOTES)
    (folder / "sub").mkdir()
    (folder / "sub" / "facts.txt").write_text(_FACTS)
    (folder / "sub" / "greenhouse.pdf").write_bytes(text_pdf(_PDF_PAGES))
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\nnot really a pdf")
    (folder / ".hidden.txt").write_text("never uploaded")
    name = f"cli-{uuid.uuid4().hex[:8]}"

    run = hearth("ingest", str(folder), "--collection", name,
                 "--base-url", base_url, "--api-key", api_key)  # fmt: skip
    yield name, run
    httpx.delete(f"{base_url}/collections/{name}", timeout=30,
                 headers={"Authorization": f"Bearer {api_key}"})  # fmt: skip


def test_ingest_reports_the_corrupt_file_and_exits_non_zero(ingested):
    name, run = ingested
    assert run.returncode == 1, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith(f"created collection '{name}'")
    assert f"{name} (col_" in lines[1]
    assert "4 files, 3 indexed (3 new, 0 replaced, 0 unchanged), 1 failed" in lines[1]
    assert lines[2:4] == ["failed:", lines[3]]
    assert lines[3].startswith("  library/broken.pdf: ")
    assert lines[3].endswith("(unparseable_document)")
    assert run.stderr.strip().splitlines()[-1] == "Error: 1 of 4 files failed."


def test_search_prints_a_table_with_pages_and_sections(ingested, base_url):
    name, _ = ingested
    run = hearth("search", "How often are tomato seedlings watered?",
                 "--collection", name, "--base-url", base_url)  # fmt: skip
    assert run.returncode == 0, run.stderr
    header, first = run.stdout.splitlines()[:2]
    assert header.split() == ["#", "score", "document", "where", "text"]
    # Both pages are one chunk or the second page its own: either way, cited.
    assert "library/sub/greenhouse.pdf" in first and re.search(r"pp?\. (1-)?2 ", first)

    lexical = hearth("search", "descaled", "--collection", name, "--mode",
                     "lexical", "--top-k", "1", "--base-url", base_url)  # fmt: skip
    rows = lexical.stdout.splitlines()[1:]
    assert len(rows) == 1 and "library/notes.md" in rows[0]
    assert "Kettles > Descaling" in rows[0]


def test_ask_streams_an_answer_with_numbered_citations(ingested, base_url):
    name, _ = ingested
    run = hearth("ask", "When is the blue kettle descaled?", "--collection", name,
                 "--max-tokens", "24", "--base-url", base_url)  # fmt: skip
    assert run.returncode == 0, run.stderr
    answer, sources = run.stdout.split("\nSources", 1)
    assert answer.strip()
    cited = sources.splitlines()[1:]
    assert cited[0].startswith('[1] library/notes.md (Kettles), Kettles > Descaling: "')
    assert "citric acid" in cited[0]


def test_errors_name_the_bad_value_and_the_next_step(base_url):
    missing = hearth("search", "kettle", "--collection", "no-such-collection",
                     "--base-url", base_url)  # fmt: skip
    assert missing.returncode == 1
    assert missing.stderr.startswith("Error: no collection 'no-such-collection' at ")
    assert "hearth ingest PATH --collection no-such-collection" in missing.stderr

    dead = f"http://127.0.0.1:{free_port()}/v1"
    down = hearth("ask", "anything?", "--collection", "x", "--base-url", dead)
    assert down.returncode == 1
    assert down.stderr.startswith(f"Error: cannot reach Hearth at {dead} (")
    assert "hearth up" in down.stderr and "--base-url" in down.stderr
