"""Reading a ClickHouse HTTP request: the query text, its format, the settings and
the credentials, as clickhouse-connect, the JDBC driver, Grafana and DBeaver send
them. Pure functions, no I/O: the handler decides, the server moves bytes."""

from __future__ import annotations

import gzip
import re
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.publish.clickhouse_http.errors import (
    BAD_ARGUMENTS,
    CANNOT_DECOMPRESS,
    READONLY,
    ClickHouseError,
)
from services.publish.sql_users import Credentials, parse_basic

DEFAULT_FORMAT = "TabSeparated"

# Parameters of the HTTP interface itself, not query settings: what the server
# does with each is in docs/runbook.md (most are about transport and need nothing).
TRANSPORT = frozenset(
    {
        "query",
        "database",
        "default_format",
        "query_id",
        "user",
        "password",
        "quota_key",
        "session_id",
        "session_timeout",
        "session_check",
        "compress",
        "decompress",
        "buffer_size",
        "wait_end_of_query",
        "enable_http_compression",
        "http_zlib_compression_level",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "http_write_exception_in_output_format",
        "http_response_headers",
        "client_protocol_version",
        "cancel_http_readonly_queries_on_client_close",
        "add_http_cors_header",
        "role",
        "extremes",
    }
)


@dataclass(frozen=True)
class HttpQuery:
    """One request of the HTTP interface, decoded. ``settings`` are the client's as
    sent: services/publish/sql_access.py vets them (AuthorizedQuery.with_client_settings)."""

    sql: str
    database: str
    default_format: str
    query_id: str
    settings: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)  # {name:Type} query parameters


def credentials(headers: Mapping[str, str], params: Mapping[str, str]) -> Credentials | None:
    """X-ClickHouse-User/-Key (clickhouse-connect, JDBC), else Basic (Grafana, citeplus
    sql), else ``user``/``password`` URL parameters (curl examples of ClickHouse's docs)."""
    user = headers.get("X-ClickHouse-User")
    if user:
        return Credentials(user, headers.get("X-ClickHouse-Key", ""))
    basic = parse_basic(headers.get("Authorization"))
    if basic:
        return basic
    if params.get("user"):
        return Credentials(params["user"], params.get("password", ""))
    return None


def decoded_body(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The request body without its Content-Encoding, at most ``limit`` bytes once
    inflated (a small gzip bomb must not fill the node's memory)."""
    kind = (encoding or "identity").strip().lower()
    try:
        if kind in ("", "identity"):
            data = body
        elif kind in ("gzip", "x-gzip"):
            data = _inflate(zlib.decompressobj(16 + zlib.MAX_WBITS), body, limit)
        elif kind == "deflate":
            data = _inflate(zlib.decompressobj(), body, limit)
        elif kind == "lz4":
            import lz4.frame

            data = _inflate(lz4.frame.LZ4FrameDecompressor(), body, limit)
        else:
            raise ClickHouseError(
                CANNOT_DECOMPRESS,
                f"Content-Encoding {kind!r} is not supported here; send gzip, deflate, "
                "lz4 or no compression",
            )
    except (zlib.error, gzip.BadGzipFile, RuntimeError, EOFError) as exc:
        raise ClickHouseError(CANNOT_DECOMPRESS, f"cannot decompress the body ({exc})") from exc
    if len(data) > limit:
        raise ClickHouseError(BAD_ARGUMENTS, f"the query is longer than {limit} bytes")
    return data


def _inflate(inflater: Any, body: bytes, limit: int) -> bytes:
    """At most ``limit`` + 1 bytes inflated (zlib or LZ4 frame): a bomb is refused
    having cost that much memory, never its inflated size."""
    data = inflater.decompress(body, limit + 1)
    if len(data) <= limit and not inflater.eof:
        raise zlib.error("truncated stream")
    if len(data) <= limit and inflater.unused_data:  # a second member or frame
        raise zlib.error("data after the end of the compressed stream; send one stream")
    return data


_QUERY_ID = re.compile(r"^[\x21-\x7e]{1,256}$")


def query_id(params: Mapping[str, str]) -> str:
    """The client's query_id (echoed in X-ClickHouse-Query-Id), or a fresh UUID. Only
    printable ASCII without spaces, at most 256 characters: a CR LF in it would add
    headers of the client's choice to the answer."""
    asked = params.get("query_id")
    if not asked:
        return str(uuid.uuid4())
    if not _QUERY_ID.match(asked):
        raise ClickHouseError(
            BAD_ARGUMENTS,
            "query_id must be 1 to 256 printable ASCII characters without spaces "
            "(letters, digits, punctuation); omit it to get a generated one",
        )
    return asked


def query_text(url_query: str | None, body: bytes) -> str:
    """The URL's ``query`` then the body on the next line, as ClickHouse joins them
    (a client puts the statement in one and the data, or its end, in the other)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        head = body[:64].decode("utf-8", "replace").lstrip().upper()
        if url_query or head.startswith("INSERT"):  # a client's insert: binary rows
            raise ClickHouseError(
                READONLY,
                "the body holds binary data, not a query: this endpoint runs read queries "
                "only (the pipeline alone writes the warehouse)",
            ) from exc
        raise ClickHouseError(BAD_ARGUMENTS, "the query is not UTF-8 text") from exc
    parts = [part for part in (url_query or "", text) if part.strip()]
    if not parts:
        raise ClickHouseError(BAD_ARGUMENTS, "empty query: send it in `query` or the body")
    return "\n".join(parts)


def parse(
    params: Mapping[str, str], sql: str, headers: Mapping[str, str] | None = None
) -> HttpQuery:
    """The request's query, its transport parameters, its query parameters and the
    settings it sends. The JDBC driver names the format and the database in headers
    (X-ClickHouse-Format, X-ClickHouse-Database) rather than parameters."""
    headers = headers or {}
    settings: dict[str, str] = {}
    query_params: dict[str, str] = {}
    for name, value in params.items():
        if name.startswith("param_"):
            query_params[name[len("param_") :]] = value
        elif name not in TRANSPORT:
            settings[name] = value
    return HttpQuery(
        sql=sql,
        database=params.get("database") or headers.get("X-ClickHouse-Database") or "default",
        default_format=params.get("default_format")
        or headers.get("X-ClickHouse-Format")
        or DEFAULT_FORMAT,
        query_id=query_id(params),
        settings=settings,
        params=query_params,
    )
