"""The warehouse port: what the rest of Cité+ needs from ClickHouse.

Two adapters run the same DDL and SQL: chDB (the ClickHouse engine in this
process, on-disk tables under the node's state directory, the default) and a
ClickHouse server through clickhouse-connect. With chDB only one process may
open the data directory, so the publish service owns it and answers queries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import pyarrow as pa

from services.runtime.config import NodeConfig, load_node_config

# An insert with a deduplication token also asks the materialised views' tables to
# drop a retried insert's blocks (with their own window, deploy/clickhouse/
# 019_view_deduplication.sql): else the rollups count an insert retried as is twice.
# On by default in recent ClickHouse; both adapters send it for servers where it is off.
DEDUPLICATE_VIEWS = "deduplicate_blocks_in_dependent_materialized_views"


class Warehouse(Protocol):
    """Narrow on purpose: DDL, queries to Arrow, Arrow inserts with a dedup token."""

    description: str

    def command(self, sql: str) -> None: ...

    def query_arrow(self, sql: str, *, database: str | None = None) -> pa.Table:
        """Rows of ``sql``; unqualified names resolve in ``database`` (None: the
        warehouse's own, ``default``)."""
        ...

    def insert_arrow(
        self, table: str, data: pa.Table, *, dedup_token: str | None = None
    ) -> None: ...

    def close(self) -> None: ...


def warehouse_url(node: NodeConfig | None = None) -> str | None:
    """A ClickHouse server to use instead of chDB, if one is configured."""
    return (node or load_node_config()).warehouse.url or None


def open_warehouse(node: NodeConfig, *, path: Path | None = None) -> Warehouse:
    """The node's warehouse: a ClickHouse server when CLICKHOUSE_URL names one, else chDB."""
    url = warehouse_url(node)
    if url:
        # Each adapter imported only when chosen: clickhouse-connect is optional, chDB heavy.
        from services.warehouse.clickhouse_server import ClickHouseServerWarehouse

        return ClickHouseServerWarehouse(url)
    from services.warehouse.chdb_embedded import ChdbWarehouse

    return ChdbWarehouse(path or node.state_dir / "warehouse")
