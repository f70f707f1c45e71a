"""publish's ClickHouse HTTP interface as analysts' own tools meet it: the real
clickhouse-connect client (the design card's), plain HTTP for what it does not send,
``citeplus sql`` and the read paths of publish's clickhouse-connect backend, all
against one door on a real chDB warehouse with the pipeline's schema and rows.
"""

from __future__ import annotations

import gzip
import socket
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import clickhouse_connect
import httpx
import pyarrow as pa
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from services.policy.sharing import SharingPolicy
from services.publish.clickhouse_http.door import SqlService, open_sql_door
from services.publish.clickhouse_http.server import ClickHouseHttpServer
from services.publish.main import run_query
from services.publish.partner_views import refresh_partner_views
from services.publish.questions import QUESTIONS
from services.publish.rows import Landed, aggregates_table, observations_table
from services.publish.sql_users import Credentials, UserStore, ensure_operator
from services.runtime.cities import CityConfig, SourceConfig
from services.runtime.config import NodeConfig, load_node_config
from services.runtime.errors import CiteplusError, ConfigError
from services.warehouse.chdb_embedded import ChdbWarehouse
from services.warehouse.migrations import migrate
from services.warehouse.query import render
from testkit.ports import free_port
from testkit.records import dead_letter, energy_aggregate
from testkit.warehouse_rows import lyon_day

pytestmark = pytest.mark.integration


@dataclass
class Door:
    port: int
    node: NodeConfig
    state: Path
    analyst: Credentials
    partner: Credentials  # an analyst of partner grenoble: its views only
    warehouse: ChdbWarehouse
    service: SqlService

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def client(
        self, who: Credentials | None = None, **settings: object
    ) -> clickhouse_connect.driver.Client:
        who = who or self.analyst
        return clickhouse_connect.get_client(
            host="127.0.0.1", port=self.port, username=who.user, password=who.secret, **settings
        )

    def post(self, sql: str, params: dict | None = None, **kwargs: object) -> httpx.Response:
        headers = {
            "X-ClickHouse-User": self.analyst.user,
            "X-ClickHouse-Key": self.analyst.secret,
            **kwargs.pop("headers", {}),  # type: ignore[dict-item]
        }
        return httpx.post(
            self.url, params=params or {}, content=sql.encode(), headers=headers, timeout=60
        )


def _fill(warehouse: ChdbWarehouse) -> None:
    """The pipeline's tables with rows of the shapes it writes, every question answered."""
    migrate(warehouse)
    warehouse.insert_arrow("observations", observations_table(lyon_day()))
    cells = [("693810101", "residential", 50.0), ("693810102", "tertiary", None)]
    aggregates = [
        Landed(
            {
                **energy_aggregate(),
                "granularity": "P1D",
                "zone": zone,
                "sector": sector,
                "energy_kwh": kwh,
                "meter_count": None if kwh is None else 12,
                "suppressed": kwh is None,
            },
            "energy.aggregates.v1",
            0,
            i,
        )
        for i, (zone, sector, kwh) in enumerate(cells)
    ]
    warehouse.insert_arrow("energy_aggregates", aggregates_table(aggregates))
    letter = dead_letter()
    warehouse.command(
        "INSERT INTO dead_letters (stage, reason, city, failed_at) VALUES "
        f"('{letter['stage']}', '{letter['reason']}', 'lyon', now64(6))"
    )
    warehouse.command("CREATE TABLE notes (id UInt32, text String) ENGINE=MergeTree ORDER BY id")
    warehouse.command("INSERT INTO notes VALUES (1, 'bonjour'), (2, unhex('FF41'))")


# The pipeline's rows of lyon_day() come from this source: shared with grenoble.
CITIES = {
    "lyon": CityConfig(
        "lyon",
        "Lyon",
        "Europe/Paris",
        (
            SourceConfig(
                "lyon", "linky-gateway", "csv", "load-curves", "energy", "id", "t",
                privacy={"personal": True}, sharing={"level": "shared", "partners": ["grenoble"]},
            ),
        ),
    )
}  # fmt: skip


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    state = tmp_path_factory.mktemp("sql-door")
    warehouse = ChdbWarehouse(state / "warehouse")
    _fill(warehouse)
    refresh_partner_views(warehouse, CITIES, SharingPolicy("shared", ("grenoble",)))
    ensure_operator(state)
    analyst = Credentials("analyst", UserStore(state).add("analyst"))
    partner = Credentials("ana-grenoble", UserStore(state).add("ana-grenoble", partner="grenoble"))
    base = load_node_config()
    port = free_port()
    node = replace(
        base,
        node=replace(base.node, state_dir=str(state), id="test-node"),
        sql=replace(base.sql, port=port, max_execution_time_s=30, max_result_rows=10_000),
    )
    service = open_sql_door(node, warehouse)
    assert service is not None
    service.start()
    try:
        yield Door(port, node, state, analyst, partner, warehouse, service)
    finally:
        service.stop()
        warehouse.close()


@pytest.fixture(autouse=True)
def _operator_as_citeplus_sql(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CITEPLUS_SQL_USER", raising=False)
    monkeypatch.delenv("CITEPLUS_SQL_SECRET", raising=False)


def test_clickhouse_connect_answers_the_analyst_questions_as_citeplus_sql_does(
    door: Door,
) -> None:
    client = door.client()
    answered = 0
    for q in QUESTIONS:
        expected = run_query(door.node, q.sql).to_pylist()
        arrow = client.query_arrow(q.sql)
        assert isinstance(arrow, pa.Table)
        assert arrow.to_pylist() == expected, q.slug
        frame = client.query_df(q.sql)
        assert list(frame.columns) == arrow.column_names, q.slug
        assert len(frame) == len(expected), q.slug
        rows = client.query(q.sql).result_rows
        assert len(rows) == len(expected), q.slug
        answered += bool(expected)
    assert answered == len(QUESTIONS)  # every question had rows to compare


def test_writes_and_reads_outside_the_warehouse_are_refused_with_clickhouse_codes(
    door: Door, tmp_path: Path
) -> None:
    client = door.client()
    target = tmp_path / "written.csv"
    attempts = {
        "INSERT INTO notes VALUES (3, 'x')": 164,
        "DROP TABLE notes": 164,
        "CREATE TABLE t2 (x UInt8) ENGINE = Memory": 164,
        "ALTER TABLE notes DELETE WHERE 1": 164,
        # chDB writes it even with readonly=1: ClickHouse's parser finds it first
        f"SELECT 1 INTO OUTFILE '{target}'": 497,
        f"SELECT 1 /* */ INTO /* x */ OUTFILE '{target}' FORMAT CSV": 497,
        "SELECT * FROM file('/etc/hostname', 'LineAsString')": 497,  # a file of the node
        "SELECT 1 SETTINGS readonly=0": 164,
        "SELECT 1; DROP TABLE notes": 62,
    }
    for sql, code in attempts.items():
        with pytest.raises(DatabaseError) as refused:
            client.command(sql)
        assert f"code: {code}" in str(refused.value), sql
        answer = door.post(sql)
        assert answer.headers["X-ClickHouse-Exception-Code"] == str(code), sql
        assert answer.status_code in (400, 403) and answer.text.startswith(f"Code: {code}.")
    assert "node's files" in door.post("SELECT * FROM file('/etc/hostname', 'CSV')").text
    assert "readonly" in door.post("SELECT 1 SETTINGS readonly=0").text.lower()
    # the client's own insert path meets the same door
    with pytest.raises(DatabaseError, match="164"):
        client.insert("notes", [[3, "x"]], column_names=["id", "text"])
    assert not target.exists()
    assert client.query("SELECT count() FROM notes").result_rows == [(2,)]


def test_a_wrong_password_is_516_and_no_credentials_194(door: Door) -> None:
    with pytest.raises(DatabaseError, match="516"):
        clickhouse_connect.get_client(
            host="127.0.0.1", port=door.port, username="analyst", password="not-it"
        )
    wrong = door.post("SELECT 1", headers={"X-ClickHouse-Key": "not-it"})
    unknown = door.post("SELECT 1", headers={"X-ClickHouse-User": "nobody"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.headers["X-ClickHouse-Exception-Code"] == "516"
    assert wrong.text.replace("analyst", "") == unknown.text.replace("nobody", "")
    anonymous = httpx.post(door.url, content=b"SELECT count() FROM notes")
    assert anonymous.headers["X-ClickHouse-Exception-Code"] == "194"
    assert "bonjour" not in anonymous.text and "sql-users" in anonymous.text
    basic = httpx.post(door.url, content=b"SELECT 1", auth=("analyst", door.analyst.secret))
    assert basic.status_code == 200 and basic.text == "1\n"


def test_limits_are_lowered_on_request_and_never_raised(door: Door) -> None:
    raised = door.post("SELECT 1", {"max_execution_time": "3600"})
    assert raised.headers["X-ClickHouse-Exception-Code"] == "452"
    assert "30" in raised.text  # the user's ceiling is named
    assert door.post("SELECT 1", {"max_result_rows": "0"}).status_code == 400
    assert door.post("SELECT 1", {"readonly": "0"}).headers["X-ClickHouse-Exception-Code"] == (
        "164"
    )
    assert door.post("SELECT 1", {"readonly": "1"}).text == "1\n"
    few = door.post("SELECT number FROM numbers(10)", {"max_result_rows": "5"})
    assert few.headers["X-ClickHouse-Exception-Code"] == "396"
    ceiling = door.post("SELECT number FROM system.numbers LIMIT 20000")
    assert ceiling.headers["X-ClickHouse-Exception-Code"] == "396"
    timed = door.post("SELECT count() FROM numbers(100000000000)", {"max_execution_time": "1"})
    assert timed.headers["X-ClickHouse-Exception-Code"] == "159"
    # clickhouse-connect sees every setting read-only (the door runs readonly=1) and
    # sends one only when told to; the door then applies it as a lower limit
    clickhouse_connect.common.set_setting("invalid_setting_action", "send")
    try:
        with pytest.raises(DatabaseError, match="396"):
            door.client().query("SELECT number FROM numbers(10)", settings={"max_result_rows": 5})
        with pytest.raises(DatabaseError, match="452"):
            door.client().query("SELECT 1", settings={"max_execution_time": 3600})
    finally:
        clickhouse_connect.common.set_setting("invalid_setting_action", "error")
    # a query's own SETTINGS clause does not lift them either: read-only mode refuses it
    lifted = door.post("SELECT number FROM numbers(20000) SETTINGS max_result_rows=100000")
    assert lifted.headers["X-ClickHouse-Exception-Code"] == "164"
    assert door.post("SELECT 1", {"max_threads": "2"}).text == "1\n"  # as a parameter it runs


def test_formats_headers_and_the_query_split_between_url_and_body(door: Door) -> None:
    sql = "SELECT id, text FROM notes WHERE id = 1"
    expected = {
        "TabSeparated": "1\tbonjour\n",
        "JSONEachRow": '{"id":1,"text":"bonjour"}\n',
        "CSVWithNames": '"id","text"\n1,"bonjour"\n',
        "TSVWithNamesAndTypes": "id\ttext\nUInt32\tString\n1\tbonjour\n",
    }
    for fmt, text in expected.items():
        by_setting = door.post(sql, {"default_format": fmt})
        by_clause = door.post(f"{sql} FORMAT {fmt}")
        assert by_setting.text == by_clause.text == text, fmt
        assert by_clause.headers["X-ClickHouse-Format"] == fmt
    as_json = door.post(f"{sql} FORMAT JSON").json()
    assert as_json["data"] == [{"id": 1, "text": "bonjour"}] and as_json["rows"] == 1
    assert door.post(f"{sql} FORMAT JSONCompact").json()["data"] == [[1, "bonjour"]]
    parquet = door.post(sql, {"default_format": "Parquet"}).content
    assert parquet.startswith(b"PAR1")
    answer = door.post("id = 2", {"query": "SELECT id FROM notes WHERE", "query_id": "q-42"})
    assert answer.text == "2\n"
    headers = answer.headers
    assert headers["X-ClickHouse-Query-Id"] == "q-42"
    assert headers["X-ClickHouse-Server-Display-Name"] == "test-node"
    assert headers["X-ClickHouse-Timezone"]
    assert int(_summary(headers)["read_rows"]) >= 1
    by_get = httpx.get(door.url, params={"query": "SELECT 7"}, auth=_basic(door))
    assert by_get.text == "7\n"
    for path in ("/ping", "/replicas_status"):
        assert httpx.get(door.url.rstrip("/") + path).text == "Ok.\n"
    missing = httpx.get(door.url + "nothing-here")
    assert missing.status_code == 400 and "There is no handle" in missing.text
    unknown = door.post("SELECT 1", {"some_setting_we_do_not_apply": "1"})
    assert unknown.headers["X-CitePlus-Ignored-Settings"] == "some_setting_we_do_not_apply"


def test_gzip_both_ways_and_a_gzip_bomb_is_refused(door: Door) -> None:
    sql = "SELECT number, toString(number) AS s FROM numbers(2000)"
    answer = httpx.post(
        door.url,
        params={"enable_http_compression": "1"},
        content=gzip.compress(sql.encode()),
        headers={"Content-Encoding": "gzip", "Accept-Encoding": "gzip"},
        auth=_basic(door),
    )
    assert answer.status_code == 200
    assert answer.headers["Content-Encoding"] == "gzip"  # httpx inflated it for us
    assert answer.text.splitlines()[1999] == "1999\t1999"
    plain = door.post(sql, headers={"Accept-Encoding": "gzip"})  # not asked: not compressed
    assert "Content-Encoding" not in plain.headers
    bomb = gzip.compress(b"SELECT 1 " + b" " * (50 * 1024 * 1024))
    refused = httpx.post(
        door.url, content=bomb, headers={"Content-Encoding": "gzip"}, auth=_basic(door)
    )
    assert refused.status_code == 400 and "longer than" in refused.text
    chunked = httpx.post(door.url, content=iter([b"SELECT ", b"42"]), auth=_basic(door))
    assert chunked.text == "42\n"  # a streamed (chunked) query, as the JDBC driver may send
    huge = httpx.post(door.url, content=b"SELECT 1 " + b" " * 2_000_000, auth=_basic(door))
    assert huge.status_code == 413 and "max_query_kb" in huge.text
    native = door.post("SELECT 1", {"compress": "1"})
    assert native.headers["X-ClickHouse-Exception-Code"] == "271"
    assert "compress=false" in native.text


def test_a_long_analyst_query_delays_neither_other_analysts_nor_the_sink(door: Door) -> None:
    door.warehouse.command(
        "CREATE TABLE IF NOT EXISTS landed (n UInt32) ENGINE = MergeTree ORDER BY n"
    )
    long_answer: list[httpx.Response] = []
    long = threading.Thread(
        target=lambda: long_answer.append(
            door.post("SELECT count() FROM numbers(100000000000)", {"max_execution_time": "8"})
        )
    )
    long.start()
    try:
        # while it runs: another analyst's query and the sink's insert both complete
        assert door.post("SELECT count() FROM notes").text == "2\n"
        door.warehouse.command("INSERT INTO landed VALUES (1)")
        assert long.is_alive()  # the long query was still running all along
    finally:
        long.join(120)
    assert long_answer[0].headers["X-ClickHouse-Exception-Code"] == "159"
    assert door.post("SELECT count() FROM landed").text == "1\n"


def test_the_clickhouse_connect_backend_reads_through_the_door(door: Door) -> None:
    """publish's own clickhouse-connect backend (services/warehouse/clickhouse_server.py),
    read paths only: its writes need a ClickHouse server and are tested there."""
    from services.warehouse.clickhouse_server import ClickHouseServerWarehouse

    secret = door.analyst.secret
    backend = ClickHouseServerWarehouse(f"http://analyst:{secret}@127.0.0.1:{door.port}")
    try:
        for q in QUESTIONS:
            assert backend.query_arrow(q.sql).to_pylist() == run_query(door.node, q.sql).to_pylist()
        with pytest.raises(DatabaseError, match="164"):
            backend.command("DROP TABLE notes")
    finally:
        backend.close()


def test_citeplus_sql_renders_invalid_utf8_and_says_when_refused(
    door: Door, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = run_query(door.node, "SELECT id, text FROM notes ORDER BY id")
    shown = render(table, "table").decode("utf-8")
    assert "bonjour" in shown and "\ufffdA" in shown
    assert b"\xef\xbf\xbdA" in render(table, "json")
    with pytest.raises(CiteplusError, match="Code: 62"):
        run_query(door.node, "SELECT FROM WHERE")
    with pytest.raises(CiteplusError, match="--format"):  # a FORMAT the door honours
        run_query(door.node, "SELECT id FROM notes FORMAT CSV")
    monkeypatch.setenv("CITEPLUS_SQL_USER", "analyst")
    monkeypatch.setenv("CITEPLUS_SQL_SECRET", "not-the-secret")
    with pytest.raises(CiteplusError, match="sql-users"):
        run_query(door.node, "SELECT 1")


def test_users_file_holds_hashes_only_and_a_wide_mode_is_refused(tmp_path: Path) -> None:
    ensure_operator(tmp_path)
    store = UserStore(tmp_path)
    secret = store.add("analyst")
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert secret not in store.path.read_text()
    assert store.check("analyst", secret) and not store.check("analyst", secret[:-1])
    store.remove("analyst")
    assert not store.check("analyst", secret)
    store.path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        ensure_operator(tmp_path)  # what publish runs at start
    with pytest.raises(ConfigError, match="chmod 600"):
        UserStore(tmp_path).check("operator", "x")


def _basic(door: Door) -> tuple[str, str]:
    return (door.analyst.user, door.analyst.secret)


def _summary(headers: httpx.Headers) -> dict[str, str]:
    import json

    return json.loads(headers["X-ClickHouse-Summary"])


def _jdbc_answers(output: str) -> dict[str, dict[str, object]]:
    """The JDBC program's output: slug -> columns and rows, or its error code."""
    answers: dict[str, dict[str, object]] = {}
    current: dict[str, object] | None = None
    for line in output.splitlines():
        if line.startswith("#"):
            slug, _, columns = line[1:].partition("\t")
            current = answers[slug] = {"columns": columns.split(","), "rows": []}
        elif line.startswith("!"):
            slug, _state, code, message = line[1:].split("\t", 3)
            answers[slug] = {"error": int(code), "message": message}
            current = None
        elif current is not None:
            current["rows"].append(line.split("\t"))  # type: ignore[union-attr]
    return answers


def _same_cell(jdbc: str, ours: object) -> bool:
    if ours is None:
        return jdbc == "NULL"
    if isinstance(ours, (int, float)) and not isinstance(ours, bool):
        return abs(float(jdbc) - float(ours)) < 1e-9 * max(1.0, abs(float(ours)))
    text = str(ours)
    return jdbc == text or jdbc.replace("T", " ").startswith(text.split("+")[0][:16])


def test_the_jdbc_driver_answers_the_analyst_questions(door: Door, tmp_path: Path) -> None:
    """ClickHouse JDBC 0.10.0 (what DBeaver and Superset load), with compress=false: the
    driver's default ClickHouse-native LZ4 framing is refused with that advice."""
    from testkit.jdbc import program_is_current, run_questions

    assert program_is_current(), "recompile tests/fixtures/jdbc/Questions.java (see its header)"
    questions = {q.slug: q.sql for q in QUESTIONS}
    questions["insert"] = "INSERT INTO notes VALUES (9, 'jdbc')"
    url = f"jdbc:clickhouse://127.0.0.1:{door.port}/default?compress=false"
    output = run_questions(url, door.analyst.user, door.analyst.secret, questions, tmp_path)
    print(output)  # shown when the test fails
    answers = _jdbc_answers(output)
    for q in QUESTIONS:
        expected = run_query(door.node, q.sql)
        got = answers[q.slug]
        assert got.get("columns") == expected.column_names, (q.slug, got)
        rows = expected.to_pylist()
        assert len(got["rows"]) == len(rows), q.slug  # type: ignore[arg-type]
        for jdbc_row, row in zip(got["rows"], rows, strict=True):  # type: ignore[call-overload]
            for cell, name in zip(jdbc_row, expected.column_names, strict=True):
                assert _same_cell(cell, row[name]), (q.slug, name, cell, row[name])
    assert answers["insert"]["error"] == 164
    compressed = url.replace("?compress=false", "")
    advice = _jdbc_answers(
        run_questions(
            compressed, door.analyst.user, door.analyst.secret, {"one": "SELECT 1"}, tmp_path
        )
    )
    assert advice["one"]["error"] == 271 and "compress=false" in str(advice["one"]["message"])
    wrong = run_questions(url, door.analyst.user, "wrong", {"one": "SELECT 1"}, tmp_path)
    assert _jdbc_answers(wrong)["one"]["error"] == 516


def test_settings_sent_as_parameters_neither_read_nor_write_node_files(
    door: Door, tmp_path: Path
) -> None:
    """chDB is clickhouse-local: format settings naming files take any path. A client's
    parameters must not turn the door into a file reader or writer on the node."""
    secret = tmp_path / "node-secret.txt"
    secret.write_text("the-node-secret-line\n")
    template = tmp_path / "row.template"
    template.write_text("${0:Escaped}\n")
    written = tmp_path / "schema.capnp"
    attempts = [
        ({"format_template_row": str(secret), "default_format": "Template"}, "SELECT 1"),
        ({"format_template_resultset": str(secret), "default_format": "Template"}, "SELECT 1"),
        ({"format_template_row": str(template), "default_format": "Template"}, "SELECT 1"),
        ({"format_schema": f"{secret}:Row", "default_format": "Protobuf"}, "SELECT 1 AS a"),
        ({"output_format_schema": str(written), "default_format": "CapnProto"}, "SELECT 1 AS a"),
        ({"default_format": "TabSeparated', readonly=0, x='"}, "SELECT 1"),
        ({"output_format_csv_crlf_end_of_line": "1', readonly=0, x='"}, "SELECT 1"),
        ({"database": "default`; DROP TABLE notes; --"}, "SELECT 1"),
    ]
    for params, sql in attempts:
        answer = door.post(sql, params)
        assert "the-node-secret-line" not in answer.text, params
        assert answer.status_code != 200 or "X-CitePlus-Ignored-Settings" in answer.headers, params
    assert not written.exists()
    assert door.post("SELECT count() FROM notes").text == "2\n"


def test_the_citeplus_sql_command_through_the_door(door: Door) -> None:
    """The operator's command, as typed: its formats, its exit codes, ClickHouse's words."""
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "CITEPLUS_NODE_STATE_DIR": str(door.state),
        "CITEPLUS_SQL_PORT": str(door.port),
    }
    env.pop("CITEPLUS_SQL_USER", None)
    env.pop("CITEPLUS_SQL_SECRET", None)

    def citeplus_sql(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "services.cli", "sql", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    done = citeplus_sql("--format", "csv", "SELECT id, text FROM notes WHERE id = 1")
    assert done.returncode == 0, done.stderr
    assert done.stdout == '"id","text"\n1,"bonjour"\n'
    refused = citeplus_sql("SELECT * FROM no_such_table")
    assert refused.returncode != 0 and "Code: 60" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_partners_clickhouse_connect_reads_its_views_and_nothing_else(door: Door) -> None:
    """clickhouse-connect reads system settings when it connects: a partner's analyst
    connects, reads its partner's views (Arrow, pandas), and no other table."""
    client = door.client(door.partner)
    mine = "SELECT count() AS n, sum(value) AS kwh FROM observations WHERE metric != 'no2'"
    expected = run_query(door.node, mine.replace("observations", "default.observations"))
    assert client.query_arrow(mine).to_pylist() == expected.to_pylist()
    assert expected.to_pylist()[0]["n"] > 0
    assert list(client.query_df("SELECT id, licence FROM datasets ORDER BY id")["id"]) == [
        "lyon/energy-aggregates",
        "lyon/linky-gateway",
    ]
    assert client.query("SELECT currentDatabase()").result_rows == [("partner_grenoble",)]
    # another database's names: refused; an unqualified name is looked up in its own
    # database only, where it is unknown (60) exactly as a name that exists nowhere
    for sql, code in (
        ("SELECT * FROM default.observations", 497),
        ("SELECT * FROM default.notes", 497),
        ("SELECT * FROM file('/etc/hostname', 'LineAsString')", 497),
        ("SELECT * FROM notes", 60),
        ("SELECT * FROM dead_letters", 60),
    ):
        with pytest.raises(DatabaseError, match=f"code: {code}") as refused:
            client.query(sql)
        assert "bonjour" not in str(refused.value), sql
    with pytest.raises(DatabaseError, match="code: 164"):
        client.insert("observations", [[1.5]], column_names=["value"])
    raised = door.post("SELECT 1", {"max_result_rows": "100000"}, headers=_as(door.partner))
    assert raised.headers["X-ClickHouse-Exception-Code"] == "452"


def test_a_partners_jdbc_driver_reads_its_views_and_nothing_else(
    door: Door, tmp_path: Path
) -> None:
    from testkit.jdbc import run_questions

    url = f"jdbc:clickhouse://127.0.0.1:{door.port}/default?compress=false"
    questions = {
        "mine": "SELECT count() AS n FROM observations",
        "notes": "SELECT * FROM notes",
        "hidden": "SELECT count() AS n FROM default.observations",
    }
    output = run_questions(url, door.partner.user, door.partner.secret, questions, tmp_path)
    print(output)  # shown when the test fails
    answers = _jdbc_answers(output)
    own = run_query(door.node, "SELECT count() AS n FROM default.observations WHERE source = "
                    "'linky-gateway'").to_pylist()[0]["n"]  # fmt: skip
    assert answers["mine"]["rows"] == [[str(own)]]
    assert answers["notes"]["error"] == 60  # unknown in its database, as any missing name
    assert answers["hidden"]["error"] == 497
    assert "bonjour" not in output


def _as(who: Credentials) -> dict[str, str]:
    return {"X-ClickHouse-User": who.user, "X-ClickHouse-Key": who.secret}


def test_a_stranger_cannot_forge_headers_nor_hold_a_connection_open(door: Door) -> None:
    """Failed before: a CR LF in query_id added a Set-Cookie header of the stranger's
    choice to the door's answer (before any login), and a client that sent half a
    request held its connection (and a thread of publish) for ever."""
    with socket.create_connection(("127.0.0.1", door.port), timeout=60) as conn:
        conn.sendall(
            b"GET /?query=SELECT%201&query_id=x%0d%0aSet-Cookie:%20evil=1 HTTP/1.1\r\n"
            b"Host: door\r\nConnection: close\r\n\r\n"
        )
        answer = _read_all(conn)
    head = answer.split(b"\r\n\r\n")[0]
    assert b"\r\nSet-Cookie" not in head, head
    assert head.startswith(b"HTTP/1.1 400") and b"X-ClickHouse-Exception-Code: 36" in head
    server = ClickHouseHttpServer(
        door.service.server.door,
        "127.0.0.1",
        0,
        max_body_bytes=1024,
        idle_timeout_s=0.5,
    ).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=60) as slow:
            slow.sendall(b"POST / HTTP/1.1\r\nHost: door\r\n")  # and nothing more
            assert _read_all(slow) == b""  # closed by the door, not by the 60 s bound
    finally:
        server.stop()


def test_connections_beyond_the_doors_cap_are_refused_not_threaded(door: Door) -> None:
    """Failed before: every connection a stranger opened got a thread and a socket of
    publish (the sink's process), without bound. Beyond the cap, a connection gets
    ClickHouse's 503 at once; once connections close, the door answers again."""
    server = ClickHouseHttpServer(
        door.service.server.door, "127.0.0.1", 0, max_body_bytes=1024, max_connections=2
    ).start()
    try:
        held = [socket.create_connection(("127.0.0.1", server.port), timeout=60) for _ in "ab"]
        for conn in held:  # each is served: its thread and slot are taken
            conn.sendall(b"GET /ping HTTP/1.1\r\nHost: door\r\n\r\n")
            assert conn.recv(65536).startswith(b"HTTP/1.1 200")
        with socket.create_connection(("127.0.0.1", server.port), timeout=60) as extra:
            refused = _read_all(extra)
        assert refused.startswith(b"HTTP/1.1 503"), refused[:200]
        assert b"X-ClickHouse-Exception-Code: 202" in refused and b"Code: 202." in refused
        for conn in held:
            conn.close()
        for _ in range(600):  # the slots come back as the threads end (bounded poll)
            with socket.create_connection(("127.0.0.1", server.port), timeout=60) as again:
                again.sendall(b"GET /ping HTTP/1.1\r\nHost: door\r\nConnection: close\r\n\r\n")
                if _read_all(again).startswith(b"HTTP/1.1 200"):
                    break
            threading.Event().wait(0.05)
        else:
            raise AssertionError("the door never answered again after connections closed")
    finally:
        server.stop()


def _read_all(conn: socket.socket) -> bytes:
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    return data
