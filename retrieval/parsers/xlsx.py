"""Excel (.xlsx) through openpyxl: one section per sheet, one line per row.

The workbook is read in streaming mode with the values Excel last
computed (a formula's cached result, not its source). Cells in a row are
joined with " | ", empty rows are skipped, and past ``MAX_CELLS`` cells
the workbook is refused: it is data to query, not text to search.
"""

from __future__ import annotations

import datetime as dt
import io
import warnings

from retrieval.parsed import Block, ParsedDocument
from retrieval.parsers import archive
from retrieval.parsers.text import clean
from server.errors import UnparseableDocument

MAX_CELLS = 2_000_000


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        # As Excel shows it: 3 not 3.0, 0.3 not 0.30000000000000004.
        return str(int(value)) if value.is_integer() else f"{value:.15g}"
    if isinstance(value, dt.datetime) and value.time() == dt.time():
        return value.date().isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return " ".join(str(value).split())


def _sheet_blocks(sheet, filename: str, seen: int) -> tuple[list[Block], int]:
    """The sheet's name as a heading and its rows as a table; the count of
    cells read so far goes in and out."""
    # The declared dimension may be wrong (or huge); rows are read as stored.
    sheet.reset_dimensions()
    rows = []
    for row in sheet.iter_rows(values_only=True):
        seen += len(row)
        if seen > MAX_CELLS:
            raise UnparseableDocument(
                f"{filename!r} has more than {MAX_CELLS:,} cells; split it into "
                "smaller workbooks, or export the sheets you need as CSV."
            )
        cells = [_cell_text(value) for value in row]
        while cells and not cells[-1]:
            cells.pop()
        if cells:
            rows.append(cells)
    if not rows:
        return [], seen

    # Sheets often start a column or two in; those columns say nothing.
    lead = min(next(i for i, cell in enumerate(cells) if cell) for cells in rows)
    lines = [" | ".join(cells[lead:]) for cells in rows]
    heading = Block(text=clean(sheet.title), kind="heading", level=1)
    return [heading, Block(text=clean("\n".join(lines)), kind="table")], seen


def parse(data: bytes, filename: str) -> ParsedDocument:
    archive.open_archive(data, filename, kind="xlsx")
    import openpyxl

    blocks: list[Block] = []
    seen = 0
    try:
        with warnings.catch_warnings():
            # Unsupported extensions and missing styles only warn; the cell
            # values are still read.
            warnings.simplefilter("ignore")
            workbook = openpyxl.load_workbook(
                io.BytesIO(data), read_only=True, data_only=True
            )
            for sheet in workbook.worksheets:
                sheet_blocks, seen = _sheet_blocks(sheet, filename, seen)
                blocks.extend(sheet_blocks)
            title = workbook.properties.title or None
            workbook.close()
    except UnparseableDocument:
        raise
    except Exception as exc:  # openpyxl raises KeyError, ValueError, XML errors
        raise UnparseableDocument(
            f"{filename!r} could not be read as XLSX ({type(exc).__name__}); "
            "open and save it again in Excel or LibreOffice."
        ) from exc
    return ParsedDocument(format="xlsx", blocks=blocks, title=title)
