"""Entry points of publish: the service process and ``citeplus sql``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import httpx
import pyarrow as pa

from services.policy.topics import declared_topics
from services.publish.service import Beside, PublishService
from services.publish.sql_users import basic_authorization, local_credentials
from services.publish.sql_users_cli import SQL_USERS
from services.runtime.commands import Command, option
from services.runtime.config import NodeConfig, load_node_config
from services.runtime.errors import CiteplusError
from services.runtime.service_main import (
    Running,
    ServiceStart,
    StartUp,
    provisioned,
    run_service,
)
from services.warehouse.port import open_warehouse, warehouse_url
from services.warehouse.query import (
    FORMATS,
    QueryLimits,
    ensure_read_only,
    from_ipc,
    limited,
    render,
    valid_utf8,
)

log = logging.getLogger(__name__)


def serve(args: argparse.Namespace, beside: Beside | None = None) -> int:
    """Run publish until a stop signal; ``beside`` is what its composer runs in this
    process from the same warehouse (``citeplus service publish``: the federation API,
    services/node/publish_process.py)."""
    start = ServiceStart(
        "publish", Path(args.cities), provisioned(declared_topics), metrics_port=args.metrics_port
    )

    def build(up: StartUp) -> Running:
        service = PublishService(
            up.node, up.contracts, up.cities, up.metrics, instance=args.instance, beside=beside
        )
        return Running(
            run=lambda stop: 0 if service.run(stop) else 1,
            announce="publish running",
            details={
                "warehouse": service.warehouse.description,
                "sql": service.sql.url if service.sql else None,
            },
            endpoint_key="endpoint",
        )

    return run_service(start, build)


def sql_url(node: NodeConfig) -> str:
    """Where the node's SQL door (ClickHouse's HTTP interface of publish) answers."""
    host = node.sql.host if node.sql.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    return f"http://{host}:{node.sql.port}/"


def run_query(node: NodeConfig, sql: str) -> pa.Table:
    """Ask the node's warehouse: a ClickHouse server directly; with chDB, the publish
    service that owns it through its ClickHouse HTTP interface (with the credentials
    of ``local_credentials``), or the chDB directory itself when publish is not running."""
    statement = ensure_read_only(sql)
    if warehouse_url(node):
        return valid_utf8(_query_directly(node, statement))
    credentials = local_credentials(node.state_dir)
    headers = {"Authorization": basic_authorization(credentials)} if credentials else {}
    try:
        response = httpx.post(
            sql_url(node),
            params={"default_format": "ArrowStream"},
            content=statement.encode(),
            headers=headers,
            timeout=300,
        )
    except httpx.ConnectError:
        # publish is not running: whoever may open the directory is the operator.
        return valid_utf8(_query_directly(node, statement))
    if response.status_code == 401:
        raise CiteplusError(
            "the node refused these credentials: set CITEPLUS_SQL_USER and CITEPLUS_SQL_SECRET "
            "(a user of `citeplus sql-users add NAME`), or run as the node's operator "
            f"({node.state_dir / 'sql' / 'credentials'})"
        )
    if response.status_code != 200:
        raise CiteplusError(f"query refused: {response.text.strip()}")
    written = response.headers.get("X-ClickHouse-Format", "ArrowStream")
    if written != "ArrowStream":  # the analyst's FORMAT clause won, as in ClickHouse
        raise CiteplusError(
            f"the query asks for FORMAT {written}: citeplus sql writes its own formats; "
            "drop the FORMAT clause and use --format (table, csv, json, parquet)"
        )
    return valid_utf8(from_ipc(response.content))


def _query_directly(node: NodeConfig, statement: str) -> pa.Table:
    warehouse = open_warehouse(node)
    try:
        try:
            return warehouse.query_arrow(limited(statement, QueryLimits()))
        except Exception as exc:
            # A ClickHouse server user whose profile is already read-only may change no
            # setting at all; the server's own limits then apply, as for any client.
            if not warehouse_url(node) or _READ_ONLY_USER not in str(exc):
                raise
            return warehouse.query_arrow(statement)
    finally:
        warehouse.close()


_READ_ONLY_USER = "Cannot modify 'readonly' setting in readonly mode"


def sql_command(args: argparse.Namespace) -> int:
    node = load_node_config()
    if args.query:
        return _print(run_query(node, args.query), args.format, args.output)
    if args.format == "parquet" and not args.output:
        raise CiteplusError("--format parquet needs --output FILE")
    print("Cité+ SQL on the node's warehouse. End a query with ';'. Ctrl-D quits.", file=sys.stderr)
    buffer: list[str] = []
    while True:
        try:
            line = input("citeplus> " if not buffer else "      ..> ")
        except EOFError:
            print(file=sys.stderr)
            return 0
        buffer.append(line)
        if line.rstrip().endswith(";"):
            query, buffer = "\n".join(buffer), []
            try:
                _print(run_query(node, query), args.format, args.output)
            except CiteplusError as exc:
                print(f"error: {exc}", file=sys.stderr)


def _print(table: pa.Table, fmt: str, output: Path | None) -> int:
    data = render(table, fmt)
    if output:
        output.write_bytes(data)
        print(f"{table.num_rows} rows written to {output}", file=sys.stderr)
    elif fmt == "parquet":
        raise CiteplusError("--format parquet needs --output FILE")
    else:
        sys.stdout.buffer.write(data)
    return 0


SQL = Command(
    "sql",
    "query the node's warehouse (ClickHouse SQL); no query opens a prompt",
    sql_command,
    description="Run a read query on the node's warehouse (chDB or the ClickHouse server of "
    "CLICKHOUSE_URL). Tables: observations (one row per reading), energy_aggregates "
    "(use FINAL), dead_letters, observations_hourly and observations_daily (rollups: "
    "sumMerge(total), countMerge(readings), uniqMerge(entities)). With chDB the query goes "
    "to the publish service's ClickHouse HTTP interface (sql.port, default 8123), which "
    "asks for a user (citeplus sql-users): CITEPLUS_SQL_USER and CITEPLUS_SQL_SECRET, else "
    "the operator's <state>/sql/credentials. Queries run read-only, within the sql: "
    "section's limits (default 60 s and 1,000,000 rows).",
    options=(
        option("query", nargs="?", help="the query; omit it for an interactive prompt"),
        option("--format", choices=FORMATS, default="table", help="output format (default: table)"),
        option("--output", type=Path, help="write to FILE instead of standard output"),
    ),
)

COMMANDS = (SQL, SQL_USERS)
