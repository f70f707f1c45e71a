"""CSV exports (open-data portals, meter-data platforms), as each source declares.

French exports mostly use ``;`` and a decimal comma, often start with a BOM and
quote fields holding separators, line breaks or GeoJSON. Cells stay text except
the source's ``numeric`` fields; an empty cell is ``None`` (no value). A line
that cannot be read is rejected alone, so one broken line never costs a batch.

Nothing is dropped silently: every physical data line ends in an accepted row or
in the original of a dead letter. A refused record over several lines is one of:

- a record whose shape is wrong (unreadable CSV, or not the header's number of
  fields) or whose quote never closed (it ran to the payload's end): a stray quote
  swallowed the lines after it, so it costs its first line alone (its dead letter)
  and the lines it swallowed are read again as records of their own;
- any other (a quoted cell over several lines, ``m9,"12 rue\nParis",x``, refused
  for a value or its entity): its later lines may be a cell's continuation, which
  read alone could pass for rows with the wrong data (meter ``Paris"``), so it is
  rejected whole: its dead letter holds the header and every line it spans, ready
  to replay. A stray quote that happens to be closed by a later one, with the
  header's number of fields in between, looks the same and is kept whole too.

Which record starts on a line is found in time linear in the payload whatever its
quotes (services/ingest/formats/csv_records.py): reading the payload again from each
line given back cost the square of its size (8,000 lines of ``x","``: 3 s).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from services.ingest.batch import BatchBuilder, Cell, ParseResult
from services.ingest.formats.csv_records import PhysicalRecords
from services.ingest.formats.sniff import format_problem
from services.ingest.values import parse_number
from services.runtime.cities import CsvOptions, SourceConfig

# Wider headers are refused whole: no city export needs more, and every row of a
# wider file costs as much to read as the header says.
MAX_COLUMNS = 2_000


class CsvRead(NamedTuple):
    """A CSV payload decoded and read whole once (its layout: None when a line needs
    the line by line reader), so that a reader that declines it hands it on instead
    of another reading it again."""

    text: str
    layout: CleanLayout | None


def read_csv(data: bytes, source: SourceConfig) -> CsvRead | None:
    """The payload decoded and read whole; None when it is no CSV at all or not in
    its declared encoding (:func:`parse` says why)."""
    if format_problem(data, "csv") is not None:
        return None
    options = source.csv or CsvOptions()
    try:
        text = data.decode(text_encoding(options))
    except UnicodeDecodeError:
        return None
    return CsvRead(text, clean_layout(text, options, source))


def parse(data: bytes, source: SourceConfig, read: CsvRead | None = None) -> ParseResult:
    """Group the rows of one CSV payload per entity (the ``entity`` column);
    ``read``: the payload already read by :func:`read_csv`."""
    options = source.csv or CsvOptions()
    encoding = text_encoding(options)
    if read is not None:
        clean = _clean_batch(read.layout, options)
        if clean is not None:
            return clean
        return _parse_by_line(data, read.text, encoding, options, source)
    out = BatchBuilder()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        out.reject(
            f"byte {exc.start}",
            "bad-encoding",
            f"the payload is not valid {options.encoding}; declare the real encoding "
            "in the source's csv.encoding (e.g. cp1252)",
            data,
        )
        return out.result()

    clean = _clean_batch(clean_layout(text, options, source), options)
    return clean if clean is not None else _parse_by_line(data, text, encoding, options, source)


def text_encoding(options: CsvOptions) -> str:
    """The codec a payload is decoded with: the declared one, except that UTF-8
    tolerates the BOM spreadsheet tools write."""
    encoding = options.encoding
    return "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding


@dataclass
class _Header:
    names: tuple[str, ...]
    entity: int
    numeric: list[int]
    lines: int  # physical lines of the header (0: none, names declared)


def _parse_by_line(
    data: bytes, text: str, encoding: str, options: CsvOptions, source: SourceConfig
) -> ParseResult:
    """Line by line, so that each bad line is rejected alone with its exact text.

    A rejected line's original is the header line(s) then the line: a payload the
    parser reads alone, so a raw dead letter can be replayed once the source is fixed.
    A refused record over several lines either gives back the lines a stray quote
    swallowed (wrong shape, or a quote never closed), costing its first line alone,
    or keeps them all in its dead letter (see the module's docstring).
    """
    out = BatchBuilder()
    lines = io.StringIO(text, newline="").readlines()
    records = PhysicalRecords(lines, options.separator)
    header: _Header | None = None
    rows: dict[str, list[list[Cell]]] = {}
    at = 0
    while at < len(lines):
        start, end, record, unclosed = records.read(at)
        at = end
        if not isinstance(record, csv.Error) and not record:
            continue  # blank line
        record = _readable(record, lines, start, end, unclosed, options.separator)
        if header is None:
            found = _read_header(record, start, end, options, source, out, data)
            if found is None:
                return out.result()
            header = found
            if options.header:
                continue
        given_back = _stray_quote(record, end - start, header, unclosed)
        whole = end - start > 1 and not given_back
        original = _text(lines, start, end if whole else start + 1, encoding, header.lines)
        batch = _Batch(header, options, source, out, rows)
        refused = _read_record(record, f"line {start + 1}", original, batch)
        if refused is not None and given_back:
            at = start + 1
    for entity, entity_rows in rows.items():
        transposed = zip(*entity_rows, strict=True)
        columns = dict(zip(header.names, map(list, transposed), strict=True)) if header else {}
        out.add_columns(entity, None, columns, len(entity_rows))
    return out.result()


# Spaces after a closing quote (``"Paris" ;``), which spreadsheet exports write.
_SPACES_AFTER_QUOTE = re.compile(r'"[ \t]+(?=[^"]|$)')


def _readable(
    record: Sequence[str] | csv.Error,
    lines: list[str],
    start: int,
    end: int,
    unclosed: bool,
    separator: str,
) -> Sequence[str] | csv.Error:
    """The record, or what makes it unreadable: a quote that never closed took every
    line after it into one cell; a one-line record is read strictly (strict_line)."""
    if unclosed and not isinstance(record, csv.Error):
        return csv.Error("a quote opened in this record is never closed")
    if end - start == 1:
        return strict_line(record, lines[start], separator)
    return record


def strict_line(
    record: Sequence[str] | csv.Error, line: str, separator: str
) -> Sequence[str] | csv.Error:
    """A one-line record, or the error that makes it unreadable although the csv
    module (not strict) read it: text after a closing quote (``"1"2`` was read as
    12) or a quote left open at the payload's end. Spaces after a closing quote
    are let through."""
    if isinstance(record, csv.Error) or '"' not in line:
        return record
    text = _SPACES_AFTER_QUOTE.sub('"', line.rstrip("\r\n"))
    try:
        next(csv.reader([text], delimiter=separator, quotechar='"', strict=True), None)
    except csv.Error as exc:
        return exc
    return record


def _stray_quote(
    record: Sequence[str] | csv.Error, spans: int, header: _Header, unclosed: bool
) -> bool:
    """Whether a record over several lines (``spans``) is a stray quote's, whose lines
    are records of their own: its shape is wrong (unreadable, or not the header's
    number of fields), or its quote never closed."""
    if spans <= 1:
        return False
    return isinstance(record, csv.Error) or len(record) != len(header.names) or unclosed


def _read_header(
    record: Sequence[str] | csv.Error,
    start: int,
    end: int,
    options: CsvOptions,
    source: SourceConfig,
    out: BatchBuilder,
    data: bytes,
) -> _Header | None:
    """The header (declared or the first record), or None once the whole payload
    is rejected: without a readable header no line can be read."""
    position = f"line {start + 1}"
    if options.header:
        if isinstance(record, csv.Error):
            out.reject(position, "bad-header", "the header line is unreadable CSV", data)
            return None
        problem = _header_problem(record)
        if problem:
            out.reject(position, problem[0], problem[1], data, detail=problem[2])
            return None
        names = tuple(record)
    else:
        names = options.columns or ()
    try:
        entity, numeric = _indexes(names, source)
    except LookupError as exc:
        reason, message, detail, fields = exc.args
        out.reject(position, reason, message, data, detail=detail, fields=fields)
        return None
    return _Header(names, entity, numeric, end if options.header else 0)


@dataclass
class _Batch:
    """What reading one data record needs: where it goes and what it must be."""

    header: _Header
    options: CsvOptions
    source: SourceConfig
    out: BatchBuilder
    rows: dict[str, list[list[Cell]]]


def _read_record(
    record: Sequence[str] | csv.Error, position: str, original: bytes, batch: _Batch
) -> str | None:
    """Add one data record to the batch's rows (None), or reject it (its reason)."""
    header, options, source, out = batch.header, batch.options, batch.source, batch.out
    names = header.names
    if isinstance(record, csv.Error):
        out.reject(
            position,
            "bad-csv",
            "unreadable CSV (unbalanced quotes or a stray character)",
            original,
            detail=f"unreadable CSV: {record}",
        )
        return "bad-csv"
    if len(record) != len(names):
        out.reject(
            position,
            "wrong-column-count",
            f"expected {len(names)} fields separated by {options.separator!r}, found {len(record)}",
            original,
        )
        return "wrong-column-count"
    entity = record[header.entity].strip()
    if not entity:
        out.reject(
            position,
            "missing-entity",
            f"the entity field {source.entity!r} is empty",
            original,
            fields=(source.entity,),
        )
        return "missing-entity"
    numbers: dict[int, Cell] = {}
    for index in header.numeric:
        cell = record[index]
        try:
            numbers[index] = parse_number(cell, options.decimal) if cell.strip() else None
        except ValueError as exc:
            out.reject(
                position,
                "bad-number",
                f"field {names[index]!r} is not a number with decimal mark {options.decimal!r}",
                original,
                detail=f"field {names[index]!r}: {exc}",
                fields=(names[index],),
                entity=entity,
            )
            return "bad-number"
    # Built once the record is accepted: a long refused one is never read whole.
    row: list[Cell] = [cell if cell != "" else None for cell in record]
    for index, number in numbers.items():
        row[index] = number
    batch.rows.setdefault(entity, []).append(row)
    return None


def _clean_batch(layout: CleanLayout | None, options: CsvOptions) -> ParseResult | None:
    """The whole payload column by column when no line needs a word of its own (the
    common case: an export as the portal wrote it), with the same result as the
    line by line reader at about half its cost; anything to reject gives None and
    the line by line reader, which names the line.
    """
    if layout is None:
        return None
    by_entity = _group_by_entity(layout.body, layout.entity_index)
    if by_entity is None:
        return None
    numeric_names = frozenset(layout.names[i] for i in layout.numeric)
    out = BatchBuilder()
    for entity, rows in by_entity.items():
        columns = _entity_columns(layout.names, rows, numeric_names, options.decimal)
        if columns is None:
            return None
        out.add_columns(entity, None, columns, len(rows))
    return out.result()


class CleanLayout(NamedTuple):
    """A payload whose every line has the header's width, with the entity and
    numeric columns found."""

    names: tuple[str, ...]
    body: list[list[str]]
    entity_index: int
    numeric: list[int]


def clean_layout(text: str, options: CsvOptions, source: SourceConfig) -> CleanLayout | None:
    """The lines and columns of a payload the column-wise reader can take, or None
    (a CSV error, a header problem, a missing column, a line of another width)."""
    try:
        records = [
            r
            for r in csv.reader(
                io.StringIO(text, newline=""),
                delimiter=options.separator,
                quotechar='"',
                strict=True,  # a quote never closed (or text after one): line by line
            )
            if r
        ]
    except csv.Error:
        return None
    if options.header:
        if not records or _header_problem(records[0]):
            return None
        names, body = tuple(records[0]), records[1:]
    else:
        names, body = options.columns or (), records
    try:
        entity_index, numeric = _indexes(names, source)
    except LookupError:
        return None
    width = len(names)
    if not set(map(len, body)) <= {width}:
        return None
    return CleanLayout(names, body, entity_index, numeric)


def _group_by_entity(body: list[list[str]], entity_index: int) -> dict[str, list[list[str]]] | None:
    """Lines per entity, in order of first appearance; None if an entity is empty."""
    by_entity: dict[str, list[list[str]]] = {}
    for record in body:
        entity = record[entity_index].strip()
        if not entity:
            return None
        rows = by_entity.get(entity)
        if rows is None:
            by_entity[entity] = [record]
        else:
            rows.append(record)
    return by_entity


def _entity_columns(
    names: tuple[str, ...], rows: list[list[str]], numeric_names: frozenset[str], decimal: str
) -> dict[str, list[Cell]] | None:
    """One entity's lines as columns (numbers parsed, empty cells None); None if a
    number does not parse, so the line by line reader can name it."""
    columns: dict[str, list[Cell]] = {}
    for name, values in zip(names, zip(*rows, strict=True), strict=True):
        if name in numeric_names:
            try:
                columns[name] = [parse_number(v, decimal) if v.strip() else None for v in values]
            except ValueError:
                return None
        else:
            columns[name] = [v if v != "" else None for v in values]
    return columns


def _header_problem(record: Sequence[str]) -> tuple[str, str, str] | None:
    """(reason, message without the header's text, detail with it), or None.

    A header may be a data line (a file sent without one): its cells are never
    quoted in the message. Linear in the header's width (a repeated name was once
    found by counting each name again: 20,000 columns took seconds of CPU).
    """
    if len(record) > MAX_COLUMNS:
        message = (
            f"the header has {len(record):,} columns; at most {MAX_COLUMNS:,} are read: "
            "send the columns the source declares, not the whole table"
        )
        return "too-many-columns", message, message
    for i, name in enumerate(record):
        if not name.strip():
            message = f"header column {i + 1} has no name"
            return "bad-header", message, message
    counts = Counter(record)
    if len(counts) != len(record):
        repeated = sorted(name for name, count in counts.items() if count > 1)
        columns = [i + 1 for i, name in enumerate(record) if counts[name] > 1]
        return (
            "bad-header",
            f"header repeats column names (columns {_first_few(columns)})",
            f"header repeats column names: {_first_few(repeated)}",
        )
    return None


def _first_few(items: list, shown: int = 20) -> str:
    text = ", ".join(map(str, items[:shown]))
    return f"{text} and {len(items) - shown} more" if len(items) > shown else text


def _indexes(names: tuple[str, ...], source: SourceConfig) -> tuple[int, list[int]]:
    """Column positions of the entity and numeric fields, or
    LookupError(reason, message, detail, fields): the message names the declared
    fields only, because a "header" may be a line of data (meter ids and all)."""
    if source.entity not in names:
        raise LookupError(
            "missing-entity-column",
            f"no column {source.entity!r} (the source's entity field) among the file's "
            f"{len(names)} columns; is the header missing or the separator wrong?",
            f"no column {source.entity!r} (the source's entity field); columns: {', '.join(names)}",
            (source.entity,),
        )
    missing = [name for name in source.numeric if name not in names]
    if missing:
        raise LookupError(
            "missing-column",
            f"numeric field(s) {', '.join(map(repr, missing))} declared by the source are not "
            f"among the file's {len(names)} columns",
            f"numeric field(s) {', '.join(map(repr, missing))} declared by the source are not "
            f"in the file; columns: {', '.join(names)}",
            tuple(missing),
        )
    return names.index(source.entity), [names.index(name) for name in source.numeric]


def _text(lines: list[str], start: int, end: int, encoding: str, header: int = 0) -> bytes:
    return "".join(lines[:header] + lines[start:end]).encode(encoding.replace("-sig", ""))
