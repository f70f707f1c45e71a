"""clickhouse-connect adapter: a ClickHouse server (or cluster) named by a URL."""

from __future__ import annotations

import pyarrow as pa

from services.runtime.errors import InfrastructureError
from services.warehouse.port import DEDUPLICATE_VIEWS


class ClickHouseServerWarehouse:
    def __init__(self, url: str):
        import clickhouse_connect

        self.description = f"ClickHouse server {url.split('@')[-1]}"
        try:
            self._client = clickhouse_connect.get_client(dsn=url)
        except Exception as exc:
            raise InfrastructureError(
                f"cannot reach the ClickHouse server of CLICKHOUSE_URL ({exc}); "
                "unset CLICKHOUSE_URL to use the embedded chDB warehouse"
            ) from exc

    def command(self, sql: str) -> None:
        self._client.command(sql)

    def query_arrow(self, sql: str, *, database: str | None = None) -> pa.Table:
        if database is not None:
            # A ClickHouse server has real users, GRANTs and row policies: give a
            # partner's analyst a server user of their own rather than this door.
            raise InfrastructureError(
                "partner-scoped queries are served by the embedded warehouse only; on a "
                "ClickHouse server create the partner's user with GRANTs on its views"
            )
        return self._client.query_arrow(sql)

    def insert_arrow(self, table: str, data: pa.Table, *, dedup_token: str | None = None) -> None:
        settings = (
            {"insert_deduplication_token": dedup_token, DEDUPLICATE_VIEWS: 1}
            if dedup_token
            else None
        )
        self._client.insert_arrow(table, data, settings=settings)

    def close(self) -> None:
        self._client.close()
