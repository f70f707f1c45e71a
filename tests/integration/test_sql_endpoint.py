"""The warehouse SQL endpoint (POST /v1/sql, the path of ``citeplus sql``) as a
hostile or clumsy client meets it: a real chDB warehouse behind publish's HTTP
server on loopback, users in a real users file.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest

from services.publish.main import run_query
from services.publish.service import sql_endpoint
from services.publish.sql_users import (
    Credentials,
    UserStore,
    basic_authorization,
    ensure_operator,
    local_credentials,
)
from services.runtime.config import SERVICE_PORT_OFFSETS, NodeConfig, load_node_config
from services.runtime.errors import CiteplusError, ConfigError
from services.runtime.metrics import MetricsServer, ServiceMetrics
from services.warehouse.chdb_embedded import ChdbWarehouse
from services.warehouse.query import QueryLimits, from_ipc, render

pytestmark = pytest.mark.integration


@dataclass
class Endpoint:
    url: str
    node: NodeConfig
    state: Path
    analyst: Credentials

    def post(self, sql: str, credentials: Credentials | None = None) -> httpx.Response:
        headers = {"Authorization": basic_authorization(credentials)} if credentials else {}
        return httpx.post(self.url, content=sql.encode(), headers=headers, timeout=60)


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    state = tmp_path_factory.mktemp("sql-state")
    warehouse = ChdbWarehouse(state / "warehouse")
    warehouse.command("CREATE TABLE notes (id UInt32, text String) ENGINE = MergeTree ORDER BY id")
    warehouse.command("INSERT INTO notes VALUES (1, 'bonjour'), (2, unhex('FF41'))")
    ensure_operator(state)
    store = UserStore(state)
    analyst = Credentials("analyst", store.add("analyst"))
    limits = QueryLimits(max_rows=1000, max_seconds=2)
    server = MetricsServer(
        ServiceMetrics("publish"),
        "127.0.0.1",
        0,
        post_routes={"/v1/sql": sql_endpoint(warehouse, store, limits)},
    ).start()
    base = load_node_config()
    node = replace(
        base,
        node=replace(base.node, state_dir=str(state)),
        metrics=replace(base.metrics, base_port=server.port - SERVICE_PORT_OFFSETS["publish"]),
    )
    try:
        yield Endpoint(f"http://127.0.0.1:{server.port}/v1/sql", node, state, analyst)
    finally:
        server.stop()
        warehouse.close()


def test_a_query_without_credentials_is_refused(endpoint: Endpoint) -> None:
    answer = endpoint.post("SELECT count() FROM notes")
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Basic")
    assert "bonjour" not in answer.text


def test_a_wrong_secret_or_an_unknown_user_is_refused_alike(endpoint: Endpoint) -> None:
    wrong = endpoint.post("SELECT 1", Credentials("analyst", endpoint.analyst.secret + "x"))
    unknown = endpoint.post("SELECT 1", Credentials("nobody", endpoint.analyst.secret))
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.text == unknown.text
    assert endpoint.post("SELECT 1", endpoint.analyst).status_code == 200


def test_writes_and_reads_outside_the_warehouse_are_refused(
    endpoint: Endpoint, tmp_path: Path
) -> None:
    target = tmp_path / "written.csv"
    attempts = [
        "INSERT INTO notes VALUES (3, 'x')",
        "DROP TABLE notes",
        f"SELECT 1 INTO OUTFILE '{target}'",  # chDB writes it even with readonly=1
        f"SELECT 1 /* */ INTO /* x */ OUTFILE '{target}' FORMAT CSV",
        "SELECT * FROM file('/etc/hostname', 'LineAsString')",  # a file of the node
        "SELECT 1 SETTINGS readonly=0",
        "SELECT 1; DROP TABLE notes",
    ]
    for sql in attempts:
        answer = endpoint.post(sql, endpoint.analyst)
        assert answer.status_code == 400, (sql, answer.status_code)
    # ClickHouse's parser finds file(); its read-only mode refuses the settings change.
    assert "node's files" in endpoint.post(attempts[4], endpoint.analyst).text
    assert "readonly" in endpoint.post(attempts[5], endpoint.analyst).text.lower()
    assert not target.exists()
    rows = from_ipc(endpoint.post("SELECT count() AS n FROM notes", endpoint.analyst).content)
    assert rows.to_pylist() == [{"n": 2}]


def test_results_are_bounded(endpoint: Endpoint) -> None:
    answer = endpoint.post("SELECT number FROM system.numbers LIMIT 5000", endpoint.analyst)
    assert answer.status_code == 400 and "max rows" in answer.text.lower()
    timed = endpoint.post("SELECT count() FROM numbers(100000000000)", endpoint.analyst)
    assert timed.status_code == 400 and "timeout" in timed.text.lower()


def test_invalid_utf8_in_results_is_rendered_by_citeplus_sql(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CITEPLUS_SQL_USER", raising=False)
    table = run_query(endpoint.node, "SELECT id, text FROM notes ORDER BY id")
    shown = render(table, "table").decode("utf-8")
    assert "bonjour" in shown and "\ufffdA" in shown
    assert b"\xef\xbf\xbdA" in render(table, "json")


def test_citeplus_sql_uses_the_operator_credentials_and_says_when_refused(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert local_credentials(endpoint.state).user == "operator"
    assert run_query(endpoint.node, "SELECT 1 AS one").to_pylist() == [{"one": 1}]
    monkeypatch.setenv("CITEPLUS_SQL_USER", "analyst")
    monkeypatch.setenv("CITEPLUS_SQL_SECRET", "not-the-secret")
    with pytest.raises(CiteplusError, match="sql-users"):
        run_query(endpoint.node, "SELECT 1")


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
