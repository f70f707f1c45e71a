"""CSV exports (open-data portals, meter-data platforms), as each source declares.

French exports mostly use ``;`` and a decimal comma, often start with a BOM and
quote fields holding separators, line breaks or GeoJSON. Cells stay text except
the source's ``numeric`` fields; an empty cell is ``None`` (no value). A line
that cannot be read is rejected alone, so one broken line never costs a batch.
"""

from __future__ import annotations

import codecs
import csv
import io

from services.ingest.batch import BatchBuilder, Cell, ParseResult
from services.ingest.values import parse_number
from services.runtime.cities import CsvOptions, SourceConfig


def parse(data: bytes, source: SourceConfig) -> ParseResult:
    """Group the rows of one CSV payload per entity (the ``entity`` column)."""
    options = source.csv or CsvOptions()
    out = BatchBuilder()
    encoding = options.encoding
    if codecs.lookup(encoding).name == "utf-8":
        encoding = "utf-8-sig"  # tolerate the BOM spreadsheet tools write
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

    clean = _clean_batch(text, options, source)
    return clean if clean is not None else _parse_by_line(data, text, encoding, options, source)


def _parse_by_line(
    data: bytes, text: str, encoding: str, options: CsvOptions, source: SourceConfig
) -> ParseResult:
    """Line by line, so that each bad line is rejected alone with its exact text.

    A rejected line's original is the header line(s) then the line: a payload the
    parser reads alone, so a raw dead letter can be replayed once the source is fixed.
    """
    out = BatchBuilder()
    header = 0  # physical lines of the header, once read
    # Keep physical lines so a rejected record can return its exact text.
    lines = io.StringIO(text, newline="").readlines()
    reader = csv.reader(iter(lines), delimiter=options.separator, quotechar='"')
    names: tuple[str, ...] | None = options.columns if not options.header else None
    entity_index = -1
    numeric: list[int] = []
    rows: dict[str, list[list[Cell]]] = {}
    consumed = 0

    while True:
        start = consumed
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            consumed = reader.line_num
            out.reject(
                f"line {start + 1}",
                "bad-csv",
                "unreadable CSV (unbalanced quotes or a stray character)",
                _text(lines, start, consumed, encoding, header),
                detail=f"unreadable CSV: {exc}",
            )
            continue
        consumed = reader.line_num
        if not record:
            continue  # blank line
        position = f"line {start + 1}"
        if names is None:
            problem = _header_problem(record)
            if problem:
                out.reject(position, "bad-header", problem[0], data, detail=problem[1])
                return out.result()
            names = tuple(record)
        if entity_index < 0:
            try:
                entity_index, numeric = _indexes(names, source)
            except LookupError as exc:
                reason, message, detail, fields = exc.args
                out.reject(position, reason, message, data, detail=detail, fields=fields)
                return out.result()
            if options.header:
                header = consumed
                continue
        if len(record) != len(names):
            out.reject(
                position,
                "wrong-column-count",
                f"expected {len(names)} fields separated by {options.separator!r}, "
                f"found {len(record)}",
                _text(lines, start, consumed, encoding, header),
            )
            continue
        entity = record[entity_index].strip()
        if not entity:
            out.reject(
                position,
                "missing-entity",
                f"the entity field {source.entity!r} is empty",
                _text(lines, start, consumed, encoding, header),
                fields=(source.entity,),
            )
            continue
        row: list[Cell] = [cell if cell != "" else None for cell in record]
        try:
            for index in numeric:
                cell = record[index]
                if cell.strip():
                    row[index] = parse_number(cell, options.decimal)
                else:
                    row[index] = None
        except ValueError as exc:
            out.reject(
                position,
                "bad-number",
                f"field {names[index]!r} is not a number with decimal mark {options.decimal!r}",
                _text(lines, start, consumed, encoding, header),
                detail=f"field {names[index]!r}: {exc}",
                fields=(names[index],),
                entity=entity,
            )
            continue
        rows.setdefault(entity, []).append(row)

    for entity, entity_rows in rows.items():
        transposed = zip(*entity_rows, strict=True)
        columns = {name: list(values) for name, values in zip(names, transposed, strict=True)}
        out.add_columns(entity, None, columns, len(entity_rows))
    return out.result()


def _clean_batch(text: str, options: CsvOptions, source: SourceConfig) -> ParseResult | None:
    """The whole payload column by column when no line needs a word of its own (the
    common case: an export as the portal wrote it), with the same result as the
    line by line reader at about half its cost; anything to reject gives None and
    the line by line reader, which names the line.
    """
    try:
        records = [
            r
            for r in csv.reader(
                io.StringIO(text, newline=""), delimiter=options.separator, quotechar='"'
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
    if not all(len(record) == width for record in body):
        return None
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
    numeric_names = {names[i] for i in numeric}
    out = BatchBuilder()
    for entity, rows in by_entity.items():
        columns: dict[str, list[Cell]] = {}
        for name, values in zip(names, zip(*rows, strict=True), strict=True):
            if name in numeric_names:
                try:
                    columns[name] = [
                        parse_number(v, options.decimal) if v.strip() else None for v in values
                    ]
                except ValueError:
                    return None
            else:
                columns[name] = [v if v != "" else None for v in values]
        out.add_columns(entity, None, columns, len(rows))
    return out.result()


def _header_problem(record: list[str]) -> tuple[str, str] | None:
    """(message without the header's text, detail with it), or None.

    A header may be a data line (a file sent without one): its cells are never
    quoted in the message.
    """
    for i, name in enumerate(record):
        if not name.strip():
            return f"header column {i + 1} has no name", f"header column {i + 1} has no name"
    if len(set(record)) != len(record):
        repeated = sorted({name for name in record if record.count(name) > 1})
        columns = sorted({i + 1 for i, name in enumerate(record) if name in repeated})
        return (
            f"header repeats column names (columns {', '.join(map(str, columns))})",
            f"header repeats column names: {', '.join(repeated)}",
        )
    return None


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
