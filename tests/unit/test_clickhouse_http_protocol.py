"""Reading ClickHouse HTTP requests (services/publish/clickhouse_http): pure functions,
what a clumsy or hostile client sends in parameters, headers and bodies."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import pytest

from services.publish.clickhouse_http import compression, errors, protocol
from services.publish.sql_access import AuthorizedQuery, limit_settings
from services.publish.sql_guard import SqlRefused, client_settings
from services.publish.sql_users import Credentials, basic_authorization
from services.warehouse.query import QueryLimits

LIMITS = QueryLimits(max_rows=1000, max_bytes=10_000, max_seconds=30)


def test_credentials_come_from_clickhouse_headers_then_basic_then_the_url() -> None:
    basic = {"Authorization": basic_authorization(Credentials("grafana", "g"))}
    both = {**basic, "X-ClickHouse-User": "jdbc", "X-ClickHouse-Key": "j"}
    assert protocol.credentials(both, {}) == Credentials("jdbc", "j")
    assert protocol.credentials(basic, {"user": "u", "password": "p"}) == Credentials(
        "grafana", "g"
    )
    assert protocol.credentials({}, {"user": "u", "password": "p"}) == Credentials("u", "p")
    assert protocol.credentials({"Authorization": "Bearer x"}, {}) is None


def test_the_url_query_and_the_body_are_joined_on_a_new_line() -> None:
    assert (
        protocol.query_text("SELECT id FROM t WHERE", b"id = 2") == "SELECT id FROM t WHERE\nid = 2"
    )
    assert protocol.query_text(None, b"SELECT 1") == "SELECT 1"
    for url, body in ((None, b""), ("  ", b"\n")):
        with pytest.raises(errors.ClickHouseError) as empty:
            protocol.query_text(url, body)
        assert empty.value.code == errors.BAD_ARGUMENTS and "query" in str(empty.value)
    with pytest.raises(errors.ClickHouseError, match="UTF-8"):
        protocol.query_text(None, b"SELECT '\xff'")


def test_limits_may_be_lowered_never_raised_nor_lifted() -> None:
    fixed = limit_settings(LIMITS)
    vetted = client_settings(
        {"max_execution_time": "5", "max_result_rows": "10"}, fixed, partner=False
    )
    assert vetted.lowered == {"max_execution_time": 5, "max_result_rows": 10}
    for name, value in (("max_execution_time", "31"), ("max_result_rows", "0")):
        with pytest.raises(SqlRefused) as raised:
            client_settings({name: value}, fixed, partner=False)
        assert raised.value.code == errors.SETTING_CONSTRAINT_VIOLATION
        assert "shouldn't be greater than" in raised.value.message
    with pytest.raises(SqlRefused) as writable:
        client_settings({"readonly": "0"}, fixed, partner=True)
    assert writable.value.code == errors.READONLY
    with pytest.raises(SqlRefused, match="not a number"):
        client_settings({"max_result_rows": "lots"}, fixed, partner=False)


def test_parameters_are_sorted_into_transport_settings_and_query_parameters() -> None:
    query = protocol.parse(
        {
            "database": "analytics",
            "default_format": "JSON",
            "query_id": "q1",
            "session_id": "s",
            "wait_end_of_query": "1",
            "param_city": "lyon",
            "output_format_json_quote_64bit_integers": "0",
            "max_threads": "1",
            "some_future_setting": "1",
        },
        "SELECT 1",
        {"X-ClickHouse-Format": "Native"},
    )
    assert (query.database, query.default_format, query.query_id) == ("analytics", "JSON", "q1")
    assert query.params == {"city": "lyon"}
    assert query.settings == {
        "output_format_json_quote_64bit_integers": "0",
        "max_threads": "1",
        "some_future_setting": "1",
    }
    vetted = client_settings(query.settings, limit_settings(LIMITS), partner=False)
    assert vetted.applied == {"output_format_json_quote_64bit_integers": "0"}
    assert vetted.lowered == {"max_threads": 1}
    assert vetted.ignored == ("some_future_setting",)
    with pytest.raises(SqlRefused) as partner:  # a partner's client: refused, not ignored
        client_settings(query.settings, limit_settings(LIMITS), partner=True)
    assert partner.value.code == errors.READONLY
    jdbc = protocol.parse({}, "SELECT 1", {"X-ClickHouse-Format": "RowBinary"})
    assert jdbc.default_format == "RowBinary" and jdbc.database == "default"
    assert jdbc.query_id  # one is made when the client sends none


def test_settings_naming_files_are_refused_for_every_user() -> None:
    for name in ("format_template_row", "output_format_schema", "format_schema"):
        for partner in (False, True):
            with pytest.raises(SqlRefused) as refused:
                client_settings({name: "/etc/passwd"}, limit_settings(LIMITS), partner=partner)
            assert refused.value.code == errors.ACCESS_DENIED


def test_the_settings_clause_quotes_values_and_puts_read_only_last() -> None:
    query = AuthorizedQuery("a", None, "SELECT 1", None, limit_settings(LIMITS))
    sent = {"output_format_csv_delimiter": "\\', readonly=0, x='", "max_result_rows": "10"}
    clause = query.with_client_settings(sent).sql()
    assert clause.startswith(
        "SELECT 1\nSETTINGS output_format_csv_delimiter='\\\\\\', readonly=0, x=\\'', "
    )
    assert "max_result_rows=10," in clause and clause.endswith("readonly=1")


def test_bodies_are_inflated_within_the_limit_or_refused() -> None:
    sql = b"SELECT 1"
    assert protocol.decoded_body(gzip.compress(sql), "gzip", 100) == sql
    assert protocol.decoded_body(zlib.compress(sql), "deflate", 100) == sql
    assert protocol.decoded_body(sql, None, 100) == sql
    bomb = gzip.compress(b" " * 1_000_000)
    with pytest.raises(errors.ClickHouseError, match="longer than 1000 bytes"):
        protocol.decoded_body(bomb, "gzip", 1000)
    for body, encoding in ((b"not gzip", "gzip"), (gzip.compress(sql)[:-6], "gzip"), (sql, "br")):
        with pytest.raises(errors.ClickHouseError) as refused:
            protocol.decoded_body(body, encoding, 1000)
        assert refused.value.code == errors.CANNOT_DECOMPRESS


def test_engine_errors_keep_clickhouse_codes_and_statuses() -> None:
    engine = RuntimeError("Code: 60. DB::Exception: Unknown table expression identifier 'x'.")
    error = errors.from_engine(engine)
    assert (error.code, error.status) == (60, 404)
    assert error.text().startswith("Code: 60. DB::Exception: Unknown table")
    assert errors.from_engine(RuntimeError("boom")).status == 500
    assert errors.http_status(errors.AUTHENTICATION_FAILED) == 401
    assert errors.http_status(62) == 400  # the client's SQL: never a 5xx
    assert errors.error_text(516, "x").endswith("(AUTHENTICATION_FAILED)\n")


def test_answers_are_compressed_only_when_the_client_enables_it() -> None:
    accepts = {"Accept-Encoding": "br, gzip;q=0.9"}
    assert compression.chosen_encoding({}, accepts) is None
    assert compression.chosen_encoding({"enable_http_compression": "1"}, accepts) == "gzip"
    assert compression.chosen_encoding({"enable_http_compression": "1"}, {}) is None


def test_an_lz4_bomb_is_refused_before_it_is_inflated() -> None:
    """Failed before: an LZ4 body was inflated whole, then measured (a 0.9 MB body
    under the 1 MB limit held 200 MB of publish's memory, the sink's process)."""
    import tracemalloc

    import lz4.frame

    sql = b"SELECT 1"
    assert protocol.decoded_body(lz4.frame.compress(sql), "lz4", 100) == sql
    bomb = lz4.frame.compress(b"S" * (64 * 1024 * 1024))
    tracemalloc.start()
    try:
        with pytest.raises(errors.ClickHouseError, match="longer than 1000 bytes"):
            protocol.decoded_body(bomb, "lz4", 1000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"{peak / 1e6:.0f} MB held to refuse a bomb"
    with pytest.raises(errors.ClickHouseError) as refused:
        protocol.decoded_body(lz4.frame.compress(sql)[:-4], "lz4", 1000)
    assert refused.value.code == errors.CANNOT_DECOMPRESS


def test_a_body_after_the_end_of_its_compressed_stream_is_refused_not_dropped() -> None:
    """Failed before: a second gzip member or LZ4 frame was silently dropped, so the
    query run was not the query sent."""
    import lz4.frame

    for pack, encoding in ((gzip.compress, "gzip"), (lz4.frame.compress, "lz4")):
        body = pack(b"SELECT 1") + pack(b" UNION ALL SELECT 2")
        with pytest.raises(errors.ClickHouseError, match="after the end") as refused:
            protocol.decoded_body(body, encoding, 1000)
        assert refused.value.code == errors.CANNOT_DECOMPRESS


def test_a_query_id_that_would_forge_response_headers_is_refused() -> None:
    """Failed before: the query_id of the URL was echoed raw in X-ClickHouse-Query-Id,
    so a CR LF in it added headers of the caller's choice to the answer, even to a
    stranger's request (and a non-Latin-1 one broke the answer)."""
    assert protocol.query_id({"query_id": "grafana-42:a_b.c"}) == "grafana-42:a_b.c"
    assert len(protocol.query_id({})) == 36  # a fresh UUID, as ClickHouse gives
    for forged in ("x\r\nSet-Cookie: a=1", "x\nX: y", "é€", "x" * 1000):
        with pytest.raises(errors.ClickHouseError) as refused:
            protocol.query_id({"query_id": forged})
        assert refused.value.code == errors.BAD_ARGUMENTS and "query_id" in str(refused.value)


def test_a_flood_of_wrong_passwords_does_not_lock_out_a_known_analyst(tmp_path: Path) -> None:
    """Failed before: every login, even one whose secret the door had already
    verified, queued behind the slow checks of a stranger's guesses and got code
    202 while the guesses lasted. A verified secret is now recognised without a
    slot; a new guess still waits for one."""
    from services.publish.clickhouse_http.auth import Gate
    from services.publish.sql_users import UserStore, ensure_operator

    ensure_operator(tmp_path)
    users = UserStore(tmp_path)
    secret = users.add("analyst")
    gate = Gate(users, at_once=1, wait_s=0.2)
    assert gate.user(Credentials("analyst", secret)) == "analyst"  # verified once
    gate._checking.acquire()  # a stranger's guess being checked, slot taken
    try:
        assert gate.user(Credentials("analyst", secret)) == "analyst"
        for guess in (Credentials("analyst", "guess"), Credentials("nobody", "guess")):
            with pytest.raises(errors.ClickHouseError) as waited:
                gate.user(guess)
            assert waited.value.code == errors.TOO_MANY_SIMULTANEOUS_QUERIES
    finally:
        gate._checking.release()
    with pytest.raises(errors.ClickHouseError) as wrong:
        gate.user(Credentials("analyst", "guess"))
    assert wrong.value.code == errors.AUTHENTICATION_FAILED
