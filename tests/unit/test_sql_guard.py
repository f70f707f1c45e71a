"""The checks of a partner's SQL, on the trees ClickHouse's own parser and analyser
produce (an in-memory chDB: the real parser, no broker)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.publish.sql_access import clickhouse_refusal, literal
from services.publish.sql_guard import (
    ACCESS_DENIED,
    READONLY,
    SqlRefused,
    check_partner_tree,
    check_resolved_tree,
    refuse_everyone,
)
from services.warehouse.chdb_embedded import ChdbWarehouse

DB = "partner_test"


@pytest.fixture(scope="module")
def chdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbWarehouse]:
    warehouse = ChdbWarehouse(tmp_path_factory.mktemp("guard") / "warehouse")
    warehouse.command("CREATE TABLE default.secret (entity String) ENGINE = Memory")
    warehouse.command(f"CREATE DATABASE {DB}")
    warehouse.command(f"CREATE VIEW {DB}.observations AS SELECT 'e' AS entity, 1 AS value")
    yield warehouse
    warehouse.close()


def tree(chdb: ChdbWarehouse, sql: str) -> dict[str, Any]:
    text = chdb.query_arrow(f"SELECT parseQueryToJSON({literal(sql)}) AS q").column(0)[0]
    return json.loads(text.as_py())


def resolved(chdb: ChdbWarehouse, sql: str) -> str:
    plan = chdb.query_arrow(f"EXPLAIN QUERY TREE {sql}", database=DB)
    return "\n".join(map(str, plan.column(0).to_pylist()))


ALLOWED = [
    "SELECT entity, sum(value) FROM observations GROUP BY entity",
    "SELECT o.entity FROM observations AS o JOIN observations AS p ON o.entity = p.entity",
    "WITH w AS (SELECT * FROM observations) SELECT w.entity FROM w",
    "SELECT entity FROM observations WHERE entity IN (SELECT entity FROM observations)",
    "SELECT number FROM numbers(3)",
    "SELECT arrayMap(x -> x * 2, [1, 2]) AS doubled",
    "SELECT entity FROM observations UNION ALL SELECT 'x'",
    "SHOW TABLES",
    "SELECT 1 FORMAT JSONEachRow",
    "SELECT name, value, readonly FROM system.settings LIMIT 10000",  # clickhouse-connect
    "SELECT version(), timezone()",
]


@pytest.mark.parametrize("sql", ALLOWED)
def test_what_a_partner_may_write_passes_both_checks(chdb: ChdbWarehouse, sql: str) -> None:
    parsed = tree(chdb, sql)
    refuse_everyone(parsed)
    check_partner_tree(parsed, DB)
    if not sql.startswith("SHOW"):
        check_resolved_tree(resolved(chdb, sql.removesuffix(" FORMAT JSONEachRow")), DB)


REFUSED = {
    "SELECT * FROM default.secret": ACCESS_DENIED,
    "SELECT * FROM `default`.secret": ACCESS_DENIED,
    "SELECT * FROM observations AS o, default.secret": ACCESS_DENIED,
    "SELECT 1 WHERE 'e' IN default.secret": ACCESS_DENIED,
    "SELECT * FROM file('/etc/hostname', 'LineAsString')": ACCESS_DENIED,
    "SELECT * FROM url('http://127.0.0.1:9/', 'CSV', 'a String')": ACCESS_DENIED,
    "SELECT * FROM merge('default', '.*')": ACCESS_DENIED,
    "SELECT dictGet('d', 'a', toUInt64(1))": ACCESS_DENIED,
    "SELECT DICTGET('d', 'a', toUInt64(1))": ACCESS_DENIED,
    "SELECT joinGet('default.secret', 'entity', 1)": ACCESS_DENIED,
    "SELECT * FROM system.tables": ACCESS_DENIED,
    "SELECT * FROM system.settings AS s JOIN default.secret AS t ON 1": ACCESS_DENIED,
    "SELECT system.secret.entity FROM system.settings": ACCESS_DENIED,
    "SELECT * FROM observations SETTINGS readonly = 0": READONLY,
    "SELECT * FROM (SELECT * FROM observations SETTINGS max_result_rows = 0)": READONLY,
    "WITH default AS (SELECT 1) SELECT 2": ACCESS_DENIED,
    "SELECT 1 FROM observations AS system": ACCESS_DENIED,
    "SELECT default.secret.entity FROM observations": ACCESS_DENIED,
    "SHOW TABLES FROM default": ACCESS_DENIED,
    "EXPLAIN SELECT 1": ACCESS_DENIED,
    "SELECT 1 INTO OUTFILE 'x'": ACCESS_DENIED,
    "SELECT file('/etc/hostname')": ACCESS_DENIED,
    "SELECT * FROM {t:Identifier}": ACCESS_DENIED,
    "SELECT 1 FROM observations WHERE entity IN {t:Identifier}": ACCESS_DENIED,
}


@pytest.mark.parametrize("sql", sorted(REFUSED))
def test_the_syntax_check_refuses_before_anything_is_resolved(
    chdb: ChdbWarehouse, sql: str
) -> None:
    parsed = tree(chdb, sql)
    with pytest.raises(SqlRefused) as refused:
        refuse_everyone(parsed)
        check_partner_tree(parsed, DB)
    assert refused.value.code == REFUSED[sql]


def test_the_resolved_tree_catches_a_table_the_syntax_check_let_through(
    chdb: ChdbWarehouse,
) -> None:
    """Were the syntax walk to miss a name, the analyser's answer names the real table."""
    text = resolved(chdb, "SELECT * FROM default.secret")
    with pytest.raises(SqlRefused, match=r"default\.secret"):
        check_resolved_tree(text, DB)


def test_an_alias_cannot_forge_the_resolved_tree_to_hide_a_table(chdb: ChdbWarehouse) -> None:
    """Column names print raw in EXPLAIN QUERY TREE: one holding a newline and a fake
    line adds text, but the real table's line is still there and still read."""
    forged = f"`x\n        TABLE id: 9, table_name: {DB}.observations, y`"
    text = resolved(chdb, f"SELECT entity AS {forged} FROM default.secret")
    assert f"table_name: {DB}.observations" in text  # the forgery is in the text
    with pytest.raises(SqlRefused, match=r"default\.secret"):
        check_resolved_tree(text, DB)


def test_internal_analysts_may_read_anything_but_the_nodes_files(chdb: ChdbWarehouse) -> None:
    refuse_everyone(tree(chdb, "SELECT * FROM default.secret"))
    for sql in ["SELECT file('/etc/passwd')", "SELECT * FROM system.one INTO OUTFILE 'x'"]:
        with pytest.raises(SqlRefused):
            refuse_everyone(tree(chdb, sql))


def test_clickhouse_errors_lose_their_hints_and_keep_their_code(chdb: ChdbWarehouse) -> None:
    with pytest.raises(Exception) as raised:
        chdb.query_arrow("SELECT * FROM secre")  # ClickHouse suggests default.secret
    assert "secret" in str(raised.value).replace("secre ", "")
    refusal = clickhouse_refusal(raised.value)
    assert refusal.code == 60 and "Maybe you meant" not in refusal.message


def test_a_literal_survives_any_text(chdb: ChdbWarehouse, tmp_path: Path) -> None:
    for text in ["it's", "back\\slash'", "\\'; DROP TABLE default.secret; --", "é\n\t"]:
        got = chdb.query_arrow(f"SELECT {literal(text)} AS t").column(0)[0].as_py()
        assert got == text
