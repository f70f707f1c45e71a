"""chDB adapter: the real ClickHouse engine in this process, tables on disk."""

from __future__ import annotations

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
        self._lock = threading.Lock()
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

    def query_arrow(self, sql: str) -> pa.Table:
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
            self._session.close()
