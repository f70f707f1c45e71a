"""Who may run which SQL on the warehouse: the check every SQL door makes.

``SqlAccess.authorize(user, sql, database)`` turns what an analyst sent into the
statement to run, the database to run it in and the settings to run it with
(``AuthorizedQuery``), or raises ``SqlRefused`` with a ClickHouse error code and a
sentence that says what to do.

ClickHouse's own parser decides, not a regular expression: the statement is first
re-written by ClickHouse (``formatQuerySingleLine``: one statement, comments
gone, names quoted its way; the analyst's text reaches it as a string literal, so
nothing in it can run), and the re-written text is what is checked and what runs.
Its syntax tree (``parseQueryToJSON``) is then walked:

- everyone: no ``INTO OUTFILE`` and no function that reads the node's files
  (``file()`` reads any file of the node, the users' secrets included, even with
  ``readonly=1``: measured with chDB 4.4); internal analysts then read anything,
  read-only (``ensure_read_only``).
- a partner's analyst (a user bound to a partner): only SELECT/WITH (or DESCRIBE
  of a view, plain SHOW TABLES); every table an unqualified name of a view of its
  database ``partner_<code>`` or a name the statement itself defines; no table
  function but numbers/zeros/values/generate_series; no dictionary, joinGet or
  file function; no SETTINGS; no name that looks like a database. Then ClickHouse's
  analyser resolves the statement in ``partner_<code>`` (``EXPLAIN QUERY TREE``)
  and every table it resolves must be one of those views: whatever the walk
  missed, the resolved names catch.

Refusals never depend on what exists outside the partner's database: a name of
another database is refused before ClickHouse looks it up, and ClickHouse's
"maybe you meant" hints are cut from errors.

The SQL door (services/publish/clickhouse_http) uses it as: ``access =
SqlAccess(readers, UserStore(state_dir), limits)`` once (its checks then run on the
door's reader sessions, never on the sink's), then per query (user already
authenticated) ``query = access.authorize(user, sql, database)
.with_client_settings(url_settings)`` and runs ``query.sql()`` in
``query.database`` with ``query.output_format`` (the FORMAT the analyst wrote,
cut from the statement) or the client's default format; ``SqlRefused.code`` is the
ClickHouse error code to answer with. ``run()`` gives the rows as Arrow, for
callers in this process.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import pyarrow as pa

from services.publish.partner_views import VIEWS, database_of
from services.publish.sql_guard import (
    ACCESS_DENIED,
    READONLY,
    SYNTAX_ERROR,
    SqlRefused,
    check_partner_tree,
    check_resolved_tree,
    client_settings,
    not_a_view,
    refuse_everyone,
    views_list,
)
from services.publish.sql_users import UserStore
from services.runtime.errors import CiteplusError
from services.warehouse.chdb_embedded import Busy
from services.warehouse.query import QueryLimits, ensure_read_only, skeleton

log = logging.getLogger(__name__)

_FORMAT = re.compile(r" FORMAT ([A-Za-z0-9_]+)$")
_CODE = re.compile(r"Code: (\d+)\.")
_HINT = re.compile(r"\s*Maybe you meant [^?]*\?\.?", re.IGNORECASE)
_DESCRIBE = re.compile(r"^DESC(?:RIBE)?(?: TABLE)? ([A-Za-z_][A-Za-z0-9_]*)$")


@dataclass(frozen=True)
class AuthorizedQuery:
    """What to run: ``statement`` (as ClickHouse re-wrote it, without its FORMAT
    clause) in ``database`` (None: the warehouse's own) with ``settings`` (limits,
    read-only last); ``output_format`` is the FORMAT the analyst wrote, which the
    door hands to the engine as the output format (the SETTINGS clause can then
    always go last); ``ignored``: client settings not applied, named back."""

    user: str
    partner: str | None
    statement: str
    database: str | None
    settings: Mapping[str, str | int] = field(default_factory=dict)
    output_format: str | None = None
    ignored: tuple[str, ...] = ()

    def with_client_settings(self, sent: Mapping[str, str]) -> AuthorizedQuery:
        """This query with the settings a client sent where they may apply (before
        the node's limits, which stay last, lowered where the client asked less);
        SqlRefused for one that may not."""
        vetted = client_settings(dict(sent), dict(self.settings), partner=bool(self.partner))
        limits: dict[str, str | int] = dict(self.settings)
        readonly = limits.pop("readonly", 1)
        limits.update(vetted.lowered)
        limits["readonly"] = readonly
        return replace(
            self, settings={**vetted.applied, **limits}, ignored=self.ignored + vetted.ignored
        )

    def sql(self) -> str:
        """The statement with its settings as a SETTINGS clause (``readonly`` last:
        once read-only, no later setting may change anything)."""
        clause = ", ".join(f"{name}={_setting(value)}" for name, value in self.settings.items())
        return f"{self.statement}\nSETTINGS {clause}" if clause else self.statement


_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def _setting(value: str | int) -> str:
    """A setting's value as ClickHouse reads it: a number as is, else a string literal
    (backslashes escaped too: a value ending in a backslash must not end the string)."""
    if isinstance(value, int) or _NUMBER.match(value):
        return str(value)
    return literal(value)


def limit_settings(limits: QueryLimits) -> dict[str, str | int]:
    return {
        "max_execution_time": limits.max_seconds,
        "max_result_rows": limits.max_rows,
        "max_result_bytes": limits.max_bytes,
        "max_memory_usage": limits.max_memory,
        **({"max_threads": limits.max_threads} if limits.max_threads else {}),
        "result_overflow_mode": "throw",
        "readonly": 1,
    }


class Engine(Protocol):
    """Where the checks run their own queries: the warehouse, or (the SQL door) its
    reader sessions, so that checking never waits on the sink's lock."""

    def query_arrow(self, sql: str, *, database: str | None = None) -> pa.Table: ...


class SqlAccess:
    """The check of one warehouse; ``users`` says which users read for a partner."""

    def __init__(self, warehouse: Engine, users: UserStore, limits: QueryLimits | None = None):
        self.warehouse = warehouse
        self.users = users
        self.settings = limit_settings(limits or QueryLimits())

    def authorize(self, user: str, sql: str, database: str | None = None) -> AuthorizedQuery:
        """The query ``user`` (already authenticated) may run, or SqlRefused."""
        partner = self.users.partner(user)
        try:
            if partner is None:
                return self._internal(user, sql, database)
            return self._partner(user, partner, sql, database)
        except SqlRefused as refused:
            log.info(
                "SQL query refused",
                extra={"user": user, "partner": partner, "code": refused.code},
            )
            raise

    def run(self, query: AuthorizedQuery) -> pa.Table:
        """Rows of an authorised query (errors as ClickHouse raised them, hints cut
        for a partner's analyst)."""
        try:
            return self.warehouse.query_arrow(query.sql(), database=query.database)
        except Exception as exc:
            if query.partner is None:
                raise
            raise clickhouse_refusal(exc) from None

    def _internal(self, user: str, sql: str, database: str | None) -> AuthorizedQuery:
        canonical = self.canonical(sql)
        tree = self.syntax_tree(canonical, required=False)
        if tree is not None:
            refuse_everyone(tree)
        bare, fmt = split_format(canonical, tree)
        try:
            # ClickHouse's parser says SELECT (even "(SELECT ...) EXCEPT ..."); for
            # the kinds it cannot write as JSON (SHOW CREATE...), the keyword check.
            is_select = tree is not None and tree.get("type") == "SelectWithUnionQuery"
            statement = bounded(bare if is_select else ensure_read_only(bare), tree)
        except CiteplusError as exc:
            raise SqlRefused(READONLY, f"{exc} (this user reads the warehouse only)") from None
        target = None if database in (None, "", "default") else database
        return AuthorizedQuery(user, None, statement, target, dict(self.settings), fmt)

    def _partner(self, user: str, partner: str, sql: str, database: str | None) -> AuthorizedQuery:
        own = database_of(partner)
        if database not in (None, "", "default", own):
            raise SqlRefused(
                ACCESS_DENIED, f"{user} reads the database {own} only (its views: {views_list()})"
            )
        canonical = self.canonical(sql)
        described_bare, described_fmt = split_format(canonical, None)
        described = _DESCRIBE.match(described_bare)
        if described:
            if described.group(1) not in VIEWS:
                raise not_a_view(described.group(1), own)
            settings = dict(self.settings)
            return AuthorizedQuery(user, partner, described_bare, own, settings, described_fmt)
        tree = self.syntax_tree(canonical, required=True)
        assert tree is not None
        refuse_everyone(tree)
        check_partner_tree(tree, own)
        bare, fmt = split_format(canonical, tree)
        if tree.get("type") != "ShowTablesQuery":
            self._check_resolved(bare, own)  # FORMAT gone: it would shape EXPLAIN's output
        statement = bounded(bare, tree)
        return AuthorizedQuery(user, partner, statement, own, dict(self.settings), fmt)

    def canonical(self, sql: str) -> str:
        """``sql`` as ClickHouse re-writes it: one statement, no comments."""
        text = sql.strip()
        if not text:
            raise SqlRefused(SYNTAX_ERROR, "empty query: send one SELECT")
        canonical = self._scalar(f"SELECT formatQuerySingleLine({literal(text)}) AS q")
        if ";" in skeleton(canonical):  # cannot happen: ClickHouse refuses several
            raise SqlRefused(SYNTAX_ERROR, "one statement at a time, please")
        return canonical

    def syntax_tree(self, canonical: str, *, required: bool) -> dict[str, Any] | None:
        """ClickHouse's syntax tree of ``canonical``; None when ClickHouse cannot
        write this kind of statement as JSON (SHOW CREATE...) and it is not required."""
        try:
            return json.loads(self._scalar(f"SELECT parseQueryToJSON({literal(canonical)}) AS q"))
        except SqlRefused as refused:
            if "JSON serialization" not in refused.message:
                raise
            if required:
                raise SqlRefused(
                    ACCESS_DENIED,
                    "a partner's analyst runs SELECT (or WITH ... SELECT), DESCRIBE of a "
                    f"view, or SHOW TABLES; its views: {views_list()}",
                ) from None
            return None

    def _check_resolved(self, canonical: str, database: str) -> None:
        try:
            plan = self.warehouse.query_arrow(f"EXPLAIN QUERY TREE {canonical}", database=database)
        except Busy:
            raise
        except Exception as exc:
            raise clickhouse_refusal(exc) from None
        check_resolved_tree("\n".join(map(str, plan.column(0).to_pylist())), database)

    def _scalar(self, sql: str) -> str:
        try:
            table = self.warehouse.query_arrow(sql)
        except Busy:
            raise
        except Exception as exc:
            raise clickhouse_refusal(exc) from None
        return str(table.column(0)[0].as_py())


def bounded(canonical: str, tree: dict[str, Any] | None) -> str:
    """``canonical``, wrapped in ``SELECT * FROM (...)`` when it is several SELECTs
    (UNION, EXCEPT, INTERSECT): a trailing SETTINGS clause binds to the last one
    only, and ClickHouse then returns the whole result past max_result_rows
    (measured with chDB 4.4: 5,001 rows under a limit of 100)."""
    if tree is None or tree.get("type") != "SelectWithUnionQuery":
        return canonical
    selects = tree.get("list_of_selects", {}).get("children", [])
    if len(selects) == 1 and selects[0].get("type") == "SelectQuery":
        return canonical
    return f"SELECT * FROM ({canonical})"


def split_format(canonical: str, tree: dict[str, Any] | None) -> tuple[str, str | None]:
    """``canonical`` without its FORMAT clause, and the format it named (None: none).

    The door hands the format to the engine as the output format (a ClickHouse
    server does the same with FORMAT and default_format), so the node's SETTINGS
    clause always ends the statement. ClickHouse writes FORMAT after the query and
    before a statement-level SETTINGS; the syntax tree says whether there is one
    (``format_ast``), so a string or alias spelled "FORMAT x" is never cut."""
    if tree is None:
        found = _FORMAT.search(canonical)
        return (canonical[: found.start()], found.group(1)) if found else (canonical, None)
    name = (tree.get("format_ast") or {}).get("name")
    if not isinstance(name, str):
        return canonical, None
    clauses = list(re.finditer(rf" FORMAT {re.escape(name)}(?= SETTINGS |$)", canonical))
    if not clauses:
        raise SqlRefused(SYNTAX_ERROR, f"write FORMAT {name} at the end of the query")
    last = clauses[-1]
    return canonical[: last.start()] + canonical[last.end() :], name


def literal(text: str) -> str:
    """``text`` as a ClickHouse string literal (backslash escapes, as it reads them)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def clickhouse_refusal(exc: Exception) -> SqlRefused:
    """ClickHouse's own error as a refusal: its code, its text without the
    "maybe you meant" hints (they name tables the caller did not write) and without
    the wrapper query this module added around the analyst's text."""
    message = str(exc)
    found = _CODE.search(message)
    code = int(found.group(1)) if found else SYNTAX_ERROR
    text = message[found.end() :] if found else message
    text = _HINT.sub("", text).strip()
    text = re.sub(r":?\s*In scope SELECT (formatQuerySingleLine|parseQueryToJSON)\(.*$", "", text)
    return SqlRefused(code, text.strip() or "refused")
