"""chDB adapter: the real ClickHouse engine in this process, tables on disk."""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from services.runtime.errors import InfrastructureError
from services.warehouse.port import DEDUPLICATE_VIEWS


class ChdbWarehouse:
    """One chDB session per process; calls are serialised (the session is not thread-safe)."""

    def __init__(self, path: Path):
        from chdb import session

        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.description = f"chDB at {path}"
        self._path = path
        self._lock = threading.Lock()
        self._scoped: object | None = None
        try:
            self._session = session.Session(str(path))
        except Exception as exc:  # chDB raises plain RuntimeErrors
            raise InfrastructureError(
                f"cannot open the warehouse at {path} ({exc}). Only one process can open a "
                "chDB directory: if the publish service runs, ask it (citeplus sql talks to it), "
                "or stop it first."
            ) from exc

    def command(self, sql: str) -> None:
        with self._lock:
            self._session.query(sql)

    def query_arrow(self, sql: str, *, database: str | None = None) -> pa.Table:
        """``sql``'s rows; with ``database``, unqualified names resolve in that database.

        The session's current database is the sink's (``default``), so a query in
        another database runs on a second connection of the same engine, whose
        current database is set before each query under the same lock: a ``USE``
        on the session itself would send the sink's inserts elsewhere.
        """
        if database is not None:
            return self._query_in(database, sql)
        with self._lock:
            try:
                return self._session.query(sql, "ArrowTable")
            except Exception:
                # A query that fails while running (a limit, a timeout) leaves chDB's
                # Arrow output half written, and the next Arrow query of the session
                # fails with "Unexpected empty message in IPC" (measured, chDB 4.4).
                # A throwaway text query drains it.
                self._drain()
                raise

    def _query_in(self, database: str, sql: str) -> pa.Table:
        if not _DATABASE.match(database):
            raise ValueError(f"not a database name: {database!r}")
        with self._lock:
            if self._scoped is None:
                import chdb

                self._scoped = chdb.connect(str(self._path))
            connection = self._scoped
            connection.query(f"USE `{database}`", "CSV")  # type: ignore[attr-defined]
            try:
                return connection.query(sql, "ArrowTable")  # type: ignore[attr-defined]
            except Exception:
                try:  # as _drain: a failed Arrow query poisons the next one
                    connection.query("SELECT 1", "CSV")  # type: ignore[attr-defined]
                except Exception:
                    pass
                raise

    def _drain(self) -> None:
        try:
            self._session.query("SELECT 1", "CSV")
        except Exception:  # best effort: the caller gets the first error
            pass

    def insert_arrow(self, table: str, data: pa.Table, *, dedup_token: str | None = None) -> None:
        """Insert ``data`` as an Arrow IPC stream (chDB's streaming insert): measured,
        chDB 26.9, one meter-day into ``observations`` and its four materialised views,
        32 ms against 49 ms through the ``Python()`` table function (10 against 16 ms
        into a table without views), the same rows; the sink pays this per insert."""
        settings = (
            f" SETTINGS insert_deduplication_token='{dedup_token}', {DEDUPLICATE_VIEWS}=1"
            if dedup_token
            else ""
        )
        columns = ", ".join(f"`{name}`" for name in data.column_names)
        stream = pa.BufferOutputStream()
        with pa.ipc.new_stream(stream, data.schema) as writer:
            writer.write_table(data)
        payload = stream.getvalue().to_pybytes()
        with (
            self._lock,
            self._session.send_insert(
                f"INSERT INTO {table} ({columns}){settings}", "ArrowStream"
            ) as inserter,
        ):
            inserter.append(payload)
            inserter.finish()

    def readers(self, count: int) -> ChdbReaders:
        """``count`` more sessions on this directory, for analysts' queries: they run
        beside the sink's inserts and beside each other instead of behind this
        session's lock (measured, chDB 4.4: a 4 s query on the sink's session held an
        insert 3.5 s; on a second session the insert took 4 ms)."""
        return ChdbReaders(self.path, count)

    def close(self) -> None:
        with self._lock:
            if self._scoped is not None:
                self._scoped.close()  # type: ignore[attr-defined]
            self._session.close()


_DATABASE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


@dataclass(frozen=True)
class ReadResult:
    """A query's output, already in the format the client asked for, and its costs."""

    data: bytes
    rows_read: int
    bytes_read: int
    elapsed_s: float


class Busy(Exception):
    """Every reader stayed busy for as long as the caller would wait."""


class ChdbReaders:
    """A fixed pool of chDB sessions on one directory, one query per session at a time.

    chDB writes the output format itself (TabSeparated, JSON, Arrow, Parquet, Native...),
    byte for byte what a ClickHouse server sends. Opened in the process that opened the
    directory (chDB lets sessions of one process share it, not two processes)."""

    def __init__(self, path: Path, count: int):
        from chdb import session

        self._free: queue.Queue[_Reader] = queue.Queue()
        self._all = [_Reader(session.Session(str(path))) for _ in range(count)]
        for reader in self._all:
            self._free.put(reader)

    @contextmanager
    def _reader(self, wait_s: float) -> Iterator[_Reader]:
        try:
            reader = self._free.get(timeout=wait_s)
        except queue.Empty:
            raise Busy(f"all {len(self._all)} readers stayed busy for {wait_s:.0f} s") from None
        try:
            yield reader
        finally:
            self._free.put(reader)

    def query(
        self,
        sql: str,
        fmt: str,
        *,
        database: str = "default",
        params: Mapping[str, str] | None = None,
        wait_s: float = 30.0,
    ) -> ReadResult:
        """Run ``sql`` in ``database`` and return its output in ``fmt`` (a FORMAT
        clause in ``sql`` wins, as in ClickHouse). Raises chDB's RuntimeError, whose
        text is ClickHouse's ("Code: N. DB::Exception: ..."), or Busy."""
        with self._reader(wait_s) as reader:
            return reader.run(sql, fmt, database, dict(params or {}))

    def query_arrow(
        self, sql: str, *, database: str | None = None, wait_s: float = 30.0
    ) -> pa.Table:
        """Rows of ``sql`` (in ``database``, else wherever the reader stands) on a
        reader session: the access checks' own queries (parsing, EXPLAIN in a
        partner's database) never queue behind the sink's lock nor move its session."""
        with self._reader(wait_s) as reader:
            return reader.arrow(sql, database)

    def close(self, wait_s: float = 10.0) -> None:
        """Close each session once its query is done: closing one under a running query
        would pull the engine from under it. One still busy after ``wait_s`` is left to
        the process's exit."""
        deadline = time.monotonic() + wait_s
        for _ in self._all:
            try:
                reader = self._free.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return
            reader.session.close()  # type: ignore[attr-defined]


class _Reader:
    def __init__(self, session: object):
        self.session = session
        self.database = "default"

    def use(self, database: str) -> None:
        if database != self.database:
            name = database.replace("\\", "\\\\").replace("`", "\\`")
            self.session.query(f"USE `{name}`", "TabSeparated")  # type: ignore[attr-defined]
            self.database = database

    def arrow(self, sql: str, database: str | None) -> pa.Table:
        if database is not None:
            self.use(database)
        try:
            return self.session.query(sql, "ArrowTable")  # type: ignore[attr-defined]
        except Exception:
            self._drain()
            raise

    def run(self, sql: str, fmt: str, database: str, params: dict[str, str]) -> ReadResult:
        started = time.perf_counter()
        self.use(database)
        try:
            result = self.session.query(sql, fmt, params=params or None)  # type: ignore[attr-defined]
        except Exception:
            self._drain()
            raise
        return ReadResult(
            bytes(result.bytes()),
            int(result.rows_read()),
            int(result.bytes_read()),
            time.perf_counter() - started,
        )

    def _drain(self) -> None:
        try:  # a failed query may leave a binary output half written (see ChdbWarehouse)
            self.session.query("SELECT 1", "CSV")  # type: ignore[attr-defined]
        except Exception:
            pass
