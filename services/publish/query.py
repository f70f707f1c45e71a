"""Analyst queries: a read-only guard and the output formats of ``citeplus sql``."""

from __future__ import annotations

import io
import json
import re

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from services.runtime.errors import CiteplusError

_READ_ONLY = re.compile(r"^\s*(select|with|show|describe|desc|explain|exists)\b", re.IGNORECASE)
FORMATS = ("table", "csv", "json", "parquet")


def ensure_read_only(sql: str) -> str:
    """Analysts read; the pipeline writes. Refuse anything but a query."""
    statement = sql.strip().rstrip(";").strip()
    if not statement:
        raise CiteplusError("empty query")
    if ";" in statement:
        raise CiteplusError("one statement at a time, please")
    if not _READ_ONLY.match(statement):
        raise CiteplusError(
            "only read queries (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN) run through citeplus sql"
        )
    return statement


def to_ipc(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(data).read_all()


def render_table(table: pa.Table, max_rows: int = 200) -> str:
    """An aligned text table, as a person reads it at a terminal."""
    names = table.column_names
    rows = table.slice(0, max_rows).to_pylist()
    cells = [[_cell(row[name]) for name in names] for row in rows]
    widths = [max([len(n)] + [len(r[i]) for r in cells]) for i, n in enumerate(names)]
    lines = [
        "  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    lines += [
        "  ".join(c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(r, widths, strict=True))
        for r in cells
    ]
    more = f" (first {max_rows} shown)" if table.num_rows > max_rows else ""
    lines.append(f"({table.num_rows} row{'s' if table.num_rows != 1 else ''}{more})")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e15 else f"{value:.6e}"
    return str(value)


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def render(table: pa.Table, fmt: str) -> bytes:
    if fmt == "table":
        return (render_table(table) + "\n").encode()
    if fmt == "csv":
        sink = io.BytesIO()
        pacsv.write_csv(table, sink)
        return sink.getvalue()
    if fmt == "json":
        rows = table.to_pylist()
        return (
            "\n".join(json.dumps(r, default=str, ensure_ascii=False) for r in rows) + "\n"
        ).encode()
    if fmt == "parquet":
        sink = io.BytesIO()
        pq.write_table(table, sink)
        return sink.getvalue()
    raise CiteplusError(f"unknown format {fmt!r}; one of {FORMATS}")
