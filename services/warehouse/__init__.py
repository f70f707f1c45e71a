"""warehouse: the ClickHouse side every stage that reads or lands data shares.

``port`` (the narrow Warehouse protocol and ``open_warehouse``), its two adapters
``chdb_embedded`` and ``clickhouse_server``, ``migrations`` (versioned DDL of
deploy/clickhouse) and ``query`` (the read-only guard, result limits and output
formats of analyst queries). Publish lands data through it and federation answers
from it; neither imports the other (docs/writing-a-stage.md, "Layers").
"""
