"""A CSV payload of single readings -- one line per entity, no entity twice -- read
as whole columns, for ingest's columnar path (services/ingest/raw_columns.py).

Sensor and meter systems pushing their latest readings send a line per entity, a
thousand entities a request. Read per entity (csv_format.parse), each line became
an EntityRows with its own columns, number parsing and checks: most of ingest's
CPU per reading. Here each column is read once for the whole request, and a column
of plain numbers is checked by one regular expression and converted by ``map``.

It answers only for payloads the general reader would take whole, with the values
it would give (the same rows, the same ``None``s, the same numbers); for anything
else -- a line to reject, an entity on several lines, no data line at all -- it
answers None and the general reader takes the payload, so what is refused and why
has one author. tests/unit/test_ingest_single_readings.py holds the two paths to
the same messages on random payloads.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from services.ingest.batch import Cell
from services.ingest.formats.csv_format import CsvRead, read_csv
from services.ingest.values import parse_number
from services.runtime.cities import CsvOptions, SourceConfig

# Columns that parse_number reads without a question: ASCII digits with at most one
# decimal mark, few enough digits that every value is a finite float or a long. Any
# other cell (blank, grouped thousands, exponent, text) goes through parse_number.
_DIGITS = 15
_PLAIN_INTEGERS = re.compile(rf"(?:-?[0-9]{{1,{_DIGITS}}}\n)*-?[0-9]{{1,{_DIGITS}}}")
_PLAIN_DECIMALS = {
    mark: re.compile(
        rf"(?:-?[0-9]{{1,{_DIGITS}}}{re.escape(mark)}[0-9]{{1,{_DIGITS}}}\n)*"
        rf"-?[0-9]{{1,{_DIGITS}}}{re.escape(mark)}[0-9]{{1,{_DIGITS}}}"
    )
    for mark in (".", ",")
}


@dataclass(frozen=True)
class SingleReadings:
    """One value per entity in every column, in the payload's order: ``columns``
    as the general reader's EntityRows hold them (header order, empty cells None,
    numeric fields parsed), each list as long as ``entities``."""

    entities: list[str]
    columns: dict[str, list[Cell]]


def single_readings(data: bytes, source: SourceConfig) -> SingleReadings | None:
    """The payload as columns when it is a clean CSV export of distinct entities,
    else None (the general reader then parses it)."""
    read = read_csv(data, source) if source.format == "csv" else None
    return singles_of(read, source) if read is not None else None


def singles_of(read: CsvRead, source: SourceConfig) -> SingleReadings | None:
    """:func:`single_readings` of a payload already read (csv_format.read_csv): a
    request it declines goes to the general reader with the same reading."""
    layout = read.layout
    if layout is None or not layout.body:
        return None
    cells = list(zip(*layout.body, strict=True))
    entities = list(map(str.strip, cells[layout.entity_index]))
    if "" in entities or len(set(entities)) != len(entities):
        return None  # an entity to reject, or one on several lines: the general reader
    numeric_names = frozenset(layout.names[i] for i in layout.numeric)
    decimal = (source.csv or CsvOptions()).decimal
    columns: dict[str, list[Cell]] = {}
    for name, column in zip(layout.names, cells, strict=True):
        if name in numeric_names:
            numbers = _numbers(column, decimal)
            if numbers is None:
                return None
            columns[name] = numbers
        else:
            columns[name] = [cell or None for cell in column] if "" in column else list(column)
    return SingleReadings(entities, columns)


def _numbers(cells: Sequence[str], decimal: str) -> list[Cell] | None:
    """What parse_number gives each cell (None for a blank one), or None if a cell
    is not a number. A column of plain integers or plain decimals is converted in
    one pass; equal to parse_number there, since it would take the same text to
    ``int`` or ``float`` unchanged but for the decimal mark."""
    plain = _PLAIN_DECIMALS.get(decimal)  # another mark may hide in any digit string
    joined = "\n".join(cells)
    if plain is not None and joined.count("\n") + 1 == len(cells):  # no line break in a cell
        if _PLAIN_INTEGERS.fullmatch(joined):
            return list(map(int, cells))
        if plain.fullmatch(joined):
            if decimal != ".":
                joined = joined.replace(decimal, ".")
            return list(map(float, joined.split("\n")))
    try:
        return [parse_number(cell, decimal) if cell.strip() else None for cell in cells]
    except ValueError:
        return None
