"""Opening the SQL door of a node: its readers on the embedded warehouse, its users,
its limits (the ``sql:`` section of deploy/node.yaml), its listening socket."""

from __future__ import annotations

import logging

from services.publish.clickhouse_http.auth import Gate
from services.publish.clickhouse_http.handler import SqlDoor
from services.publish.clickhouse_http.server import ClickHouseHttpServer
from services.publish.sql_access import SqlAccess
from services.publish.sql_users import UserStore
from services.runtime.config import NodeConfig
from services.runtime.errors import InfrastructureError
from services.warehouse.chdb_embedded import ChdbReaders, ChdbWarehouse
from services.warehouse.port import Warehouse
from services.warehouse.query import QueryLimits

log = logging.getLogger(__name__)


def node_limits(node: NodeConfig) -> QueryLimits:
    """Every user's ceiling (a client may ask less, never more)."""
    section = node.sql
    return QueryLimits(
        max_rows=section.max_result_rows,
        max_bytes=section.max_result_mb * 1024 * 1024,
        max_memory=section.max_memory_mb * 1024 * 1024,
        max_seconds=section.max_execution_time_s,
        max_threads=section.max_threads,
    )


class SqlService:
    """The readers and the server, started and stopped with publish."""

    def __init__(self, node: NodeConfig, readers: ChdbReaders):
        self.readers = readers
        timezone = readers.query("SELECT timezone()", "TabSeparated").data.decode().strip()
        users = UserStore(node.state_dir)
        limits = node_limits(node)
        door = SqlDoor(
            readers,
            Gate(users),
            # every statement of every user checked, on the readers: never the sink's session
            SqlAccess(readers, users, limits),
            limits,
            display_name=node.node.id,
            timezone=timezone or "UTC",
            max_query_bytes=node.sql.max_query_kb * 1024,
            per_user=max(1, node.sql.readers - 1),  # one reader stays for the others
        )
        try:
            self.server = ClickHouseHttpServer(
                door, node.sql.host, node.sql.port, max_body_bytes=node.sql.max_query_kb * 1024
            )
        except OSError as exc:
            readers.close()
            raise InfrastructureError(
                f"cannot serve ClickHouse's HTTP interface on {node.sql.host}:{node.sql.port} "
                f"({exc}); free the port or set sql.port (CITEPLUS_SQL_PORT), or "
                "sql.enabled: false"
            ) from exc
        self.url = f"http://{node.sql.host}:{self.server.port}"

    def start(self) -> SqlService:
        self.server.start()
        log.info("SQL door open (ClickHouse HTTP interface)", extra={"url": self.url})
        return self

    def stop(self) -> None:
        self.server.stop()
        self.readers.close()


def open_sql_door(node: NodeConfig, warehouse: Warehouse) -> SqlService | None:
    """The door for the embedded warehouse; None when it is off, or when the warehouse
    is a ClickHouse server (analysts then use that server's own interface)."""
    if not node.sql.enabled:
        return None
    if not isinstance(warehouse, ChdbWarehouse):
        log.info("SQL door not opened: the warehouse is a ClickHouse server; use its own")
        return None
    return SqlService(node, warehouse.readers(node.sql.readers))
