"""Plain JSON records: NDJSON (one object per line) or one JSON array of objects.

Values keep their JSON types; nested objects and arrays travel as JSON text.
In NDJSON a bad line is rejected alone; a JSON document is all or nothing for
its syntax, then record by record. A GBFS-style document whose records sit
inside an object is read through the source's ``json.records`` path.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any

from services.ingest.batch import BatchBuilder, Cell, ParseResult
from services.ingest.formats import strict_json
from services.ingest.values import json_cell, json_error, parse_number
from services.runtime.cities import SourceConfig

# A record's original text for a dead letter: the line as received, or (JSON
# arrays, where items have no text of their own) a function that re-encodes it.
Original = bytes | str | Callable[[], bytes]


def parse(data: bytes, source: SourceConfig) -> ParseResult:
    """NDJSON or JSON array, as the source's format says."""
    if source.format == "ndjson":
        return parse_ndjson(data, source)
    return parse_array(data, source)


def parse_ndjson(data: bytes, source: SourceConfig) -> ParseResult:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    fast = _parse_ndjson_at_once(data, source)
    return fast if fast is not None else _parse_ndjson_by_line(data, source)


def _parse_ndjson_at_once(data: bytes, source: SourceConfig) -> ParseResult | None:
    """The common case, a clean batch, in one decode of all its lines as an array:
    per-line decoding dominated ingest's cost. Any bad line, or anything the
    strict checks cannot vouch for from the text, sends the whole payload to the
    line-by-line path, which names each bad line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    numbered = [(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
    try:
        records = strict_json.fast_loads("[" + ",".join(line for _, line in numbered) + "]")
    except ValueError:
        return None
    if len(records) != len(numbered):
        return None  # a line held two values ("1,2"): let the careful path say so
    if not strict_json.looks_clean(text, records):
        return None
    clean = _clean_batch(records, source)
    if clean is not None:
        return clean
    out = BatchBuilder()
    for (number, line), record in zip(numbered, records, strict=True):
        _add(out, record, source, f"line {number}", line)
    return out.result()


def _parse_ndjson_by_line(data: bytes, source: SourceConfig) -> ParseResult:
    out = BatchBuilder()
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        position = f"line {number}"
        try:
            record = strict_json.strict_loads(line.decode("utf-8"))
        except strict_json.TooDeep:
            found = strict_json.too_deep()
            out.reject(position, found.reason, found.message, line, detail=found.detail)
            continue
        except (ValueError, UnicodeDecodeError) as exc:
            message, detail = json_error(exc)
            out.reject(position, "bad-json", message, line, detail=detail)
            continue
        found = strict_json.problem(record)
        if found is not None:
            out.reject(position, found.reason, found.message, line, detail=found.detail)
            continue
        _add(out, record, source, position, line)
    return out.result()


def parse_array(data: bytes, source: SourceConfig) -> ParseResult:
    """A document's syntax is all or nothing; a fault inside one record (NaN, a
    repeated key, a lone surrogate, deep nesting) rejects that record alone."""
    out = BatchBuilder()
    try:
        document, strict = load_document(data)
    except (ValueError, UnicodeDecodeError) as exc:
        reason, message, detail = document_error(exc)
        out.reject("payload", reason, message, data, detail=detail)
        return out.result()
    records = _records(document, source.json_records)
    if isinstance(records, str):
        found = strict_json.problem(document) if strict else None
        if found is None:
            out.reject("payload", "not-an-array", records, data)
        else:
            out.reject("payload", found.reason, found.message, data, detail=found.detail)
        return out.result()
    clean = None if strict else _clean_batch(records, source)
    if clean is not None:
        return clean
    for number, record in enumerate(records, start=1):
        position = f"item {number}"
        found = strict_json.problem(record) if strict else None
        if found is not None:
            out.reject(
                position,
                found.reason,
                found.message,
                safe_json(record),
                detail=found.detail,
            )
            continue
        _add(out, record, source, position, partial(_item_json, record))
    return out.result()


def load_document(data: bytes) -> tuple[Any, bool]:
    """(document, strict): the fast decode when the text vouches for it, else the
    strict one whose faults :func:`strict_json.problem` names record by record.
    ValueError, UnicodeDecodeError or TooDeep when the document cannot be read."""
    text = data.decode(json.detect_encoding(data))  # strict: no surrogates from bytes
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        document = strict_json.fast_loads(text)
    except strict_json.TooDeep:
        raise
    except ValueError:
        document = None
    else:
        records = document if isinstance(document, list) else [document]
        if strict_json.looks_clean(text, records):
            return document, False
    return strict_json.strict_loads(text), True


def document_error(exc: ValueError) -> tuple[str, str, str]:
    """(reason, message, detail) for a whole document that cannot be read."""
    if isinstance(exc, strict_json.TooDeep):
        found = strict_json.too_deep()
        return found.reason, found.message, found.detail
    message, detail = json_error(exc)
    return "bad-json", message, detail


_NESTED = (dict, list)
_NUMBER_TYPES = (int, float, type(None))


def _clean_batch(records: list[Any], source: SourceConfig) -> ParseResult | None:
    """The whole batch column by column when no record needs a word of its own: every
    one an object with a string or integer entity and plain numbers in its numeric
    fields. Checking and building whole columns in comprehensions costs about half
    of going record by record (ingest's largest cost); the result is the same, and
    a batch with anything to reject or convert (None here) takes the careful path.
    """
    by_entity = _group_by_entity(records, source.entity)
    if by_entity is None:
        return None
    out = BatchBuilder()
    for entity, rows in by_entity.items():
        columns = _entity_columns(rows)
        for name in source.numeric:
            if name in columns and not all(type(v) in _NUMBER_TYPES for v in columns[name]):
                return None  # text or booleans in a number field: the careful path says which
        out.add_columns(entity, None, columns, len(rows))
    return out.result()


def _group_by_entity(records: list[Any], entity_field: str) -> dict[str, list[dict]] | None:
    """Records per entity (as text), in order of first appearance; None unless every
    record is an object whose entity is a non-empty string or an integer."""
    if not all(type(r) is dict for r in records):
        return None
    entities = [r.get(entity_field) for r in records]
    if not all((type(e) is str and e) or type(e) is int for e in entities):
        return None
    by_entity: dict[str, list[dict[str, Any]]] = {}
    for entity, record in zip(map(str, entities), records, strict=True):
        rows = by_entity.get(entity)
        if rows is None:
            by_entity[entity] = [record]
        else:
            rows.append(record)
    return by_entity


def _entity_columns(rows: list[dict[str, Any]]) -> dict[str, list[Cell]]:
    """One entity's records as columns, in order of the names' first appearance;
    nested values become JSON text (a column is converted only if it holds one)."""
    if len(rows) == 1:  # one reading per entity: no column to gather
        return {name: [json_cell(value)] for name, value in rows[0].items()}
    columns: dict[str, list[Cell]] = {}
    for name in dict.fromkeys(name for row in rows for name in row):
        column = [row.get(name) for row in rows]
        if any(type(v) in _NESTED for v in column):
            column = [json_cell(v) for v in column]
        columns[name] = column
    return columns


def _records(document: Any, path: str | None) -> list[Any] | str:
    """The list of records, or a message saying why there is none."""
    if path is None:
        if isinstance(document, list):
            return document
        return (
            "expected a JSON array of records at the top level, "
            f"got a JSON {_json_kind(document)}; send an array, or declare where the "
            "records are with json.records (e.g. data.stations)"
        )
    node = document
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return f"no {path!r} in the document (the source's json.records path)"
        node = node[part]
    if not isinstance(node, list):
        return f"{path!r} is a JSON {_json_kind(node)}, expected an array of records"
    return node


def _add(
    out: BatchBuilder, record: Any, source: SourceConfig, position: str, line: Original
) -> None:
    if not isinstance(record, dict):
        out.reject(
            position,
            "not-an-object",
            f"expected a JSON object, got a JSON {_json_kind(record)}",
            _bytes(line),
        )
        return
    fields = tuple(record)  # the letter keeps the declared ones only
    entity = record.get(source.entity)
    if entity is None or entity == "":
        out.reject(
            position,
            "missing-entity",
            f"no value for the entity field {source.entity!r}",
            _bytes(line),
            fields=fields,
        )
        return
    if isinstance(entity, bool) or not isinstance(entity, str | int):
        out.reject(
            position,
            "bad-entity",
            f"the entity field {source.entity!r} must be a string or an integer, "
            f"got a JSON {_json_kind(entity)}",
            _bytes(line),
            fields=fields,
        )
        return
    row: dict[str, Cell] = {name: json_cell(value) for name, value in record.items()}
    for name in source.numeric:
        value = row.get(name)
        if isinstance(value, bool) or not isinstance(value, str | int | float | None):
            out.reject(
                position,
                "bad-number",
                f"field {name!r} is not a number",
                _bytes(line),
                fields=(name, *fields),
                entity=str(entity),
            )
            return
        if isinstance(value, str):
            try:
                row[name] = parse_number(value) if value.strip() else None
            except ValueError as exc:
                out.reject(
                    position,
                    "bad-number",
                    f"field {name!r} is not a number",
                    _bytes(line),
                    detail=f"field {name!r}: {exc}",
                    fields=(name, *fields),
                    entity=str(entity),
                )
                return
    out.add_row(str(entity), None, row)


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def _item_json(record: Any) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode()


def safe_json(record: Any) -> bytes:
    """A refused item re-encoded for its dead letter: non-finite numbers as their
    text, lone surrogates escaped (``json.dumps`` would write NaN or fail)."""
    try:
        return json.dumps(record, default=lambda v: getattr(v, "text", None)).encode()
    except (RecursionError, ValueError):
        return b"(the item is nested too deep to be written back; see the batch's payload)"


def _bytes(line: Original) -> bytes:
    """The original for a dead letter, encoded only when one is written (most
    records are accepted: encoding each one up front cost ingest time for nothing)."""
    if callable(line):
        return line()
    return line.encode("utf-8") if isinstance(line, str) else line
