"""Ingest under abuse, over HTTP against the real broker: gzip bombs, slow and
greedy clients, floods of bad lines, guesses without a token and huge values must
meet a bound and a short, precise answer (bounds set small here: they are the
node's `ingest` settings, see services/ingest/limits.py)."""

from __future__ import annotations

import contextlib
import gzip
import logging
import select
import socket
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from services.ingest.connections import GUARD
from services.ingest.core import IngestTopics
from services.ingest.http_api import BODY_STATS, BUDGET
from services.ingest.letter_cap import MAX_LETTERS_PER_BATCH, SUMMARY_REASON
from services.ingest.limits import HttpLimits
from services.ingest.service import build_core
from services.runtime.cities import load_cities
from testkit.ingest import RunningIngest, serve_ingest
from testkit.kafka import read_all

pytestmark = pytest.mark.integration

CITY = """
code: boundville
name: Boundville
timezone: Europe/Paris
sources:
  - {id: meters, format: ndjson, dataset: load-curves, domain: energy, entity: meter,
     token: "env:BV_METERS", numeric: [wh]}
  - {id: air, format: ndjson, dataset: air, domain: environment, entity: station,
     token: "env:BV_AIR"}
"""
METERS = "/v1/cities/boundville/sources/meters/records"
AIR = "/v1/cities/boundville/sources/air/records"
MiB = 1024 * 1024
GOOD = b'{"meter": "m1", "wh": 5}\n'


@pytest.fixture()
def start(node, isolated_topics, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Starts ingest with the given bounds on its own topics: (running, topics, contracts)."""
    monkeypatch.setenv("BV_METERS", "tok-meters")
    monkeypatch.setenv("BV_AIR", "tok-air")
    (tmp_path / "boundville.yaml").write_text(CITY)
    cities = load_cities(tmp_path)
    with contextlib.ExitStack() as stack:

        def run(**bounds: object) -> tuple[RunningIngest, IngestTopics, object]:
            specs, contracts = isolated_topics("raw.v1", "dlq.v1", "raw.dlq.v1", partitions=1)
            topics = IngestTopics(raw=specs["raw.v1"].name, dead_letters=specs["dlq.v1"].name)
            core = build_core(node, contracts, cities, topics=topics, instance=topics.raw)
            limits = HttpLimits(**bounds)  # type: ignore[arg-type]
            running = stack.enter_context(serve_ingest(core, cities, bounds=limits))
            return running, topics, contracts

        yield run


def post(running: RunningIngest, path: str, body: bytes, token: str | None, **headers: str):
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(f"{running.url}{path}", content=body, headers=headers, timeout=60)


def gzip_bomb(inflated: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"\n" * MiB
    return b"".join([*(packer.compress(block) for _ in range(inflated // MiB)), packer.flush()])


def eventually(condition: Callable[[], bool], what: str, bound_s: float = 20.0) -> None:
    """Polls ``condition`` until true; fails after a generous bound (not a timing assert)."""
    deadline = time.monotonic() + bound_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.02)


def test_a_gzip_bomb_is_refused_before_more_than_the_cap_is_inflated(start) -> None:
    running, _, _ = start(max_body=MiB)
    bomb = gzip_bomb(64 * MiB)  # 64 KiB on the wire
    refused = post(running, METERS, bomb, "tok-meters", **{"Content-Encoding": "gzip"})
    assert refused.status_code == 413, refused.text
    assert "decompressed" in refused.json()["error"]
    # Inflated up to the first byte past the cap, not one more: today aiohttp
    # inflated ahead of the reader and kept inflating what the refused client sent.
    assert running.app[BODY_STATS].largest_inflated <= MiB + 1
    assert running.app[BUDGET].held == 0  # what it held is given back

    # Honest compressed bodies go through; other codings are named in a 415.
    lines = b"".join(b'{"meter": "m%d", "wh": %d}\n' % (i % 7, i) for i in range(2_000))
    zipped = post(
        running, METERS, gzip.compress(lines), "tok-meters", **{"Content-Encoding": "gzip"}
    )
    assert zipped.status_code == 200 and zipped.json()["accepted"] == 2_000
    deflated = post(
        running, METERS, zlib.compress(GOOD), "tok-meters", **{"Content-Encoding": "deflate"}
    )
    assert deflated.status_code == 200 and deflated.json()["accepted"] == 1
    for coding in ("br", "compress", "gzip, br"):
        unsupported = post(running, METERS, GOOD, "tok-meters", **{"Content-Encoding": coding})
        assert unsupported.status_code == 415, coding
        assert "gzip" in unsupported.json()["error"] and "Please install" not in unsupported.text
    truncated = post(
        running, METERS, gzip.compress(lines)[:-20], "tok-meters", **{"Content-Encoding": "gzip"}
    )
    assert truncated.status_code == 400 and "truncated" in truncated.json()["error"]


def test_eight_bombs_at_once_stay_within_the_memory_budget(start) -> None:
    running, _, _ = start(max_body=4 * MiB, body_memory=6 * MiB)
    bomb = gzip_bomb(64 * MiB)
    headers = {"Content-Encoding": "gzip"}
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda _: post(running, METERS, bomb, "tok-meters", **headers), range(8))
        )
    assert {a.status_code for a in answers} <= {413, 503}, [a.text for a in answers]
    for busy in (a for a in answers if a.status_code == 503):
        assert int(busy.headers["Retry-After"]) >= 1
    budget = running.app[BUDGET]
    assert budget.peak <= 6 * MiB and budget.held == 0
    assert running.app[BODY_STATS].largest_inflated <= 4 * MiB + 1


def raw_request(running: RunningIngest, head: bytes) -> socket.socket:
    port = int(running.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(head)
    return sock


def drip_until_answered(sock: socket.socket, drop: bytes, bound_s: float = 30.0) -> bytes:
    """Sends ``drop`` every 0.1 s until the server answers or closes; its answer."""
    deadline = time.monotonic() + bound_s
    answer = b""
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], 0.1)
        if readable:
            chunk = sock.recv(65536)
            if not chunk:
                return answer
            answer += chunk
            continue
        try:
            sock.sendall(drop)
        except OSError:
            return answer + sock.recv(65536)
    raise AssertionError(f"the slow client was never cut; got {answer!r}")


def test_a_slow_body_is_cut(start) -> None:
    running, _, _ = start(body_window_s=0.5, body_min_rate=1024)
    head = (
        f"POST {METERS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-meters\r\n"
        "Content-Length: 100000\r\n\r\n"
    ).encode()
    with raw_request(running, head) as sock:
        answer = drip_until_answered(sock, b"{" * 10)  # 100 bytes/s
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"slower than 1,024 bytes/s" in answer


def test_slow_headers_are_cut(start) -> None:
    running, _, _ = start(header_timeout_s=0.5)
    with raw_request(running, f"POST {METERS} HTTP/1.1\r\nHost: x\r\n".encode()) as sock:
        answer = drip_until_answered(sock, b"X")  # a header that never ends
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    # A connection that never sends a byte is cut as well.
    with raw_request(running, b"") as sock:
        assert drip_until_answered(sock, b"").startswith(b"HTTP/1.1 408")


def test_a_client_gone_mid_body_is_one_log_line(start, caplog: pytest.LogCaptureFixture) -> None:
    running, _, _ = start()
    caplog.set_level(logging.INFO)
    head = (
        f"POST {METERS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-meters\r\n"
        "Content-Length: 100000\r\n\r\n"
    ).encode()
    with raw_request(running, head + b"{" * 100):
        eventually(lambda: running.app[GUARD].in_progress(("boundville", "meters")) == 1, "read")
    eventually(lambda: any("went away" in r.getMessage() for r in caplog.records), "log line")
    eventually(lambda: running.app[GUARD].in_progress(("boundville", "meters")) == 0, "done")
    assert len([r for r in caplog.records if "went away" in r.getMessage()]) == 1
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []


def test_a_source_with_too_many_requests_in_progress_gets_429(start) -> None:
    running, _, _ = start(max_requests_per_source=2)
    head = (
        f"POST {METERS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-meters\r\n"
        f"Content-Length: {len(GOOD) + 1}\r\n\r\n"
    ).encode()
    key = ("boundville", "meters")
    with raw_request(running, head + GOOD) as one, raw_request(running, head + GOOD) as two:
        eventually(lambda: running.app[GUARD].in_progress(key) == 2, "two requests reading")
        third = post(running, METERS, GOOD, "tok-meters")
        assert third.status_code == 429 and int(third.headers["Retry-After"]) >= 1
        assert post(running, AIR, b'{"station": "s", "no2": 3}\n', "tok-air").status_code == 200
        for sock in (one, two):
            sock.sendall(b"\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    assert post(running, METERS, GOOD, "tok-meters").status_code == 200


def test_connections_beyond_the_cap_get_503(start) -> None:
    running, _, _ = start(max_connections=3)
    guard = running.app[GUARD]
    with contextlib.ExitStack() as stack:
        for _ in range(3):
            stack.enter_context(raw_request(running, b""))
        eventually(lambda: guard.open == 3, "three connections open")
        busy = httpx.get(f"{running.url}/healthz", timeout=30)
        assert busy.status_code == 503 and int(busy.headers["Retry-After"]) >= 1
    eventually(lambda: guard.open == 0, "connections closed")
    assert httpx.get(f"{running.url}/healthz", timeout=30).status_code == 200


def test_a_flood_of_bad_lines_makes_100_letters_and_one_summary(node, start) -> None:
    running, topics, contracts = start()
    body = b"not json\n" * 3_000 + b'{"meter": "m", "wh": "x"}\n' * 2_000 + GOOD
    answer = post(running, METERS, body, "tok-meters")
    assert answer.status_code == 200, answer.text
    assert (answer.json()["accepted"], answer.json()["rejected"]) == (1, 5_000)
    letters = [
        contracts.codec(topics.dead_letters).decode(m.value())
        for m in read_all(node, topics.dead_letters, expected=MAX_LETTERS_PER_BATCH + 1)
    ]
    # One transaction: a letter more would have come with these (read until quiet).
    assert len(letters) == MAX_LETTERS_PER_BATCH + 1
    [summary] = [x for x in letters if x["reason"] == SUMMARY_REASON]
    assert "bad-json × 2,900" in summary["message"] and "bad-number × 2,000" in summary["message"]
    assert "4,900 more rejects" in summary["message"] and summary["original_value"] is None
    # The restricted raw dead letters keep every reject, whole.
    raw = read_all(node, topics.raw_dead_letters, expected=5_000, timeout_s=60)
    assert len(raw) == 5_000


def test_nothing_before_authentication(start) -> None:
    running, _, _ = start()
    names = (b"boundville", b"meters", b"air")
    for token in (None, "guess"):
        catalogue = httpx.get(f"{running.url}/v1/cities", headers=_auth(token), timeout=30)
        assert catalogue.status_code == 401 and not any(n in catalogue.content for n in names)
    answers = [
        post(running, path, GOOD, token)
        for path in (METERS, "/v1/cities/atlantis/sources/x/records")
        for token in (None, "guess")
    ]
    assert {a.status_code for a in answers} == {401}
    assert not any(n in a.content for a in answers for n in names)
    assert answers[1].content == answers[3].content  # a guess learns nothing of the path

    allowed = httpx.get(f"{running.url}/v1/cities", headers=_auth("tok-air"), timeout=30)
    assert allowed.status_code == 200 and "boundville" in allowed.json()
    unknown = post(running, "/v1/cities/atlantis/sources/x/records", GOOD, "tok-air")
    assert unknown.status_code == 404 and not any(n in unknown.content for n in names)
    other = post(running, METERS, GOOD, "tok-air")
    assert other.status_code == 403 and not any(n in other.content for n in names)

    public, _, _ = start(public_catalogue=True)
    assert httpx.get(f"{public.url}/v1/cities", timeout=30).status_code == 200


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def test_answers_quote_no_more_than_an_excerpt(start) -> None:
    running, _, _ = start()
    huge_id = b'{"meter": "' + b"M" * 10_000_000 + b'", "wh": 1}\n'
    refused = post(running, METERS, huge_id, "tok-meters")
    assert refused.status_code in (413, 422) and len(refused.content) < 2_000, refused.content[:300]
    huge_value = b'{"meter": "m", "wh": "' + b"9x" * 500_000 + b'"}\n' + GOOD
    answer = post(running, METERS, huge_value, "tok-meters")
    assert answer.status_code == 200 and len(answer.content) < 2_000


def test_broken_framing_is_a_400_and_one_log_line(start, caplog: pytest.LogCaptureFixture) -> None:
    running, _, _ = start()
    caplog.set_level(logging.INFO)
    head = (
        f"POST {METERS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-meters\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    with raw_request(running, head + b'5\r\n{"met\r\nzz\r\n') as sock:
        answer = drip_until_answered(sock, b"")
    assert answer.split(b"\r\n")[0].endswith(b" 400 Bad Request"), answer[:300]
    # Any client can send this: no traceback in the logs (one line).
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    assert any("Invalid character in chunk size" in r.getMessage() for r in caplog.records)
