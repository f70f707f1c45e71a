"""ClickHouse's HTTP interface on the embedded warehouse: what analysts' own tools
(clickhouse-connect, the JDBC driver, Grafana, DBeaver) speak, served by publish.
Not a ClickHouse server: read queries only, no sessions, no inserts."""
