"""The cluster DDL is generated from the single-node migrations, never written by hand.

The committed files of deploy/clickhouse/cluster/ must equal a fresh generation;
every single-node table must have a Replicated local table and a Distributed
table with the same columns; views must work shard-locally; every generated
statement must parse in ClickHouse (chDB's parser); and the single-node DDL
itself must apply to chDB.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.publish import cluster_ddl
from services.publish.cluster_ddl import (
    CLUSTER_DIR,
    LOCAL_SUFFIX,
    ClusterDDLError,
    generate,
    render_all,
    stale,
)
from services.warehouse.chdb_embedded import ChdbWarehouse
from services.warehouse.migrations import (
    DDL_DIR,
    Migration,
    applied_versions,
    load_migrations,
    migrate,
)

_CREATE_TABLE = re.compile(r"^CREATE TABLE (?:IF NOT EXISTS )?(\w+)", re.I)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbWarehouse]:
    """chDB with the single-node DDL applied; one chDB path per process, closed at the end."""
    store = ChdbWarehouse(tmp_path_factory.mktemp("chdb") / "warehouse")
    try:
        migrate(store)
        yield store
    finally:
        store.close()


def single_node_tables() -> dict[str, str]:
    """Table -> its CREATE statement, in the single-node DDL."""
    tables = {}
    for migration in load_migrations(DDL_DIR):
        for statement in migration.statements:
            match = _CREATE_TABLE.match(statement)
            if match:
                tables[match.group(1)] = statement
    return tables


def cluster_statements() -> list[cluster_ddl.ClusterStatement]:
    return [s for m in generate() for s in m.statements]


def columns_of(statement: str) -> list[str]:
    """The column list of a CREATE TABLE, whitespace-normalised, one entry per line."""
    body = statement[statement.index("(") + 1 : statement.rindex("ENGINE")]
    body = body[: body.rindex(")")]
    return [" ".join(line.split()) for line in body.strip().splitlines() if line.strip()]


def sql_literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# -- generation ---------------------------------------------------------------------


def test_committed_cluster_ddl_is_up_to_date() -> None:
    assert stale() == [], (
        "deploy/clickhouse/cluster/ differs from a fresh generation: run "
        "`citeplus warehouse ddl --cluster --write` (or python -m services.publish.cluster_ddl "
        "--cluster --write) and commit the result"
    )


def test_cluster_files_mirror_the_single_node_migrations() -> None:
    single = load_migrations(DDL_DIR)
    cluster = load_migrations(CLUSTER_DIR)
    assert [(m.version, m.name) for m in cluster] == [(m.version, m.name) for m in single]
    for path in CLUSTER_DIR.glob("*.sql"):
        assert path.read_text(encoding="utf-8").startswith("-- GENERATED from deploy/clickhouse/")


def test_generation_is_deterministic() -> None:
    assert render_all() == render_all()


def test_every_table_has_a_replicated_local_table_and_a_distributed_table() -> None:
    statements = cluster_statements()
    tables = single_node_tables()
    assert tables, "the single-node DDL creates no table?"
    for name, source in tables.items():
        local = [s.sql for s in statements if s.kind == "local" and s.table == name]
        distributed = [s.sql for s in statements if s.kind == "distributed" and s.table == name]
        assert len(local) == 1 and len(distributed) == 1, name
        engine = re.search(r"ENGINE\s*=\s*(\w+)", source).group(1)
        assert f"ENGINE = Replicated{engine}(" in local[0], name
        assert f"'/clickhouse/tables/{{shard}}/{{database}}/{name}{LOCAL_SUFFIX}'" in local[0]
        assert "'{replica}'" in local[0]
        assert f"{name}{LOCAL_SUFFIX} ON CLUSTER '{{cluster}}'" in local[0]
        # Same columns, ordering, partitioning as on one server.
        assert columns_of(local[0]) == columns_of(source), name
        for clause in ("ORDER BY", "PARTITION BY", "TTL"):
            wanted = re.search(rf"^{clause} .*$", source, re.M)
            if wanted:
                assert wanted.group(0) in local[0], (name, clause)
        assert "non_replicated_deduplication_window" not in local[0]
        if "non_replicated_deduplication_window" in source:
            assert "replicated_deduplication_window" in local[0]
        # The Distributed table keeps the single-node name, so queries do not change.
        assert distributed[0].startswith(f"CREATE TABLE IF NOT EXISTS {name} ON CLUSTER")
        assert f"AS {name}{LOCAL_SUFFIX}" in distributed[0]
        assert (
            f"Distributed('{{cluster}}', currentDatabase(), {name}{LOCAL_SUFFIX}"
            in (distributed[0])
        )


def test_tables_written_by_services_have_a_deterministic_sharding_key() -> None:
    statements = cluster_statements()
    targets = {s.table for s in statements if s.kind == "view"}
    for s in statements:
        if s.kind != "distributed":
            continue
        if s.table in targets:
            continue  # filled shard-locally by a materialised view
        key = cluster_ddl.SHARDING_KEYS[s.table]
        assert s.sql.rstrip().endswith(f", {key})")
        assert "rand" not in key.lower(), "a retried insert must reach the same shard"


def test_sharding_keys_name_only_tables_of_the_ddl() -> None:
    assert set(cluster_ddl.SHARDING_KEYS) <= set(single_node_tables())


def test_materialised_views_read_and_write_local_tables() -> None:
    views = [s for s in cluster_statements() if s.kind == "view"]
    assert views
    tables = single_node_tables()
    for view in views:
        assert f"TO {view.table}{LOCAL_SUFFIX} AS" in view.sql
        for name in re.findall(r"\b(?:FROM|JOIN)\s+(\w+)", view.sql, re.I):
            assert name.endswith(LOCAL_SUFFIX) and name[: -len(LOCAL_SUFFIX)] in tables


def test_every_generated_statement_parses(warehouse: ChdbWarehouse) -> None:
    for statement in cluster_statements():
        formatted = warehouse.query_arrow(f"SELECT formatQuery({sql_literal(statement.sql)}) AS q")
        assert formatted.column("q")[0].as_py().startswith(("CREATE", "ALTER", "DROP", "INSERT"))


# -- translation rules on made-up migrations -------------------------------------------------


def made_up(*statements: str) -> list[Migration]:
    return [Migration(1, "made_up", tuple(statements))]


TABLE = (
    "CREATE TABLE IF NOT EXISTS observations (city String, entity String, v Float64) "
    "ENGINE = MergeTree ORDER BY (city, entity)"
)


def test_alter_column_reaches_both_tables_and_storage_changes_only_the_local_one() -> None:
    migrations = made_up(
        TABLE,
        "ALTER TABLE observations ADD COLUMN IF NOT EXISTS unit String DEFAULT '', "
        "MODIFY TTL toDate('2030-01-01')",
    )
    alters = [s.sql for m in generate(migrations) for s in m.statements if s.kind == "alter"]
    assert alters[0].startswith("ALTER TABLE observations_local ON CLUSTER '{cluster}'")
    assert "ADD COLUMN" in alters[0] and "MODIFY TTL" in alters[0]
    assert alters[1].startswith("ALTER TABLE observations ON CLUSTER '{cluster}'")
    assert "ADD COLUMN" in alters[1] and "TTL" not in alters[1]


def test_drop_table_drops_both() -> None:
    migrations = made_up(TABLE, "DROP TABLE IF EXISTS observations")
    drops = [s.sql for m in generate(migrations) for s in m.statements if s.kind == "drop"]
    assert drops == [
        "DROP TABLE IF EXISTS observations ON CLUSTER '{cluster}' SYNC",
        "DROP TABLE IF EXISTS observations_local ON CLUSTER '{cluster}' SYNC",
    ]


def test_a_backfill_runs_once_through_the_distributed_tables() -> None:
    migrations = made_up(
        TABLE,
        "CREATE TABLE observations_latest (city String, entity String, v Float64) "
        "ENGINE = ReplacingMergeTree ORDER BY (city, entity)",
        "INSERT INTO observations_latest SELECT city, entity, max(v) FROM observations "
        "GROUP BY city, entity",
    )
    [insert] = [s.sql for m in generate(migrations) for s in m.statements if s.kind == "insert"]
    assert insert.startswith("INSERT INTO observations_latest\nSELECT")
    assert "ON CLUSTER" not in insert and "_local" not in insert
    with pytest.raises(ClusterDDLError, match="sharding key"):
        generate(
            made_up(
                TABLE,
                "CREATE TABLE copies (city String) ENGINE = MergeTree ORDER BY city",
                "INSERT INTO copies SELECT city FROM observations",
            )
        )


def test_unknown_statement_stops_generation() -> None:
    with pytest.raises(ClusterDDLError, match="no cluster translation"):
        generate(made_up(TABLE, "RENAME TABLE observations TO obs"))


def test_new_table_without_sharding_key_stops_generation() -> None:
    with pytest.raises(ClusterDDLError, match="no sharding key for readings"):
        generate(
            made_up(
                TABLE,
                "CREATE TABLE readings (a UInt8) ENGINE = MergeTree ORDER BY a",
            )
        )


def test_view_without_target_table_stops_generation() -> None:
    with pytest.raises(ClusterDDLError, match="TO <table>"):
        generate(
            made_up(
                TABLE,
                "CREATE MATERIALIZED VIEW v ENGINE = MergeTree ORDER BY city AS "
                "SELECT city FROM observations",
            )
        )


def test_non_mergetree_engine_stops_generation() -> None:
    with pytest.raises(ClusterDDLError, match="no replicated variant"):
        generate(made_up("CREATE TABLE observations (a UInt8) ENGINE = Memory"))


# -- the single-node DDL on chDB -----------------------------------------------------


def test_single_node_ddl_applies_to_chdb(warehouse: ChdbWarehouse) -> None:
    names = set(
        warehouse.query_arrow("SELECT name FROM system.tables WHERE database = currentDatabase()")
        .column("name")
        .to_pylist()
    )
    for table in single_node_tables():
        assert table in names
    for migration in load_migrations(DDL_DIR):
        for statement in migration.statements:
            view = re.match(r"CREATE MATERIALIZED VIEW (?:IF NOT EXISTS )?(\w+)", statement)
            if view:
                assert view.group(1) in names
    assert applied_versions(warehouse) == {m.version for m in load_migrations(DDL_DIR)}
    assert migrate(warehouse) == []  # applied once, recorded: nothing left to do


def test_ddl_command_prints_both_variants(capsys: pytest.CaptureFixture[str]) -> None:
    assert cluster_ddl.main([]) == 0
    single = capsys.readouterr().out
    assert "ENGINE = MergeTree" in single and "ON CLUSTER" not in single
    assert cluster_ddl.main(["--cluster"]) == 0
    cluster = capsys.readouterr().out
    assert "ReplicatedMergeTree" in cluster and "Distributed(" in cluster
    assert cluster_ddl.main(["--cluster", "--check"]) == 0


def test_write_refreshes_a_stale_directory(tmp_path: Path) -> None:
    (tmp_path / "999_gone.sql").write_text("-- stale\n", encoding="utf-8")
    changed = cluster_ddl.write(tmp_path)
    assert tmp_path / "999_gone.sql" in changed
    assert cluster_ddl.stale(tmp_path) == []
    assert cluster_ddl.write(tmp_path) == []
