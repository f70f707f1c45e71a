"""A partner's analyst against the warehouse's SQL door, as an attacker.

A real chDB warehouse (migrated like the node's), rows of every kind of dataset
inserted as the sink lands them, the per-partner views publish builds, and the
SQL door of publish (ClickHouse's HTTP interface) on loopback (HTTP Basic, the
users file); answers asked as Arrow streams, refusals in ClickHouse's words. The analyst of
partner ``grenoble`` tries everything it can write; whatever it gets back — rows
or an error — never holds a row of a dataset the city files keep from it (each
hidden dataset's rows carry a marker the test looks for in the raw answer bytes).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest

from services.policy.sharing import SharingPolicy
from services.publish.clickhouse_http.door import open_sql_door
from services.publish.partner_views import refresh_partner_views
from services.publish.questions import QUESTIONS, question
from services.publish.sql_access import SqlAccess
from services.publish.sql_guard import SqlRefused
from services.publish.sql_users import (
    CREDENTIALS_FILE,
    Credentials,
    UserStore,
    basic_authorization,
    ensure_operator,
    sql_dir,
)
from services.runtime.cities import CityConfig, SourceConfig
from services.runtime.config import load_node_config
from services.warehouse.chdb_embedded import ChdbWarehouse
from services.warehouse.migrations import migrate
from services.warehouse.query import QueryLimits, from_ipc
from testkit.ports import free_port

pytestmark = pytest.mark.integration

# source id -> (sharing, personal, seen by grenoble)
SOURCES = {
    "air-open": ({"level": "open", "licence": "ODbL-1.0"}, False, True),
    "velo-grenoble": ({"level": "shared", "partners": ["grenoble"]}, False, True),
    "linky-grenoble": ({"level": "shared", "partners": ["grenoble"]}, True, True),
    "eau-annecy": ({"level": "shared", "partners": ["annecy"]}, False, False),
    "linky-open": ({"level": "open", "licence": "ODbL-1.0"}, True, False),
    "staff-internal": (None, False, False),
}
HIDDEN = [f"hid-{s}" for s, (_, _, seen) in SOURCES.items() if not seen]
PROVISIONAL = "hid-provisional-zone"


def source(source_id: str) -> SourceConfig:
    sharing, personal, _ = SOURCES[source_id]
    return SourceConfig(
        city="lyon",
        id=source_id,
        format="csv",
        dataset=source_id,
        domain="energy" if "linky" in source_id else "environment",
        entity="id",
        token="t",
        sharing=sharing,
        privacy={"personal": personal},  # declared: undeclared counts as personal
    )


CITIES = {"lyon": CityConfig("lyon", "Lyon", "Europe/Paris", tuple(map(source, SOURCES)))}
AGGREGATES = SharingPolicy("shared", ("grenoble", "annecy"))


@dataclass
class Door:
    url: str
    state: Path
    warehouse: ChdbWarehouse
    access: SqlAccess
    grenoble: Credentials
    annecy: Credentials
    internal: Credentials

    def post(
        self, sql: str, who: Credentials | None = None, params: dict | None = None
    ) -> httpx.Response:
        headers = {"Authorization": basic_authorization(who or self.grenoble)}
        asked = {"default_format": "ArrowStream", **(params or {})}
        return httpx.post(self.url, params=asked, content=sql.encode(), headers=headers, timeout=60)


def land(warehouse: ChdbWarehouse) -> None:
    """Two readings per source, whose entity names the source; two aggregate windows
    released and one only provisional."""
    for source_id, (_, _, seen) in SOURCES.items():
        entity = f"seen-{source_id}" if seen else f"hid-{source_id}"
        warehouse.command(
            "INSERT INTO observations (city, domain, metric, unit, entity, entity_type, zone, "
            "sector, carrier, ts, value, quality, step_seconds, source, dataset, lineage_id, "
            "_topic, _partition, _offset) VALUES "
            f"('lyon', 'environment', 'm', 'u', '{entity}', 'T', 'z1', 's', 'c', "
            f"'2026-01-05 10:00:00', 10, 0, 3600, '{source_id}', '{source_id}', 'l', 't', 0, 1), "
            f"('lyon', 'environment', 'm', 'u', '{entity}', 'T', 'z1', 's', 'c', "
            f"'2026-01-05 11:00:00', 20, 0, 3600, '{source_id}', '{source_id}', 'l', 't', 0, 2)"
        )
    columns = (
        "city, zone, carrier, sector, granularity, window_start, window_end, energy_kwh, "
        "meter_count, peak_kw, suppressed"
    )
    for zone in ("z-released-1", "z-released-2"):
        warehouse.command(
            f"INSERT INTO energy_aggregates_released ({columns}, closed_by, released_at) VALUES "
            f"('lyon', '{zone}', 'electricity', 'residential', 'day', '2026-01-05', "
            "'2026-01-06', 120.5, 12, 9.5, false, 'clock', '2026-01-06 00:10:00')"
        )
    warehouse.command(
        f"INSERT INTO energy_aggregates ({columns}, version, computed_at) VALUES "
        f"('lyon', '{PROVISIONAL}', 'electricity', 'residential', 'day', '2026-01-07', "
        "'2026-01-08', 77.7, 3, 9.9, false, 1, '2026-01-07 12:00:00')"
    )


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    state = tmp_path_factory.mktemp("partner-guard")
    warehouse = ChdbWarehouse(state / "warehouse")
    migrate(warehouse)
    land(warehouse)
    assert refresh_partner_views(warehouse, CITIES, AGGREGATES) == ["annecy", "grenoble"]
    ensure_operator(state)
    store = UserStore(state)
    users = {
        "grenoble": Credentials("ana-grenoble", store.add("ana-grenoble", partner="grenoble")),
        "annecy": Credentials("ana-annecy", store.add("ana-annecy", partner="annecy")),
        "internal": Credentials("staff", store.add("staff")),
    }
    limits = QueryLimits(max_rows=1000, max_seconds=20, max_memory=256 * 1024 * 1024)
    base = load_node_config()
    node = replace(
        base,
        node=replace(base.node, state_dir=str(state), id="guard-node"),
        sql=replace(
            base.sql,
            port=free_port(),
            readers=2,
            max_result_rows=1000,
            max_execution_time_s=20,
            max_memory_mb=256,
        ),
    )
    service = open_sql_door(node, warehouse)
    assert service is not None
    service.start()
    try:
        access = SqlAccess(warehouse, store, limits)
        yield Door(service.url + "/", state, warehouse, access, **users)
    finally:
        service.stop()
        warehouse.close()


def refused(answer: httpx.Response) -> bool:
    """Refused as a ClickHouse server refuses: a 4xx (400, or 403/404 for access and
    unknown names), its code in X-ClickHouse-Exception-Code, "Code: N." text."""
    code = answer.headers.get("X-ClickHouse-Exception-Code", "")
    return (
        answer.status_code in (400, 403, 404)
        and answer.text.startswith(f"Code: {code}. DB::Exception: ")
        and code.isdigit()
    )


def rows(answer: httpx.Response) -> list[dict]:
    assert answer.status_code == 200, answer.text
    return from_ipc(answer.content).to_pylist()


def leaks(answer: httpx.Response) -> list[str]:
    """Hidden markers found anywhere in an answer (Arrow bytes or error text)."""
    body = answer.content
    return [m for m in [*HIDDEN, PROVISIONAL, "77.7"] if m.encode() in body]


def test_a_partner_reads_what_its_partner_is_given_and_nothing_else(door: Door) -> None:
    seen = rows(door.post("SELECT DISTINCT source FROM observations ORDER BY source"))
    assert [r["source"] for r in seen] == ["air-open", "linky-grenoble", "velo-grenoble"]
    daily = "SELECT sumMerge(total) AS t, countMerge(readings) AS n FROM observations_daily"
    assert rows(door.post(daily)) == [{"t": 90.0, "n": 6}]
    hourly = "SELECT count() AS n, countMerge(readings) AS r FROM observations_hourly"
    assert rows(door.post(hourly)) == [{"n": 2, "r": 6}]  # 2 hours of 3 datasets
    listed = rows(door.post("SELECT id FROM datasets ORDER BY id"))
    assert [r["id"] for r in listed] == [
        "lyon/air-open",
        "lyon/energy-aggregates",
        "lyon/linky-grenoble",
        "lyon/velo-grenoble",
    ]
    # Annecy: its own dataset and the open one, never grenoble's.
    annecy = rows(door.post("SELECT DISTINCT source FROM observations", door.annecy))
    assert sorted(r["source"] for r in annecy) == ["air-open", "eau-annecy"]
    # The node's own analyst still reads everything.
    everything = rows(door.post("SELECT count() AS n FROM observations", door.internal))
    assert everything == [{"n": 12}]


def test_the_readme_questions_run_unchanged_on_a_partners_views(door: Door) -> None:
    """The analyst questions of the README, as written, on what the partner reads;
    the pipeline's rejects (dead_letters) are the node's own and stay refused."""
    for asked in QUESTIONS:
        answer = door.post(asked.sql)
        assert not leaks(answer), asked.slug
        if asked.slug == "dead-letters-by-reason":
            assert refused(answer) and "dead_letters" in answer.text
        else:
            assert answer.status_code == 200, (asked.slug, answer.text)
    top = rows(door.post(question("top-consuming-zones").sql.replace("'P1D'", "'day'")))
    assert [r["kwh"] for r in top] == [120.5, 120.5]  # the two released windows


def test_only_released_aggregates_reach_a_partner(door: Door) -> None:
    released = door.post("SELECT zone, energy_kwh FROM energy_aggregates ORDER BY zone")
    assert [r["zone"] for r in rows(released)] == ["z-released-1", "z-released-2"]
    assert not leaks(released)
    for sql in [
        "SELECT * FROM default.energy_aggregates",
        "SELECT * FROM energy_aggregates_released",
        "SELECT * FROM default.energy_aggregates_released",
    ]:
        answer = door.post(sql)
        assert refused(answer) and not leaks(answer), sql


ATTACKS = [
    # qualified names, quoted, spaced, look-alike
    "SELECT * FROM default.observations",
    "SELECT * FROM `default`.`observations`",
    'SELECT * FROM "default"."observations"',
    "SELECT * FROM default . observations",
    "SELECT * FROM `default.observations`",
    "SELECT * FROM d\u0435fault.observations",  # Cyrillic 'е'
    "SELECT * FROM partner_annecy.observations",
    "SELECT * FROM partner_grenoble.observations AS o, default.observations",
    # joins, subqueries, IN, UNION
    "SELECT * FROM observations AS o JOIN default.observations AS d ON o.city = d.city",
    "SELECT * FROM observations WHERE entity IN (SELECT entity FROM default.observations)",
    "SELECT entity FROM observations WHERE entity IN default.observations",
    "SELECT (SELECT groupArray(entity) FROM default.observations) AS e",
    "SELECT entity FROM observations UNION ALL SELECT entity FROM default.observations",
    "SELECT entity FROM observations EXCEPT SELECT entity FROM default.observations",
    "SELECT x.entity FROM (SELECT * FROM default.observations) AS x",
    # table functions
    "SELECT * FROM file('/etc/hostname', 'LineAsString')",
    "SELECT * FROM url('http://127.0.0.1:9/x', 'CSV', 'a String')",
    "SELECT * FROM remote('127.0.0.1', default.observations)",
    "SELECT * FROM cluster('default', default.observations)",
    "SELECT * FROM merge('default', '^obs')",
    "SELECT * FROM merge(REGEXP('.*'), '.*')",
    "SELECT * FROM input('a String')",
    "SELECT * FROM executable('cat /etc/hostname', 'CSV', 'a String')",
    "SELECT * FROM s3('http://127.0.0.1:9/b/x.csv', 'CSV', 'a String')",
    "SELECT * FROM view(SELECT * FROM default.observations)",
    "SELECT * FROM viewIfPermitted(SELECT * FROM default.observations ELSE null('a String'))",
    "SELECT * FROM mergeTreeIndex('default', 'observations')",
    "SELECT * FROM dictionary('d')",
    "SELECT * FROM numbers(3) AS n JOIN default.observations AS o ON 1",
    # dictionaries and other functions reading by name
    "SELECT dictGet('d', 'a', toUInt64(1))",
    "SELECT dictGetOrDefault('d', 'a', toUInt64(1), 'x')",
    "SELECT joinGet('default.observations', 'entity', 'lyon')",
    "SELECT hasColumnInTable('default', 'observations', 'entity')",
    "SELECT getMaxTableNameLengthForDatabase('partner_annecy')",
    "SELECT getServerSetting('path')",
    # system tables, view definitions
    "SELECT * FROM system.tables",
    "SELECT create_table_query FROM system.tables WHERE database = currentDatabase()",
    "SELECT * FROM system.parts",
    "SELECT * FROM system.columns",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM INFORMATION_SCHEMA.TABLES",
    "SHOW CREATE TABLE observations",
    "SHOW CREATE VIEW observations",
    "SHOW TABLES FROM default",
    "SHOW DATABASES",
    "DESCRIBE default.observations",
    "EXISTS default.observations",
    # comments hiding text, several statements
    "SELECT * FROM /* observations */ default.observations",
    "SELECT * FROM observations -- only mine\nUNION ALL SELECT * FROM default.observations",
    "SELECT 1 # it's\n; SELECT * FROM default.observations; --'",
    "SELECT 1; SELECT * FROM default.observations",
    # settings, writes
    "SELECT * FROM observations SETTINGS readonly = 0",
    "SELECT number FROM numbers(100000) SETTINGS max_result_rows = 0",
    "SET readonly = 0",
    "INSERT INTO observations SELECT * FROM observations",
    "CREATE VIEW mine AS SELECT * FROM default.observations",
    "DROP DATABASE partner_grenoble",
    "SELECT * FROM observations INTO OUTFILE '/tmp/partner-guard-leak.csv'",
    # EXPLAIN tricks
    "EXPLAIN SELECT * FROM default.observations",
    "EXPLAIN AST SELECT * FROM default.observations",
    "EXPLAIN QUERY TREE SELECT * FROM default.observations",
    "EXPLAIN PIPELINE SELECT * FROM default.observations",
    # WITH names shadowing, aliases named like databases
    "WITH observations AS (SELECT * FROM default.observations) SELECT * FROM observations",
    "WITH default AS (SELECT 1) SELECT * FROM default.observations",
    "SELECT default.observations.entity FROM observations AS default",
    "SELECT 1 FROM observations AS default WHERE entity IN default.observations",
    "WITH (SELECT groupArray(entity) FROM default.observations) AS e SELECT e",
    # scalar functions reading files
    "SELECT file('/etc/hostname')",
    "SELECT FILE('/etc/hostname')",
    # the provisional aggregates
    "SELECT * FROM default.energy_aggregates FINAL",
    # the node's machine: install paths and memory layout (introspection functions
    # are on in chDB), its host name and kernel (failed before: 200 with the values)
    "SELECT addressToLineWithInlines(toUInt64(1))",
    "SELECT addressToLine(toUInt64(1))",
    "SELECT addressToSymbol(toUInt64(1))",
    "SELECT hostName()",
    "SELECT FQDN()",
    "SELECT getOSKernelVersion()",
]


@pytest.mark.parametrize("sql", ATTACKS)
def test_whatever_a_partner_writes_it_gets_no_hidden_row(door: Door, sql: str) -> None:
    answer = door.post(sql)
    assert refused(answer), (sql, answer.status_code, answer.text[:300])
    assert not leaks(answer), sql


def test_refusals_say_the_same_whether_the_name_exists_or_not(door: Door) -> None:
    """The oracle: an answer that differs for a hidden table and a missing one tells
    what exists. Each pair differs only by the name written."""
    pairs = [
        ("default.observations", "default.nothing_here"),
        ("default.dead_letters", "default.dead_lettre"),
        ("partner_annecy.observations", "partner_nowhere.observations"),
        ("system.tables", "system.nothing_here"),
    ]
    for real, missing in pairs:
        for template in (
            "SELECT * FROM {}",
            "SELECT 1 FROM observations WHERE entity IN {}",
            "SELECT count() FROM observations AS o JOIN {} AS x ON 1",
        ):
            a, b = door.post(template.format(real)), door.post(template.format(missing))
            assert refused(a) and refused(b) and a.status_code == b.status_code
            assert _named(a.text, real) == _named(b.text, missing), (a.text, b.text)


def _named(text: str, name: str) -> str:
    """``text`` with the name written (and its database part) replaced by N."""
    return text.replace(name, "N").replace(name.split(".")[0], "N")


def test_counting_a_hidden_dataset_through_visible_views_learns_nothing(door: Door) -> None:
    """Division by a count, throwIf, an error on a condition: over the partner's views
    a hidden dataset counts zero, exactly like one that does not exist."""
    probes = [
        "SELECT 1 / (SELECT count() FROM observations WHERE source = '{}') AS x",
        "SELECT throwIf((SELECT count() FROM observations WHERE source = '{}') > 0) AS x",
        "SELECT count() AS x FROM observations_daily WHERE city = 'lyon' AND '{}' != ''",
    ]
    for probe in probes:
        hidden = door.post(probe.format("staff-internal"))
        missing = door.post(probe.format("no-such-source"))
        assert (hidden.status_code, hidden.content) == (missing.status_code, missing.content)


def test_errors_name_no_table_the_partner_did_not_write(door: Door) -> None:
    for sql in ["SELECT * FROM dead_letters", "SELECT * FROM schema_migration"]:
        answer = door.post(sql)
        assert refused(answer)
        assert "default" not in answer.text and "Maybe you meant" not in answer.text


def test_limits_hold_for_every_analyst_whatever_the_shape_of_the_query(door: Door) -> None:
    """Failed before for UNION/EXCEPT: the limits bound the last SELECT only and all
    5,001 rows came back."""
    for sql in [
        "SELECT number FROM numbers(5000)",
        "SELECT number FROM numbers(5000) UNION ALL SELECT 1",
        "SELECT 1 UNION DISTINCT SELECT number FROM numbers(5000)",
        "SELECT number FROM numbers(5000) EXCEPT SELECT 1",
        "(SELECT number FROM numbers(5000)) UNION ALL (SELECT 1)",
    ]:
        for who in (door.grenoble, door.internal):
            too_many = door.post(sql, who)
            assert refused(too_many), (sql, who.user)
            assert "max rows" in too_many.text.lower(), (sql, too_many.text[:200])


def test_a_query_holding_too_much_memory_fails_alone(door: Door) -> None:
    """publish's process holds the sink too: a partner's query that would fill its
    memory is stopped by the limit, and the next query runs."""
    big = door.post("SELECT length(groupArray(toString(number))) AS n FROM numbers(100000000)")
    assert refused(big) and "memory limit" in big.text.lower(), big.text[:300]
    assert rows(door.post("SELECT count() AS n FROM observations")) == [{"n": 6}]


def test_the_database_asked_for_is_the_partners_own_or_refused(door: Door) -> None:
    access, user = door.access, door.grenoble.user
    for database in (None, "default", "partner_grenoble"):
        query = access.authorize(user, "SELECT count() AS n FROM observations", database)
        assert query.database == "partner_grenoble"
        assert access.run(query).to_pylist() == [{"n": 6}]
    texts = set()
    for database in ("partner_annecy", "partner_nowhere", "system"):
        with pytest.raises(SqlRefused) as refused:
            access.authorize(user, "SELECT 1", database)
        assert refused.value.code == 497
        texts.add(refused.value.message)
    assert len(texts) == 1  # the same answer, whatever exists


def test_no_analyst_reads_the_nodes_files_or_hides_a_second_statement(door: Door) -> None:
    """Failed before: the node's own analyst read the operator's secret with
    file(), and a quote inside a '#' comment hid a DROP from the read-only check."""
    secret_file = sql_dir(door.state) / CREDENTIALS_FILE
    answer = door.post(f"SELECT file('{secret_file}') AS s", door.internal)
    assert refused(answer)
    assert secret_file.read_text().split(":")[1].strip() not in answer.text
    dropped = door.post("SELECT 1 # it's\n; DROP TABLE dead_letters; --'", door.internal)
    assert refused(dropped)
    assert rows(door.post("EXISTS TABLE dead_letters", door.internal)) == [{"result": 1}]
    assert not Path("/tmp/partner-guard-leak.csv").exists()


def test_views_are_rebuilt_idempotently_and_dropped_with_their_partner(door: Door) -> None:
    assert refresh_partner_views(door.warehouse, CITIES, AGGREGATES) == ["annecy", "grenoble"]
    only_grenoble = {
        "lyon": CityConfig(
            "lyon", "Lyon", "Europe/Paris", tuple(source(s) for s in SOURCES if s != "eau-annecy")
        )
    }
    kept = refresh_partner_views(door.warehouse, only_grenoble, SharingPolicy("internal"))
    assert kept == ["grenoble"]
    names = door.warehouse.query_arrow(
        "SELECT name FROM system.databases WHERE startsWith(name, 'partner_') ORDER BY name"
    )
    assert names.column("name").to_pylist() == ["partner_grenoble"]
    gone = door.post("SELECT count() AS n FROM observations", door.annecy)
    assert refused(gone) and not leaks(gone)
    # aggregates no longer shared: the view is empty, not an error
    assert rows(door.post("SELECT count() AS n FROM energy_aggregates")) == [{"n": 0}]
    refresh_partner_views(door.warehouse, CITIES, AGGREGATES)  # as the module found it


def test_partner_queries_never_move_the_sinks_session_to_another_database(door: Door) -> None:
    """Partner queries run in partner_<code> on a connection of their own: the sink's
    session, which inserts by unqualified names, stays in default."""
    assert rows(door.post("SELECT currentDatabase() AS d")) == [{"d": "partner_grenoble"}]
    session = door.warehouse.query_arrow("SELECT currentDatabase() AS d").to_pylist()
    assert session == [{"d": "default"}]
    assert rows(door.post("SELECT currentDatabase() AS d", door.internal)) == [{"d": "default"}]


def test_settings_a_client_sends_never_widen_the_limits(door: Door) -> None:
    """What the door does with the settings a client sends as URL parameters: the
    node's limits may be lowered (452 when raised or lifted), read-only stays, a
    partner's client may only shape the answer, no setting names a file."""
    access = door.access
    partner = access.authorize(door.grenoble.user, "SELECT number FROM numbers(5000)")
    for sent, code in (
        ({"max_result_rows": "0"}, 452),
        ({"max_result_rows": "100000"}, 452),
        ({"readonly": "0"}, 164),
        ({"max_threads": "64"}, 452),
        ({"join_algorithm": "hash"}, 164),
        ({"format_template_row": "/etc/hostname"}, 497),
    ):
        with pytest.raises(SqlRefused) as refusal:
            partner.with_client_settings(sent)
        assert refusal.value.code == code, sent
        answer = door.post("SELECT number FROM numbers(5000)", params=sent)
        assert refused(answer) and answer.headers["X-ClickHouse-Exception-Code"] == str(code)
    shaped = partner.with_client_settings({"output_format_json_quote_64bit_integers": "0"})
    with pytest.raises(SqlRefused, match="max rows"):
        access.run(shaped)
    fewer = door.post("SELECT number FROM numbers(50)", params={"max_result_rows": "10"})
    assert refused(fewer) and "max rows" in fewer.text.lower()
    internal = access.authorize(door.internal.user, "SELECT getSetting('max_threads') AS t")
    assert access.run(internal.with_client_settings({"max_threads": "1"})).to_pylist() == [{"t": 1}]
    with pytest.raises(SqlRefused):
        internal.with_client_settings({"max_execution_time": "0"})


def test_a_setting_value_is_data_whatever_quotes_and_backslashes_it_holds(door: Door) -> None:
    """Failed before: a value ending in a backslash ended the quoted string early, so
    the rest of the value was read as more settings of the SETTINGS clause."""
    value = "x\\', readonly=0, output_format_csv_delimiter='\\"
    sql = "SELECT getSetting('output_format_sql_insert_table_name') AS v"
    for who in (door.grenoble, door.internal):
        answer = door.post(sql, who, {"output_format_sql_insert_table_name": value})
        assert rows(answer) == [{"v": value}], answer.text[:300]


def test_a_format_clause_and_default_format_for_both_kinds_of_users(door: Door) -> None:
    """The door cuts the FORMAT the analyst wrote from the checked statement and has
    the engine write it, so the node's SETTINGS always end the statement."""
    for who, n in ((door.grenoble, 6), (door.internal, 12)):
        sql = "SELECT count() AS n FROM observations"
        clause = door.post(f"{sql} FORMAT JSONEachRow", who)
        assert clause.text == f'{{"n":{n}}}\n' and clause.headers["X-ClickHouse-Format"] == (
            "JSONEachRow"
        )
        setting = door.post(sql, who, {"default_format": "CSVWithNames"})
        assert setting.text == f'"n"\n{n}\n'
        union = door.post(f"{sql} UNION ALL {sql} FORMAT CSV", who)
        assert union.text == f"{n}\n{n}\n", union.text
        literal = door.post("SELECT 'a FORMAT JSON' AS s", who, {"default_format": "CSV"})
        assert literal.text == '"a FORMAT JSON"\n'
        # a FORMAT does not hide the limits, nor is the limit bypassed by one
        many = door.post("SELECT number FROM numbers(5000) FORMAT CSV", who)
        assert refused(many) and "max rows" in many.text.lower()


def test_the_entity_tables_reach_a_partner_filtered_like_observations(door: Door) -> None:
    """The federation API's entity tables (latest values, readings by entity) hold
    every source's entities: a partner reads them only through its own views, which
    keep the rows of its datasets and no position."""
    for table in ("observations_latest", "readings_by_entity"):
        everything = door.post(f"SELECT count() AS n FROM {table}", door.internal)
        assert rows(everything)[0]["n"] > 0, table  # the node's own tables are filled
        seen = door.post(f"SELECT DISTINCT source FROM {table} ORDER BY source")
        assert not leaks(seen), table
        assert [r["source"] for r in rows(seen)] == [
            "air-open",
            "linky-grenoble",
            "velo-grenoble",
        ], table
        for sql in (
            f"SELECT * FROM default.{table}",
            f"SELECT entity FROM observations WHERE entity IN (SELECT entity FROM default.{table})",
            f"SELECT lat FROM {table}",
        ):
            answer = door.post(sql)
            assert refused(answer) and not leaks(answer), (sql, answer.text[:200])


def test_one_analyst_cannot_hold_every_reader(door: Door) -> None:
    """Failed before: one user's queries took every reader (2 here), so every other
    analyst, partner or internal, waited for them or got 202. A user now runs at most
    readers - 1 queries at once: its next one is refused at once (202), and another
    analyst still gets a reader."""
    hog = "SELECT sum(sleepEachRow(1)) AS s FROM numbers(6)"  # 6 s of wall time
    slow: list[httpx.Response] = []
    thread = threading.Thread(
        target=lambda: slow.append(door.post(hog, door.internal, {"max_block_size": "1"}))
    )
    thread.start()
    try:
        for _ in range(1200):  # until the hog runs (bounded poll)
            running = door.warehouse.query_arrow(
                "SELECT count() AS n FROM system.processes WHERE query LIKE '%sleepEachRow(1)%' "
                "AND query NOT LIKE '%system.processes%'"
            )
            if running.column("n")[0].as_py() > 0 or slow:
                break
            threading.Event().wait(0.05)
        second = door.post("SELECT 1 AS one", door.internal)
        assert second.status_code == 503 and second.headers["Retry-After"] == "1"
        assert second.text.startswith("Code: 202. DB::Exception: ") and "at once" in second.text
        assert rows(door.post("SELECT count() AS n FROM observations")) == [{"n": 6}]
    finally:
        thread.join()
    assert rows(slow[0]) == [{"s": 0}]
