"""PPTX, XLSX, ODT, EPUB, EML and RTF, each built here, parsed and attacked."""

from __future__ import annotations

import zipfile

import pytest

from retrieval import sandbox
from retrieval.chunking import chunk
from retrieval.parsers import parse, sniff, xlsx
from server.errors import UnparseableDocument
from tests.office_files import (
    ODF_TEXT,
    RTF,
    email_file,
    epub_file,
    odt_file,
    pptx_file,
    xlsx_file,
    zip_of,
)

BUILT = {"pptx": pptx_file, "xlsx": xlsx_file, "odt": odt_file, "epub": epub_file}


def test_pptx_slides_are_pages_with_titles_tables_and_notes():
    doc = parse(pptx_file(), "deck.pptx")

    assert doc.format == "pptx" and doc.pages == 3
    headings = [(b.text, b.page) for b in doc.blocks if b.kind == "heading"]
    assert headings == [("Quarterly Review", 1), ("Revenue", 2), ("Slide 3", 3)]
    assert "Prepared by the finance team" in doc.text
    table = next(b for b in doc.blocks if b.kind == "table")
    assert (table.text, table.page) == ("Region | Sales\nNorth | 10", 2)
    notes = next(b for b in doc.blocks if b.text.startswith("Notes:"))
    assert (notes.text, notes.page) == ("Notes: Mention the new hires.", 2)

    chunks = chunk(doc, target=16, overlap=0)
    growth = next(c for c in chunks if "grew in every region" in c.text)
    assert (growth.section, growth.page_start) == ("Revenue", 2)
    untitled = next(c for c in chunks if "without a title" in c.text)
    assert (untitled.section, untitled.page_start) == ("Slide 3", 3)


def test_xlsx_sheets_are_sections_and_rows_are_lines():
    doc = parse(xlsx_file(), "book.xlsx")

    assert [b.text for b in doc.blocks if b.kind == "heading"] == ["Sales", "Notes"]
    assert doc.blocks[1].text == (
        "Region | Units | Price\nNorth | 12 | 2.5\n | no region | 0.3"
    )
    # The Notes sheet starts in column B; the empty column A is dropped.
    assert doc.blocks[3].text == "Audited on | 2024-03-31"
    sections = {c.section for c in chunk(doc, target=8, overlap=0)}
    assert sections == {"Sales", "Notes"}


def test_xlsx_over_the_cell_limit_is_refused(monkeypatch):
    monkeypatch.setattr(xlsx, "MAX_CELLS", 5)
    with pytest.raises(UnparseableDocument, match="more than 5 cells"):
        parse(xlsx_file(), "book.xlsx")


def test_odt_headings_lists_and_tables():
    doc = parse(odt_file(), "guide.odt")

    assert doc.title == "Birds"
    assert [(b.kind, b.level, b.text) for b in doc.blocks] == [
        ("heading", 1, "Field Guide"),
        ("text", 0, "Ducks are common birds."),
        ("heading", 2, "Species"),
        ("list", 0, "Mallard"),
        ("list", 0, "Teal"),
        ("table", 0, "Name | Weight\nMallard | 1.1 kg"),
    ]


def test_odt_with_xml_entities_is_refused():
    prolog = '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
    with pytest.raises(UnparseableDocument, match="entities"):
        parse(odt_file("<text:p>&b;</text:p>", prolog), "laughs.odt")


def test_epub_chapters_in_spine_order_through_html():
    doc = parse(epub_file(), "winter.epub")

    assert doc.title == "Winter Book"
    assert [(b.kind, b.text) for b in doc.blocks] == [
        ("heading", "Skiing"),
        ("text", "Snow falls early."),
        ("heading", "Skating"),
        ("text", "Rinks freeze in December."),
    ]
    assert "hidden" not in doc.text and "Table of contents" not in doc.text


def test_email_subject_headers_body_and_attachment_names():
    doc = parse(email_file(), "plans.eml")

    assert doc.title == "Family Day plans"
    assert (doc.blocks[0].kind, doc.blocks[0].text) == ("heading", "Family Day plans")
    assert doc.blocks[1].text == (
        "From: Ana Ruiz <ana@example.org>\nTo: team@example.org\n"
        "Date: Wed, 21 Dec 2022 10:28:53 -0600"
    )
    assert [b.text for b in doc.blocks[2:]] == [
        "Hi all,",
        "The petting zoo opens at noon.",
        "Attachments: menu.pdf, e-mail 'Old thread'",
    ]
    assert "HTML twin" not in doc.text and "secret" not in doc.text
    assert "Forwarded words" not in doc.text


def test_email_without_plain_part_reads_the_html_one():
    doc = parse(email_file(plain=False), "plans.eml")

    assert ("heading", "Schedule") in [(b.kind, b.text) for b in doc.blocks]
    assert "Face painting at one." in doc.text and "track()" not in doc.text
    # Mail saved without a suffix is told by its headers.
    assert sniff(email_file(), "message") == "eml"
    assert sniff(b"Dear Ana,\nFrom: the notes of a meeting\n", "notes") == "text"


def test_rtf_to_text_with_escapes_and_table_rows():
    doc = parse(RTF.encode(), "menu.rtf")

    assert doc.format == "rtf"
    assert [(b.kind, b.text) for b in doc.blocks] == [
        ("text", "Café menu"),
        ("text", "Espresso costs € 2."),
        ("table", "Item | Price"),
        ("table", "Tea | 3"),
    ]
    assert "Helvetica" not in doc.text


@pytest.mark.parametrize("kind", sorted(BUILT))
def test_zip_formats_are_told_apart_by_content(kind):
    data = BUILT[kind]()
    assert sniff(data, "download") == kind
    assert sniff(data, "misnamed.zip") == kind


def _bomb(kind: str) -> bytes:
    zeros = b"\0" * (20 * 1024 * 1024)
    members = {
        "pptx": [("[Content_Types].xml", b"<Types/>"), ("ppt/presentation.xml", zeros)],
        "xlsx": [("[Content_Types].xml", b"<Types/>"), ("xl/workbook.xml", zeros)],
        "odt": [("mimetype", ODF_TEXT), ("content.xml", zeros)],
        "epub": [("mimetype", b"application/epub+zip"),
                 ("META-INF/container.xml", zeros)],
    }  # fmt: skip
    return zip_of(members[kind])


@pytest.mark.parametrize("kind", sorted(BUILT))
def test_zip_bomb_of_each_format_is_refused(tmp_path, kind):
    data = _bomb(kind)
    assert sniff(data, "upload") == kind
    path = tmp_path / "upload"
    path.write_bytes(data)

    with pytest.raises(UnparseableDocument) as caught:
        sandbox.parse_file(path, f"bomb.{kind}")
    assert "ZIP bomb" in caught.value.message


@pytest.mark.parametrize("kind", sorted(BUILT))
def test_damaged_zip_of_each_format_is_refused(tmp_path, kind):
    data = BUILT[kind]()
    path = tmp_path / "upload"
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(UnparseableDocument) as caught:
        sandbox.parse_file(path, f"cut.{kind}")
    assert f"not a valid {kind.upper()} (the ZIP is damaged" in caught.value.message


def test_damaged_opendocument_without_suffix_is_known_by_its_mimetype():
    data = odt_file()
    with pytest.raises(UnparseableDocument, match="not a valid ODT"):
        parse(data[: len(data) // 2], "upload")


@pytest.mark.parametrize(
    "name,data,reason",
    [
        ("sheet.ods", zip_of([("mimetype", b"application/vnd.oasis.opendocument."
                             b"spreadsheet"), ("content.xml", b"<x/>")]),
         "only text documents"),
        ("photos.zip", zip_of([("a.jpg", b"\xff\xd8")]), "unpack it"),
        ("locked.xlsx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600,
         "protected with a password"),
        ("old.ppt", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600,
         "legacy Office"),
        ("mail.msg", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600,
         "legacy Office"),
    ],
)  # fmt: skip
def test_other_containers_are_refused_with_a_reason(name, data, reason):
    with pytest.raises(UnparseableDocument, match=reason):
        parse(data, name)


@pytest.mark.parametrize(
    "name,build",
    [("deck.pptx", pptx_file), ("book.xlsx", xlsx_file), ("guide.odt", odt_file),
     ("winter.epub", epub_file), ("plans.eml", email_file),
     ("menu.rtf", lambda: RTF.encode())],
)  # fmt: skip
def test_new_formats_are_parsed_in_the_sandbox(tmp_path, monkeypatch, name, build):
    def in_process(data, filename):
        raise AssertionError(f"{filename} was parsed in the worker process")

    def unopened(*args, **kwargs):
        raise AssertionError("a ZIP was opened in the worker process")

    data = build()
    expected = parse(data, name).text
    path = tmp_path / "upload"
    path.write_bytes(data)

    # The child process has its own, untouched ``parse`` and ``zipfile``.
    monkeypatch.setattr(sandbox, "parse", in_process)
    monkeypatch.setattr(zipfile, "ZipFile", unopened)
    doc = sandbox.parse_file(path, name)
    assert doc.text == expected
