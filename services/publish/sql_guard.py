"""Pure checks of ClickHouse's own syntax and query trees: what a statement may name.

sql_access.py asks ClickHouse for the trees (``parseQueryToJSON`` before anything
is resolved, ``EXPLAIN QUERY TREE`` in the partner's database after) and these
functions read them. Kept apart and free of the warehouse so that each rule is
tested on the trees ClickHouse really produces.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from services.publish.partner_views import VIEWS

SYNTAX_ERROR = 62
READONLY = 164
ACCESS_DENIED = 497

# Scalar functions that reach outside the rows a query names: file() reads any file
# of the node even with readonly=1 (measured with chDB 4.4); the models' files too.
FILE_FUNCTIONS = frozenset({"file", "catboostevaluate", "naivebayesclassifier"})
# ... and, for a partner's analyst, those that read other tables by a name in a
# string (dictionaries, Join tables, columns of any table), the node's disks and
# configuration, or hold the warehouse's lock.
PARTNER_FUNCTIONS = FILE_FUNCTIONS | frozenset(
    {
        "joinget",
        "joingetornull",
        "hascolumnintable",
        "getmacro",
        "filesystemavailable",
        "filesystemcapacity",
        "filesystemunreserved",
        "generateserialid",
        "showcertificate",
        "getserversetting",
        "getmaxtablenamelengthfordatabase",  # fails for a missing database: an oracle
        "pgtableisvisible",
        "pg_table_is_visible",
        "sleep",
        "sleepeachrow",
        # the node's machine: introspection (on in chDB) prints install paths and
        # memory addresses; its host name and kernel are the operator's business
        "addresstoline",
        "addresstolinewithinlines",
        "addresstosymbol",
        "hostname",
        "fqdn",
        "fullhostname",
        "getoskernelversion",
    }
)
PARTNER_TABLE_FUNCTIONS = frozenset(
    {"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateseries", "values"}
)
# system.one: what ClickHouse itself reads for a SELECT without FROM; system.settings:
# what clickhouse-connect reads when it connects (setting names and values, no data).
SYSTEM_TABLES = frozenset({"system.one", "system.settings"})
_RESERVED = re.compile(r"^(default|system|information_schema|partner_.*)$", re.IGNORECASE)
_SHOW_KEYS = {"type", "like", "is_outfile_append", "is_outfile_truncate"}
_STATEMENTS = ("SelectWithUnionQuery", "SelectIntersectExceptQuery", "ShowTablesQuery")


class SqlRefused(Exception):
    """A statement not run: ``code`` is ClickHouse's error code for it."""

    def __init__(self, code: int, message: str):
        super().__init__(f"Code: {code}. {message}")
        self.code = code
        self.message = message


def views_list() -> str:
    return ", ".join(VIEWS)


def not_a_view(name: str, database: str) -> SqlRefused:
    """One answer for any name outside the partner's views, existing or not."""
    return SqlRefused(
        ACCESS_DENIED,
        f"{name!r} is not one of the views of {database}: read {views_list()} by their "
        "unqualified names (SELECT * FROM datasets lists what they hold)",
    )


def nodes(tree: Any) -> Iterator[dict[str, Any]]:
    """Every node of a syntax tree, depth first."""
    if isinstance(tree, dict):
        yield tree
        for value in tree.values():
            yield from nodes(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from nodes(value)


def refuse_everyone(tree: dict[str, Any]) -> None:
    """What no analyst may run, internal or partner: writes to the node's disk and
    reads of its files."""
    for node in nodes(tree):
        if "out_file" in node:
            raise SqlRefused(
                ACCESS_DENIED, "INTO OUTFILE writes on the node: use citeplus sql --output FILE"
            )
        if node.get("type") == "Function" and str(node.get("name", "")).lower() in FILE_FUNCTIONS:
            raise SqlRefused(
                ACCESS_DENIED, f"{node['name']}() reads the node's files; query the warehouse"
            )


def check_partner_tree(tree: dict[str, Any], database: str) -> None:
    """Refuse, before ClickHouse resolves anything, what a partner's statement may
    not name. Raises SqlRefused; returns when the statement may go on to be resolved."""
    kind = tree.get("type")
    if kind not in _STATEMENTS:
        raise SqlRefused(
            ACCESS_DENIED,
            "a partner's analyst runs SELECT (or WITH ... SELECT), DESCRIBE of a view, or "
            f"SHOW TABLES; its views: {views_list()}",
        )
    if kind == "ShowTablesQuery" and set(tree) - _SHOW_KEYS - {"is_into_outfile_with_stdout"}:
        raise SqlRefused(ACCESS_DENIED, f"SHOW TABLES lists the views of {database} only")
    defined = _defined_names(tree)
    for node in nodes(tree):
        _check_node(node, defined, database)


def _defined_names(tree: dict[str, Any]) -> set[str]:
    """Names the statement defines (WITH names, aliases) or reads unqualified."""
    names = set(VIEWS)
    for node in nodes(tree):
        for key in ("alias", "name"):
            value = node.get(key)
            if not isinstance(value, str):
                continue
            if key == "alias" or node.get("type") in ("WithElement", "TableIdentifier"):
                _refuse_reserved(value)
                names.add(value)
    return names


def _refuse_reserved(name: str) -> None:
    """A name spelled like a database is refused whether that database exists or
    not: the answer must not tell a partner which databases exist."""
    if _RESERVED.match(name):
        raise SqlRefused(
            ACCESS_DENIED,
            f"{name!r} names a database; a partner's analyst reads its views by their "
            "unqualified names",
        )


def _check_node(node: dict[str, Any], defined: set[str], database: str) -> None:
    kind = node.get("type")
    if kind == "SetQuery" or (kind is not None and "settings" in node):
        raise SqlRefused(
            READONLY, "settings are fixed for a partner's analyst (limits are the node's)"
        )
    if kind == "QueryParameter" and str(node.get("param_type", "")).endswith("Identifier"):
        # {t:Identifier} becomes a name only when the query runs, after these checks.
        raise SqlRefused(ACCESS_DENIED, "a name may not come from a query parameter")
    if kind in ("TableIdentifier", "Identifier"):
        _check_name(node, kind == "TableIdentifier", defined, database)
    elif kind == "TableExpression" and "table_function" in node:
        _check_table_function(str(node["table_function"].get("name", "")))
    elif kind == "Function":
        _check_function(str(node.get("name", "")))


def _check_name(node: dict[str, Any], is_table: bool, defined: set[str], database: str) -> None:
    """A table: one unqualified name the statement may read. A column: if qualified,
    by a table or alias of the statement, never by a database."""
    parts = node.get("name_parts") or [node.get("name", "")]
    if is_table and ".".join(map(str, parts)) in SYSTEM_TABLES:
        return
    if is_table and (len(parts) != 1 or parts[0] not in defined):
        raise not_a_view(str(node.get("name")), database)
    _refuse_reserved(str(parts[0]))
    if len(parts) > 1 and parts[0] not in defined:
        raise not_a_view(str(node.get("name")), database)


def _check_table_function(name: str) -> None:
    if name.lower() not in PARTNER_TABLE_FUNCTIONS:
        raise SqlRefused(
            ACCESS_DENIED,
            f"table function {name}() is not available to a partner's analyst "
            f"(only {', '.join(sorted(PARTNER_TABLE_FUNCTIONS))})",
        )


def _check_function(name: str) -> None:
    lowered = name.lower()
    if lowered.startswith("dict") or lowered in PARTNER_FUNCTIONS:
        raise SqlRefused(
            ACCESS_DENIED,
            f"function {name}() reads outside the partner's views; it is not available",
        )


_TABLE = re.compile(r"\btable_name: ([^,\n]*)")
_TABLE_FUNCTION = re.compile(r"\btable_function_name: ([^,\n]*)")
_FUNCTION = re.compile(r"\bfunction_name: ([^,\n]*)")


def check_resolved_tree(text: str, database: str) -> None:
    """Every table ClickHouse's analyser resolved (``EXPLAIN QUERY TREE`` in the
    partner's database) must be a view of that database.

    The text prints names raw, so an alias may forge lines; forged text can only add
    names to check, never hide the line of a real table: each real table's name is
    read too.
    """
    allowed = {f"{database}.{view}" for view in VIEWS} | SYSTEM_TABLES
    for name in _TABLE.findall(text):
        if name.strip() not in allowed:
            raise not_a_view(name.strip(), database)
    for name in _TABLE_FUNCTION.findall(text):
        if name.strip().lower() not in PARTNER_TABLE_FUNCTIONS:
            raise SqlRefused(ACCESS_DENIED, f"table function {name.strip()}() is not available")
    for name in _FUNCTION.findall(text):
        _check_function(name.strip())


# Settings a partner's client may send (formats of the answer, its time zone): none
# widens what it reads or what a query may cost.
PARTNER_SETTING_PREFIXES = ("output_format_", "date_time_output_format", "session_timezone")
PARTNER_SETTINGS = frozenset(
    {
        "date_time_input_format",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "wait_end_of_query",
        "enable_http_compression",
        "http_zlib_compression_level",
        "max_block_size",
        "join_use_nulls",
        "extremes",
    }
)
# ... and an internal analyst's too: settings of the plan, never of what is read.
INTERNAL_SETTINGS = re.compile(
    r"^(join_algorithm|use_client_time_zone|totals_mode|aggregate_functions_null_for_empty|"
    r"enable_\w*analyzer|optimize_\w+|prefer_\w+)$"
)
# chDB is clickhouse-local: a setting naming a file takes any path of the node
# (format_template_row printed a node file, output_format_schema wrote one:
# measured). Such a setting never reaches the engine, for any user.
FILE_LIKE = re.compile(r"schema|template|path|file|dir|url|regexp", re.IGNORECASE)
# The node's limits: a client may ask less, never more (0 is "no limit" to ClickHouse).
LIMITS = ("max_execution_time", "max_result_rows", "max_result_bytes", "max_memory_usage")
SETTING_CONSTRAINT_VIOLATION = 452
BAD_ARGUMENTS = 36
_SETTING = re.compile(r"^[a-z_][a-z0-9_]{0,127}$")


@dataclass(frozen=True)
class ClientSettings:
    """What became of the settings a client sent."""

    applied: dict[str, str]  # passed to ClickHouse before the node's limits
    lowered: dict[str, int]  # limits the client asked lower
    ignored: tuple[str, ...]  # neither applied nor harmful: named back to the client


def client_settings(
    sent: dict[str, str], fixed: dict[str, str | int], *, partner: bool
) -> ClientSettings:
    """Vet the settings a client sent (URL parameters of an HTTP door).

    Limits may be lowered, never raised or lifted (452); ``readonly`` stays 1
    (1 or 2 asked: already stricter; anything else 164); a setting naming a file,
    path, schema or template is refused (497). A partner's client may set only
    answer-shaping settings (anything else: 164); an internal analyst's may also
    shape the plan, and other settings are not applied and named back (``ignored``),
    as tools send settings of their own.
    """
    applied: dict[str, str] = {}
    lowered: dict[str, int] = {}
    ignored: list[str] = []
    for name, value in sent.items():
        if not _SETTING.match(name):
            raise SqlRefused(115, f"unknown setting {name[:80]!r}")
        if FILE_LIKE.search(name):
            raise SqlRefused(
                ACCESS_DENIED,
                f"setting {name} names a file, path, schema or template of the node: "
                "not available through the SQL door",
            )
        if name in LIMITS or name == "max_threads":
            lowered[name] = _lower(name, value, _ceiling(name, fixed))
        elif name in fixed or name == "readonly":
            _same_as_fixed(name, value, fixed)
        elif name in PARTNER_SETTINGS or name.startswith(PARTNER_SETTING_PREFIXES):
            applied[name] = value
        elif partner:
            raise SqlRefused(READONLY, f"setting {name} is not available to a partner's analyst")
        elif INTERNAL_SETTINGS.match(name):
            applied[name] = value
        else:
            ignored.append(name)
    return ClientSettings(applied, lowered, tuple(sorted(ignored)))


def _ceiling(name: str, fixed: dict[str, str | int]) -> int:
    if name == "max_threads":  # not fixed by the node: one per core
        return int(fixed.get(name) or os.cpu_count() or 1)
    return int(fixed[name])


def _lower(name: str, value: str, ceiling: int) -> int:
    try:
        asked = int(float(value))
    except ValueError:
        raise SqlRefused(BAD_ARGUMENTS, f"{name}={value[:40]!r} is not a number") from None
    if asked <= 0 or asked > ceiling:  # 0 means "no limit" to ClickHouse
        raise SqlRefused(
            SETTING_CONSTRAINT_VIOLATION,
            f"Setting {name} shouldn't be greater than {ceiling} for this user (asked "
            f"{value[:40]}); ask for less or omit it",
        )
    return asked


def _same_as_fixed(name: str, value: str, fixed: dict[str, str | int]) -> None:
    if name == "readonly":
        if value.strip() not in ("1", "2"):
            raise SqlRefused(
                READONLY,
                f"readonly={value[:40]} asked, but this door only reads: send readonly=1 "
                "or omit it",
            )
        return
    if str(fixed.get(name)) != value.strip().strip("'"):
        raise SqlRefused(READONLY, f"setting {name} is fixed by the node ({fixed.get(name)})")
