"""ZIP-based formats (DOCX, PPTX, XLSX, ODT, EPUB): which one, and safe to open.

They all look alike from the first bytes, so the kind comes from the names
inside. Declared sizes are checked before anything is inflated: a small
file that would expand to gigabytes (a zip bomb) is refused. zipfile never
returns more than a member's declared size, so the check also bounds what
python-docx, python-pptx and openpyxl read.
"""

from __future__ import annotations

import io
import zipfile
import zlib

from server.errors import UnparseableDocument

MAX_INFLATED_BYTES = 256 * 1024 * 1024
MAX_RATIO = 200

# Office Open XML keeps its parts in one folder per application.
_OOXML_FOLDERS = {"word/": "docx", "ppt/": "pptx", "xl/": "xlsx"}
_MIMETYPES = {
    b"application/vnd.oasis.opendocument.text": "odt",
    b"application/epub+zip": "epub",
}
_BY_SUFFIX = {".docx": "docx", ".docm": "docx", ".pptx": "pptx",
              ".pptm": "pptx", ".xlsx": "xlsx", ".xlsm": "xlsx",
              ".odt": "odt", ".epub": "epub"}  # fmt: skip
_NAMES = {
    "docx": ("a Word document", "Word or LibreOffice"),
    "pptx": ("a PowerPoint presentation", "PowerPoint or LibreOffice"),
    "xlsx": ("an Excel workbook", "Excel or LibreOffice"),
    "odt": ("an OpenDocument text", "LibreOffice"),
    "epub": ("an EPUB book", "Calibre or the program that made it"),
}


def kind_of(data: bytes, filename: str, suffix: str) -> str:
    """docx, pptx, xlsx, odt or epub, from the names in the ZIP, else from
    the suffix (so that the parser can say the file is damaged or not what
    it claims); raise for any other ZIP."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
    except (zipfile.BadZipFile, ValueError, EOFError, OSError):
        return _damaged_kind(data, filename, suffix)

    mimetype = _mimetype(archive)
    for prefix, kind in _MIMETYPES.items():
        if mimetype.startswith(prefix):
            return kind
    if mimetype.startswith(b"application/vnd.oasis.opendocument."):
        raise UnparseableDocument(
            f"{filename!r} is an OpenDocument {mimetype.decode(errors='replace')} "
            "file; only text documents (.odt) are read: save it as .xlsx, .pptx "
            "or PDF and upload that."
        )
    if "xl/workbook.bin" in names:
        raise UnparseableDocument(
            f"{filename!r} is a binary Excel workbook (.xlsb), which is not "
            "supported; save it as .xlsx in Excel or LibreOffice and upload that."
        )
    if "[Content_Types].xml" in names:
        for name in names:
            for folder, kind in _OOXML_FOLDERS.items():
                if name.startswith(folder):
                    return kind
    if "META-INF/container.xml" in names:
        return "epub"
    if suffix in _BY_SUFFIX:
        # Named as one of ours but built oddly: its parser says what is wrong.
        return _BY_SUFFIX[suffix]
    raise UnparseableDocument(
        f"{filename!r} is a ZIP file ({suffix or 'no suffix'}) that is not a "
        "Word, PowerPoint, Excel, OpenDocument text or EPUB document; unpack "
        "it and upload the documents inside."
    )


def _mimetype(archive: zipfile.ZipFile) -> bytes:
    """OpenDocument and EPUB name their type in a small first member."""
    try:
        info = archive.getinfo("mimetype")
        if info.file_size > 256:
            return b""
        return archive.read(info).strip()
    except (KeyError, zipfile.BadZipFile, NotImplementedError, RuntimeError,
            zlib.error, EOFError, OSError):  # fmt: skip
        return b""


def _damaged_kind(data: bytes, filename: str, suffix: str) -> str:
    if suffix in _BY_SUFFIX:
        return _BY_SUFFIX[suffix]
    # The mimetype member is stored first and uncompressed, name then value.
    if data[30:38] == b"mimetype":
        for prefix, kind in _MIMETYPES.items():
            if data[38:].startswith(prefix):
                return kind
    raise UnparseableDocument(
        f"{filename!r} is a damaged ZIP file ({suffix or 'no suffix'}); "
        "export the document again from its source and upload it again."
    )


def open_archive(
    data: bytes, filename: str, *, kind: str, required: str | None = None
) -> zipfile.ZipFile:
    """The file's ZIP once it is known to be whole, small enough when
    inflated and (if given) to hold the member ``required``."""
    article, application = _NAMES[kind]
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as exc:
        raise UnparseableDocument(
            f"{filename!r} is not a valid {kind.upper()} (the ZIP is damaged: "
            f"{exc}); open and save it again in {application}."
        ) from exc

    inflated = sum(info.file_size for info in infos)
    packed = max(1, sum(info.compress_size for info in infos))
    if inflated > MAX_INFLATED_BYTES or inflated / packed > MAX_RATIO:
        raise UnparseableDocument(
            f"{filename!r} expands to {inflated} bytes from {packed} (a ZIP "
            "bomb?); it was not opened. Upload the document saved normally."
        )
    if any(info.flag_bits & 0x1 for info in infos):
        raise UnparseableDocument(
            f"{filename!r} is encrypted with a password; remove the password, "
            "save it again and upload it."
        )
    if required and required not in {info.filename for info in infos}:
        raise UnparseableDocument(
            f"{filename!r} has no {required}, so it is not {article}; save it "
            f"as .{kind} and upload it again."
        )
    return archive


def read_member(
    archive: zipfile.ZipFile, name: str, filename: str, *, kind: str
) -> bytes:
    """One member's bytes; a missing or damaged member is the file's fault."""
    application = _NAMES[kind][1]
    try:
        return archive.read(name)
    except KeyError as exc:
        raise UnparseableDocument(
            f"{filename!r} refers to {name!r}, which is not in the file; open "
            f"and save it again in {application}."
        ) from exc
    except (zipfile.BadZipFile, NotImplementedError, zlib.error, EOFError,
            OSError) as exc:  # fmt: skip
        raise UnparseableDocument(
            f"{filename!r} is not a valid {kind.upper()} ({name!r} is damaged: "
            f"{exc}); open and save it again in {application}."
        ) from exc
