"""Analyst queries: the read-only guard, result limits, and the output formats of
``citeplus sql``."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from services.runtime.errors import CiteplusError

_READ_ONLY = re.compile(r"^\s*(select|with|show|describe|desc|explain|exists)\b", re.IGNORECASE)
# Writes a SELECT can do that ClickHouse's readonly=1 does not stop: chDB runs
# ``INTO OUTFILE`` in the node's own process (measured: it writes the file).
_WRITING_CLAUSE = re.compile(r"\b(outfile)\b", re.IGNORECASE)
FORMATS = ("table", "csv", "json", "parquet")


@dataclass(frozen=True)
class QueryLimits:
    """What one analyst query may cost the node that owns the warehouse."""

    max_rows: int = 1_000_000
    max_bytes: int = 256 * 1024 * 1024
    max_seconds: int = 60
    # Memory one query may hold while it runs: the warehouse lives in publish's
    # process, beside the sink; a query building a huge array must fail, not it.
    max_memory: int = 2 * 1024 * 1024 * 1024
    max_threads: int = 0  # threads per query; 0: the engine's default (one per core)

    def settings(self) -> str:
        """A SETTINGS clause; ``readonly=1`` last, since later settings in one clause
        win and, once read-only, a query may change no setting (ClickHouse refuses a
        query's own ``SETTINGS readonly=0`` then: measured with chDB)."""
        threads = f"max_threads={self.max_threads}, " if self.max_threads else ""
        return (
            f"SETTINGS {threads}max_execution_time={self.max_seconds}, "
            f"max_result_rows={self.max_rows}, max_result_bytes={self.max_bytes}, "
            f"max_memory_usage={self.max_memory}, "
            "result_overflow_mode='throw', readonly=1"
        )


def skeleton(sql: str) -> str:
    """``sql`` with string literals, quoted names and comments blanked out, so that
    keywords are looked for where ClickHouse reads them. Unterminated ones are refused
    (ClickHouse would refuse them too, and they could hide what follows)."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        char = sql[i]
        if char in "'\"`":
            end = i + 1
            while end < n and sql[end] != char:
                end += 2 if sql[end] == "\\" else 1
            if end >= n:
                raise CiteplusError(f"unterminated {char} in the query")
            out.append(" ")
            i = end + 1
        elif char == "#":
            # ClickHouse reads '#' (and '#!') as a comment to the end of the line:
            # this scan would not, and a quote inside it would hide what follows
            # (a second statement, measured: it ran a DROP with chDB 4.4).
            raise CiteplusError("'#' comments are not taken here: use -- for comments")
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            out.append(" ")
            i = n if end < 0 else end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            if end < 0:
                raise CiteplusError("unterminated /* comment in the query")
            out.append(" ")
            i = end + 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


def ensure_read_only(sql: str) -> str:
    """Analysts read; the pipeline writes. Refuse anything but one query.

    A first line of defence with a clear message; ``QueryLimits.settings`` makes
    ClickHouse itself refuse any write (and reads of files, URLs or this process's
    memory through table functions) whatever slips past this check.
    """
    statement = sql.strip().rstrip(";").strip()
    if not statement:
        raise CiteplusError("empty query")
    code = skeleton(statement)
    if ";" in code:
        raise CiteplusError("one statement at a time, please")
    if not _READ_ONLY.match(code):
        raise CiteplusError(
            "only read queries (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN) run on the node's "
            "warehouse: the pipeline alone writes it"
        )
    # Looked for in the raw text too: a quoting the skeleton does not know (ClickHouse's
    # $$heredoc$$ strings) must not hide it; a literal "outfile" in a string is refused
    # as well, which costs an analyst a rewording, not the node a file.
    if _WRITING_CLAUSE.search(code) or _WRITING_CLAUSE.search(statement):
        raise CiteplusError("INTO OUTFILE writes on the node: use citeplus sql --output FILE")
    return statement


def limited(statement: str, limits: QueryLimits) -> str:
    """The statement with the read-only settings and limits ClickHouse enforces."""
    return f"{statement}\n{limits.settings()}"


def valid_utf8(table: pa.Table) -> pa.Table:
    """The table with invalid UTF-8 in its strings replaced by U+FFFD.

    ClickHouse's String is bytes; chDB hands them to Arrow as ``string`` without
    checking, and Python then fails on the first bad byte (``citeplus sql`` died of
    a UnicodeDecodeError). Only columns that hold invalid text are rebuilt.
    """
    columns = [_valid_array(column) for column in table.columns]
    return pa.Table.from_arrays(columns, schema=table.schema)


def _valid_array(array: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """``array`` itself when its text is valid UTF-8 (or it holds none), else rebuilt."""
    if isinstance(array, pa.ChunkedArray):
        return pa.chunked_array([_valid_array(c) for c in array.chunks], type=array.type)
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _valid_strings(array)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _valid_list(array)
    if pa.types.is_struct(kind):
        return _valid_struct(array)
    return array


def _valid_strings(array: pa.Array) -> pa.Array:
    kind = array.type
    try:
        array.validate(full=True)
        return array
    except pa.ArrowInvalid:
        binary = pa.large_binary() if pa.types.is_large_string(kind) else pa.binary()
        raw = array.view(binary).to_pylist()
        texts = [None if v is None else v.decode("utf-8", "replace") for v in raw]
        return pa.array(texts, type=kind)


def _valid_list(array: pa.Array) -> pa.Array:
    values = _valid_array(array.values)
    if values is array.values:
        return array
    rebuild = pa.LargeListArray if pa.types.is_large_list(array.type) else pa.ListArray
    return rebuild.from_arrays(array.offsets, values, mask=array.is_null())


def _valid_struct(array: pa.Array) -> pa.Array:
    kind = array.type
    fields = [_valid_array(array.field(i)) for i in range(kind.num_fields)]
    return pa.StructArray.from_arrays(
        fields, fields=list(kind), mask=array.is_null() if array.null_count else None
    )


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
