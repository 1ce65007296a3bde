"""Office documents, e-books and mail built in code, for the parser tests
and the end-to-end ones: nothing is read from disk or downloaded."""

from __future__ import annotations

import io
import zipfile
from email.message import EmailMessage

ODF_TEXT = b"application/vnd.oasis.opendocument.text"


def zip_of(members: list[tuple[str, bytes]]) -> bytes:
    """A ZIP as office programs write it: ``mimetype`` (if any) first, stored."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            method = zipfile.ZIP_STORED if name == "mimetype" else None
            archive.writestr(name, data, compress_type=method)
    return out.getvalue()


def pptx_file() -> bytes:
    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation()
    first = deck.slides.add_slide(deck.slide_layouts[0])
    first.shapes.title.text = "Quarterly Review"
    first.placeholders[1].text = "Prepared by the finance team"

    second = deck.slides.add_slide(deck.slide_layouts[1])
    second.shapes.title.text = "Revenue"
    second.placeholders[1].text_frame.text = "Revenue grew in every region."
    second.placeholders[1].text_frame.add_paragraph().text = "Costs stayed flat."
    table = second.shapes.add_table(2, 2, Inches(1), Inches(4), Inches(4), Inches(1))
    for (row, col), text in {(0, 0): "Region", (0, 1): "Sales",
                             (1, 0): "North", (1, 1): "10"}.items():  # fmt: skip
        table.table.cell(row, col).text = text
    second.notes_slide.notes_text_frame.text = "Mention the new hires."

    third = deck.slides.add_slide(deck.slide_layouts[6])
    box = third.shapes.add_textbox(Inches(1), Inches(1), Inches(4), Inches(1))
    box.text_frame.text = "A slide without a title."
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def xlsx_file() -> bytes:
    import datetime as dt

    import openpyxl

    book = openpyxl.Workbook()
    sales = book.active
    sales.title = "Sales"
    for row in (["Region", "Units", "Price"], ["North", 12, 2.5], [None, None, None],
                [None, "no region", 0.1 + 0.2]):  # fmt: skip
        sales.append(row)
    notes = book.create_sheet("Notes")
    notes["B2"] = "Audited on"
    notes["C2"] = dt.datetime(2024, 3, 31)
    book.create_sheet("Empty")
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def odt_file(body: str = "", prolog: str = "") -> bytes:
    body = body or (
        '<text:h text:outline-level="1">Field Guide</text:h>'
        "<text:p>Ducks  are <text:span>common</text:span>"
        "<text:note><text:note-body><text:p>A footnote.</text:p></text:note-body>"
        "</text:note> birds.</text:p>"
        '<text:h text:outline-level="2">Species</text:h>'
        "<text:list><text:list-item><text:p>Mallard</text:p></text:list-item>"
        "<text:list-item><text:p>Teal</text:p></text:list-item></text:list>"
        "<table:table><table:table-row><table:table-cell><text:p>Name</text:p>"
        "</table:table-cell><table:table-cell><text:p>Weight</text:p>"
        "</table:table-cell></table:table-row><table:table-row><table:table-cell>"
        "<text:p>Mallard</text:p></table:table-cell><table:table-cell>"
        "<text:p>1.1 kg</text:p></table:table-cell></table:table-row></table:table>"
    )
    content = (
        f'<?xml version="1.0" encoding="UTF-8"?>{prolog}<office:document-content '
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0">'
        f"<office:body><office:text>{body}</office:text></office:body>"
        "</office:document-content>"
    )
    meta = (
        '<office:document-meta xmlns:office="urn:oasis:names:tc:opendocument:'
        'xmlns:office:1.0" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        "<office:meta><dc:title>Birds</dc:title></office:meta></office:document-meta>"
    )
    return zip_of([("mimetype", ODF_TEXT), ("content.xml", content.encode()),
                 ("meta.xml", meta.encode()),
                 ("META-INF/manifest.xml", b"<manifest/>")])  # fmt: skip


def epub_file() -> bytes:
    container = (
        '<container xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
        'version="1.0"><rootfiles><rootfile full-path="OEBPS/book.opf" '
        'media-type="application/oebps-package+xml"/></rootfiles></container>'
    )
    package = (
        '<package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
        "<dc:title>Winter Book</dc:title></metadata><manifest>"
        '<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" '
        'properties="nav"/>'
        '<item id="two" href="text/two.xhtml" media-type="application/xhtml+xml"/>'
        '<item id="one" href="text/one%20a.xhtml" '
        'media-type="application/xhtml+xml"/>'
        '<item id="css" href="style.css" media-type="text/css"/></manifest>'
        '<spine><itemref idref="nav"/><itemref idref="one"/><itemref idref="two"/>'
        "</spine></package>"
    )

    def page(title: str, body: str) -> bytes:
        return (
            '<?xml version="1.0" encoding="utf-8"?><html '
            'xmlns="http://www.w3.org/1999/xhtml"><head><title>t</title></head>'
            f"<body><h1>{title}</h1>{body}</body></html>"
        ).encode()

    return zip_of([
        ("mimetype", b"application/epub+zip"),
        ("META-INF/container.xml", container.encode()),
        ("OEBPS/book.opf", package.encode()),
        ("OEBPS/nav.xhtml", page("Contents", "<p>Table of contents list</p>")),
        ("OEBPS/text/two.xhtml", page("Skating", "<p>Rinks freeze in December.</p>")),
        ("OEBPS/text/one a.xhtml",
         page("Skiing", "<p>Snow falls early.</p><script>var x = 'hidden'</script>")),
        ("OEBPS/style.css", b"body { color: black }"),
    ])  # fmt: skip


def email_file(*, plain: bool = True) -> bytes:
    message = EmailMessage()
    message["Subject"] = "Family Day plans"
    message["From"] = "Ana Ruiz <ana@example.org>"
    message["To"] = "team@example.org"
    message["Date"] = "Wed, 21 Dec 2022 10:28:53 -0600"
    if plain:
        message.set_content("Hi all,\n\nThe petting zoo opens at noon.\n")
        message.add_alternative("<p>HTML twin of the body</p>", subtype="html")
    else:
        message.set_content(
            "<html><body><h2>Schedule</h2><p>Face painting at one.</p>"
            "<script>track()</script></body></html>",
            subtype="html",
        )
    message.add_attachment(
        b"%PDF-1.4 secret attachment body", maintype="application",
        subtype="pdf", filename="menu.pdf",
    )  # fmt: skip
    forwarded = EmailMessage()
    forwarded["Subject"] = "Old thread"
    forwarded.set_content("Forwarded words stay out.")
    message.add_attachment(forwarded)
    return message.as_bytes()


RTF = "\n".join([
    r"{\rtf1\ansi\ansicpg1252\deff0{\fonttbl{\f0\fswiss Helvetica;}}",
    r"{\colortbl;\red255\green0\blue0;}",
    r"\f0\pard {\b Caf\'e9 menu}\par",
    r"Espresso costs \u8364? 2.\par",
    r"\trowd\cellx1000\cellx2000 Item\cell Price\cell\row",
    r"\trowd\cellx1000\cellx2000 Tea\cell 3\cell\row}",
])  # fmt: skip
