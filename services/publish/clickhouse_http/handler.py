"""One request of ClickHouse's HTTP interface in, one response out: authenticate,
let the access rules decide what runs and with which settings
(services/publish/sql_access.py: every statement of every user, the client's
settings too), run it on a reader session, answer as a ClickHouse server would, and
audit it. No sockets here (server.py), so that it is tested as a function."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Protocol

from services.publish.clickhouse_http import protocol
from services.publish.clickhouse_http.auth import Gate
from services.publish.clickhouse_http.compression import compress_response
from services.publish.clickhouse_http.errors import (
    CANNOT_DECOMPRESS,
    TOO_MANY_SIMULTANEOUS_QUERIES,
    ClickHouseError,
    from_engine,
)
from services.publish.clickhouse_http.exchange import Request, Response
from services.publish.sql_access import AuthorizedQuery, SqlAccess, clickhouse_refusal
from services.publish.sql_guard import SqlRefused
from services.warehouse.chdb_embedded import Busy, ReadResult
from services.warehouse.query import QueryLimits

log = logging.getLogger(__name__)


class Readers(Protocol):
    def query(
        self,
        sql: str,
        fmt: str,
        *,
        database: str = "default",
        params: Mapping[str, str] | None = None,
        wait_s: float = 30.0,
    ) -> ReadResult: ...


_TEXT = "text/plain; charset=UTF-8"


def content_type(fmt: str) -> str:
    """The Content-Type ClickHouse sends for an output format."""
    name = fmt.lower()
    if name.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if name.startswith("csv"):
        return "text/csv; charset=UTF-8"
    if name.startswith("jsoneachrow") or name.startswith("jsonlines"):
        return "application/x-ndjson; charset=UTF-8"
    if name.startswith("json"):
        return "application/json; charset=UTF-8"
    if name.startswith("pretty") or name in ("vertical", "markdown"):
        return _TEXT
    return "application/octet-stream"


class SqlDoor:
    """The HTTP interface's behaviour, given its readers, users and limits."""

    def __init__(
        self,
        readers: Readers,
        gate: Gate,
        access: SqlAccess,
        limits: QueryLimits,
        *,
        display_name: str,
        timezone: str = "UTC",
        max_query_bytes: int = 1024 * 1024,
        per_user: int | None = None,
    ):
        self.readers = readers
        self.per_user = per_user  # queries one user runs at once (None: no bound)
        self._running: dict[str, int] = {}
        self._running_lock = threading.Lock()
        self.gate = gate
        self.access = access
        self.limits = limits
        self.max_query_bytes = max_query_bytes
        self.identity = {
            "X-ClickHouse-Server-Display-Name": display_name,
            "X-ClickHouse-Timezone": timezone,
        }

    def answer(self, request: Request) -> Response:
        """Health paths, the query path, or ClickHouse's 404 for anything else."""
        if request.path in ("/ping", "/replicas_status"):
            return Response(200, b"Ok.\n", {"Content-Type": _TEXT})
        if request.path != "/":
            return self.error_response(
                ClickHouseError(36, f"There is no handle {request.path[:100]}"), ""
            )
        if request.method == "GET" and "query" not in request.params:
            return Response(200, b"Ok.\n", {"Content-Type": _TEXT})
        try:
            query_id = protocol.query_id(request.params) if request.params.get("query_id") else ""
        except ClickHouseError as error:  # never echoed: it would forge headers
            return self.error_response(error, "")
        try:
            return self._query(request)
        except ClickHouseError as error:
            return self.error_response(error, query_id)

    def _query(self, request: Request) -> Response:
        user = self.gate.user(protocol.credentials(request.headers, request.params))
        with self._slot(user):
            return self._query_as(user, request)

    @contextmanager
    def _slot(self, user: str) -> Iterator[None]:
        """One of the user's ``per_user`` places, or 202 at once: the readers are
        shared by every analyst, and one user's queries must leave one free."""
        with self._running_lock:
            running = self._running.get(user, 0)
            if self.per_user is not None and running >= self.per_user:
                raise ClickHouseError(
                    TOO_MANY_SIMULTANEOUS_QUERIES,
                    f"{user} already runs {running} queries at once, the most one user may "
                    "(the node's readers are shared by every analyst); wait for one to end",
                )
            self._running[user] = running + 1
        try:
            yield
        finally:
            with self._running_lock:
                self._running[user] -= 1
                if not self._running[user]:
                    del self._running[user]

    def _query_as(self, user: str, request: Request) -> Response:
        params = request.params
        _refuse_native_compression(params)
        body = protocol.decoded_body(
            request.body, request.headers.get("Content-Encoding"), self.max_query_bytes
        )
        text = protocol.query_text(params.get("query"), body)
        query = protocol.parse(params, text, request.headers)
        started = time.perf_counter()
        authorized: AuthorizedQuery | None = None
        try:
            authorized = self._authorize(user, query)
            result = self._run(authorized, query)
        except ClickHouseError as error:
            self._audit(user, authorized, query, "refused", started, code=error.code)
            raise
        self._audit(user, authorized, query, "ok", started, result=result)
        fmt = authorized.output_format or query.default_format
        headers = {
            **self.identity,
            "Content-Type": content_type(fmt),
            "X-ClickHouse-Format": fmt,
            "X-ClickHouse-Query-Id": query.query_id,
            "X-ClickHouse-Summary": summary(result),
        }
        if authorized.ignored:
            headers["X-CitePlus-Ignored-Settings"] = ",".join(authorized.ignored)
        response = Response(200, result.data, headers)
        return compress_response(response, params, request.headers)

    def _authorize(self, user: str, query: protocol.HttpQuery) -> AuthorizedQuery:
        """What ``user`` may run of ``query``, with the client's settings vetted."""
        try:
            authorized = self.access.authorize(user, query.sql, query.database)
            return authorized.with_client_settings(query.settings)
        except SqlRefused as refused:
            raise ClickHouseError(refused.code, _message(refused)) from None
        except Busy as busy:
            raise ClickHouseError(TOO_MANY_SIMULTANEOUS_QUERIES, f"{busy}; retry later") from None

    def _run(self, authorized: AuthorizedQuery, query: protocol.HttpQuery) -> ReadResult:
        """The authorised statement on a reader, in the format asked: a FORMAT the
        analyst wrote wins over default_format, as in ClickHouse."""
        try:
            return self.readers.query(
                authorized.sql(),
                authorized.output_format or query.default_format,
                database=authorized.database or "default",
                params=query.params,
                wait_s=float(self.limits.max_seconds),
            )
        except Busy as busy:
            raise ClickHouseError(TOO_MANY_SIMULTANEOUS_QUERIES, f"{busy}; retry later") from None
        except Exception as exc:  # chDB's text is ClickHouse's, with its code
            if authorized.partner is None:
                raise from_engine(exc) from None
            # a partner's: without the "maybe you meant" hints naming other tables
            raise ClickHouseError(*_code_and_message(clickhouse_refusal(exc))) from None

    def _audit(
        self,
        user: str,
        authorized: AuthorizedQuery | None,
        query: protocol.HttpQuery,
        outcome: str,
        started: float,
        *,
        code: int | None = None,
        result: ReadResult | None = None,
    ) -> None:
        """Every query leaves a line: who, which, what it cost, how it ended."""
        extra: dict[str, object] = {
            "user": user,
            "partner": authorized.partner if authorized else None,
            "query_id": query.query_id,
            "outcome": outcome,
            "ms": round((time.perf_counter() - started) * 1000, 1),
            "query": query.sql[:500],
        }
        if code is not None:
            extra["code"] = code
        if result is not None:
            extra.update(rows_read=result.rows_read, result_bytes=len(result.data))
        log.info("SQL query", extra=extra)

    def error_response(self, error: ClickHouseError, query_id: str) -> Response:
        headers = {
            **self.identity,
            "Content-Type": _TEXT,
            "X-ClickHouse-Exception-Code": str(error.code),
        }
        if query_id:
            headers["X-ClickHouse-Query-Id"] = query_id
        if error.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="ClickHouse server", charset="UTF-8"'
        if error.status == 503:
            headers["Retry-After"] = "1"
        return Response(error.status, error.text().encode("utf-8", "replace"), headers)


def summary(result: ReadResult) -> str:
    """X-ClickHouse-Summary: ClickHouse's counters, every value a string as it sends them."""
    figures = {
        "read_rows": result.rows_read,
        "read_bytes": result.bytes_read,
        "written_rows": 0,
        "written_bytes": 0,
        "total_rows_to_read": result.rows_read,
        "result_bytes": len(result.data),
        "elapsed_ns": int(result.elapsed_s * 1e9),
    }
    return json.dumps({k: str(v) for k, v in figures.items()}, separators=(",", ":"))


def _message(refused: SqlRefused) -> str:
    """The refusal's sentence without ClickHouse's own prefix (the door adds it)."""
    return refused.message.strip().removeprefix("DB::Exception:").strip()


def _code_and_message(refused: SqlRefused) -> tuple[int, str]:
    return refused.code, _message(refused)


def _refuse_native_compression(params: Mapping[str, str]) -> None:
    """ClickHouse's own block compression (``compress=1``, ``decompress=1``, the JDBC
    driver's default) is not spoken here: say which setting turns it off."""
    for name in ("compress", "decompress"):
        if params.get(name, "0") not in ("0", "false", ""):
            raise ClickHouseError(
                CANNOT_DECOMPRESS,
                f"{name}=1 (ClickHouse's native LZ4 block compression) is not supported by "
                "this endpoint; turn it off in the client (JDBC: compress=false in the "
                "connection URL) and use HTTP compression (enable_http_compression=1)",
            )
