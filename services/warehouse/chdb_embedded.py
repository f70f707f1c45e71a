"""chDB adapter: the real ClickHouse engine in this process, tables on disk."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pyarrow as pa

from services.runtime.errors import InfrastructureError


class ChdbWarehouse:
    """One chDB session per process; calls are serialised (the session is not thread-safe)."""

    def __init__(self, path: Path):
        from chdb import session

        path.mkdir(parents=True, exist_ok=True)
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
        settings = f" SETTINGS insert_deduplication_token='{dedup_token}'" if dedup_token else ""
        columns = ", ".join(f"`{name}`" for name in data.column_names)
        rows = data  # noqa: F841 - read by chDB's Python() table function from this frame
        with self._lock:
            self._session.query(
                f"INSERT INTO {table} ({columns}){settings} SELECT {columns} FROM Python(rows)"
            )

    def close(self) -> None:
        with self._lock:
            if self._scoped is not None:
                self._scoped.close()  # type: ignore[attr-defined]
            self._session.close()


_DATABASE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
