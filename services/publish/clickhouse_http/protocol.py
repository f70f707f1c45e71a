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

from services.publish.clickhouse_http.errors import (
    BAD_ARGUMENTS,
    CANNOT_DECOMPRESS,
    READONLY,
    SETTING_CONSTRAINT_VIOLATION,
    ClickHouseError,
)
from services.publish.sql_users import Credentials, parse_basic
from services.warehouse.query import QueryLimits, skeleton

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
# Settings that shape the output or the plan, never what is read or its cost
# ceiling: passed to ClickHouse as the client asked. chDB is clickhouse-local, where
# settings naming files take any path (format_template_row, format_schema,
# output_format_schema...: measured, a template setting printed a node file): any
# setting about a file, a path, a schema or a template is never passed.
_SAFE = re.compile(
    r"^(output_format_\w+|date_time_output_format|join_use_nulls|join_algorithm|"
    r"session_timezone|use_client_time_zone|totals_mode|aggregate_functions_null_for_empty|"
    r"enable_\w*analyzer|optimize_\w+|prefer_\w+)$"
)
_FILE_LIKE = re.compile(r"schema|template|path|file|dir|url|regexp", re.IGNORECASE)
# The limits a client may lower, never raise: setting -> QueryLimits field.
_LIMITS = {
    "max_execution_time": "max_seconds",
    "max_result_rows": "max_rows",
    "max_result_bytes": "max_bytes",
}
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
_FORMAT_CLAUSE = re.compile(r"\bFORMAT\s+([A-Za-z][A-Za-z0-9_]*)\b", re.IGNORECASE)
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


@dataclass(frozen=True)
class HttpQuery:
    """One request of the HTTP interface, decoded."""

    sql: str
    database: str
    default_format: str
    query_id: str
    settings: dict[str, str] = field(default_factory=dict)  # applied, as the client asked
    ignored: tuple[str, ...] = ()  # accepted and not applied (named in a response header)
    params: dict[str, str] = field(default_factory=dict)  # {name:Type} query parameters
    limits: QueryLimits = field(default_factory=QueryLimits)


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

            data = lz4.frame.decompress(body)
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


def _inflate(inflater: zlib._Decompress, body: bytes, limit: int) -> bytes:
    data = inflater.decompress(body, limit + 1)
    if len(data) <= limit and not inflater.eof:
        raise zlib.error("truncated stream")
    return data


def query_text(url_query: str | None, body: bytes) -> str:
    """The URL's ``query`` then the body on the next line, as ClickHouse joins them
    (a client puts the statement in one and the data, or its end, in the other)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ClickHouseError(BAD_ARGUMENTS, "the query is not UTF-8 text") from exc
    parts = [part for part in (url_query or "", text) if part.strip()]
    if not parts:
        raise ClickHouseError(BAD_ARGUMENTS, "empty query: send it in `query` or the body")
    return "\n".join(parts)


def output_format(sql: str, default: str) -> str:
    """The format ClickHouse answers in: the query's FORMAT clause, else ``default``."""
    try:
        code = skeleton(sql)
    except Exception:
        return default
    found = _FORMAT_CLAUSE.findall(code)
    return found[-1] if found else default


def parse(
    params: Mapping[str, str],
    sql: str,
    limits: QueryLimits,
    headers: Mapping[str, str] | None = None,
) -> HttpQuery:
    """The request's query and settings, with the user's ``limits`` lowered where the
    client asks less; raising one, or leaving read-only mode, is refused (452, 164).
    The JDBC driver names the format and the database in headers
    (X-ClickHouse-Format, X-ClickHouse-Database) rather than parameters."""
    headers = headers or {}
    settings: dict[str, str] = {}
    ignored: list[str] = []
    asked: dict[str, int] = {}
    query_params: dict[str, str] = {}
    for name, value in params.items():
        if name.startswith("param_"):
            query_params[name[len("param_") :]] = value
        elif name in TRANSPORT:
            continue
        elif name == "readonly":
            _check_readonly(value)
        elif name in _LIMITS:
            asked[name] = _whole(name, value)
        elif _SAFE.match(name) and _SETTING_NAME.match(name) and not _FILE_LIKE.search(name):
            settings[name] = value
        else:
            ignored.append(name)
    return HttpQuery(
        sql=sql,
        database=params.get("database") or headers.get("X-ClickHouse-Database") or "default",
        default_format=params.get("default_format")
        or headers.get("X-ClickHouse-Format")
        or DEFAULT_FORMAT,
        query_id=params.get("query_id") or str(uuid.uuid4()),
        settings=settings,
        ignored=tuple(sorted(ignored)),
        params=query_params,
        limits=_lowered(limits, asked),
    )


def _check_readonly(value: str) -> None:
    if value.strip() not in ("1", "2"):
        raise ClickHouseError(
            READONLY,
            f"readonly={value} asked, but this endpoint only reads: send readonly=1 or omit it",
        )


def _whole(name: str, value: str) -> int:
    try:
        number = float(value)
    except ValueError:
        raise ClickHouseError(BAD_ARGUMENTS, f"{name}={value!r} is not a number") from None
    return int(number)


def _lowered(limits: QueryLimits, asked: Mapping[str, int]) -> QueryLimits:
    values = {}
    for setting, value in asked.items():
        attribute = _LIMITS[setting]
        ceiling = getattr(limits, attribute)
        if value == 0 or value > ceiling:  # 0 means "no limit" to ClickHouse
            raise ClickHouseError(
                SETTING_CONSTRAINT_VIOLATION,
                f"Setting {setting} shouldn't be greater than {ceiling} for this user "
                f"(asked {value}); ask for less or omit it",
            )
        values[attribute] = value
    return QueryLimits(**{**limits.__dict__, **values})


def settings_clause(query: HttpQuery) -> str:
    """The client's safe settings then the user's limits, read-only last (once
    read-only, a query may change no further setting)."""
    pairs = [f"{name}={_literal(value)}" for name, value in query.settings.items()]
    limits = query.limits.settings().removeprefix("SETTINGS ")
    return "SETTINGS " + ", ".join([*pairs, limits])


def _literal(value: str) -> str:
    if _NUMBER.match(value.strip()):
        return value.strip()
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
