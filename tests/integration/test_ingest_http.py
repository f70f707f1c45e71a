"""Ingest end to end over HTTP against the real broker and registry: real samples
in, RawRecords and dead letters out, every refusal with its precise status."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
import pytest

from services.ingest.core import IngestTopics
from services.ingest.files import ingest_paths
from services.ingest.records import column_values
from services.ingest.service import build_core
from services.runtime.cities import load_cities
from services.runtime.dlq import RAW_CHUNK_BYTES, reassemble
from services.runtime.paths import CITIES_DIR
from testkit.fixtures import SAMPLES
from testkit.ingest import serve_ingest
from testkit.kafka import read_all

pytestmark = pytest.mark.integration

TESTVILLE = """
code: testville
name: Testville
timezone: Europe/Paris
sources:
  - {id: linky, format: linky-tic, dataset: tic, domain: energy, entity: ADCO,
     token: "env:TV_LINKY"}
  - {id: linky-std, format: linky-tic, dataset: tic, domain: energy, entity: ADSC,
     token: "env:TV_LINKY_STD"}
  - {id: kv, format: sdm-keyvalues, dataset: sdm, domain: environment, entity: id,
     token: "env:TV_KV"}
  - {id: v2, format: ngsi-v2-normalized, dataset: sdm, domain: environment, entity: id,
     token: "env:TV_V2"}
  - {id: ld, format: ngsi-ld, dataset: sdm, domain: environment, entity: id, token: "env:TV_LD"}
  - id: meters
    format: ndjson
    dataset: load-curves
    domain: energy
    entity: meter
    token: "env:TV_METERS"
    numeric: [wh]
  - {id: limited, format: ndjson, dataset: load-curves, domain: energy, entity: meter,
     token: "env:TV_LIMITED", rate_limit: {per_second: 0.2, burst: 2}}
"""

TOKENS = {
    "TV_LIMITED": "tok-limited",
    "TV_LINKY": "tok-linky",
    "TV_LINKY_STD": "tok-linky-std",
    "TV_KV": "tok-kv",
    "TV_V2": "tok-v2",
    "TV_LD": "tok-ld",
    "TV_METERS": "tok-meters",
    "CITEPLUS_TOKEN_PARIS_VELO": "tok-paris-velo",
    "CITEPLUS_TOKEN_PARIS_TRAFIC": "tok-paris-trafic",
    "CITEPLUS_TOKEN_PARIS_OPENDATA": "tok-paris-opendata",
    "CITEPLUS_TOKEN_PARIS_VELIB": "tok-paris-velib",
}


@pytest.fixture()
def cities(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for name, value in TOKENS.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "testville.yaml").write_text(TESTVILLE)
    shutil.copy(CITIES_DIR / "paris.yaml", tmp_path / "paris.yaml")
    return load_cities(tmp_path)


@pytest.fixture()
def ingest(node, isolated_topics, cities):
    specs, contracts = isolated_topics("raw.v1", "dlq.v1", "raw.dlq.v1", partitions=2)
    topics = IngestTopics(raw=specs["raw.v1"].name, dead_letters=specs["dlq.v1"].name)
    core = build_core(node, contracts, cities, topics=topics, instance=specs["raw.v1"].name)
    with serve_ingest(core, cities, max_body=4 * 1024 * 1024) as running:
        yield running, topics, contracts


def push(url: str, city: str, source: str, body: bytes, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(
        f"{url}/v1/cities/{city}/sources/{source}/records",
        content=body,
        headers=headers,
        timeout=60,
    )


def decoded(node, contracts, topic: str, expected: int) -> list[dict]:
    return [
        contracts.codec(topic).decode(m.value()) for m in read_all(node, topic, expected=expected)
    ]


SAMPLE_PUSHES = [
    # (sample path, city, source, token, accepted rows, entities)
    (
        "linky-tic/pyteleinfo_historique_tempo_bbr_10frames.txt",
        "testville",
        "linky",
        "tok-linky",
        10,
        1,
    ),
    ("linky-tic/nokyyz_historique_hchp_rawstream_2.txt", "testville", "linky", "tok-linky", 124, 1),
    (
        "linky-tic/enedis_tic2websocket_historique_base_1frame.txt",
        "testville",
        "linky",
        "tok-linky",
        1,
        1,
    ),
    (
        "linky-tic/enedis_tic2websocket_standard_1frame.txt",
        "testville",
        "linky-std",
        "tok-linky-std",
        1,
        1,
    ),
    (
        "linky-tic/openhab_standard_3ph_tempo_producer.index-text.txt",
        "testville",
        "linky-std",
        "tok-linky-std",
        2,
        1,
    ),
    (
        "linky-tic/openhab_historique_3ph_ejp.index-text.txt",
        "testville",
        "linky",
        "tok-linky",
        1,
        1,
    ),
    ("smart-data-models/AirQualityObserved.keyvalues.json", "testville", "kv", "tok-kv", 1, 1),
    ("smart-data-models/TrafficFlowObserved.normalized.json", "testville", "v2", "tok-v2", 1, 1),
    (
        "smart-data-models/ThreePhaseAcMeasurement.normalized-ld.json",
        "testville",
        "ld",
        "tok-ld",
        1,
        1,
    ),
    ("smart-data-models/ACMeasurement.normalized-ld.json", "testville", "ld", "tok-ld", 1, 1),
    (
        "opendata/paris_comptage-velo-donnees-compteurs.csv",
        "paris",
        "velo-compteurs",
        "tok-paris-velo",
        21,
        1,
    ),
    (
        "opendata/paris_comptages-routiers-permanents_champs-elysees.head300.csv",
        "paris",
        "comptages-routiers",
        "tok-paris-trafic",
        300,
        1,
    ),
    (
        "opendata/enedis_consommation-electrique-par-secteur-dactivite-departement.head10.csv",
        "paris",
        "enedis-conso-departement",
        "tok-paris-opendata",
        10,
        10,
    ),
    (
        "opendata/velib_gbfs_station_status.first20stations.json",
        "paris",
        "velib-disponibilite",
        "tok-paris-velib",
        20,
        20,
    ),
]


@pytest.mark.parametrize(
    ("sample", "city", "source", "token", "rows", "entities"),
    SAMPLE_PUSHES,
    ids=[p[0].split("/")[1] for p in SAMPLE_PUSHES],
)
def test_real_samples_become_raw_records(
    node, ingest, sample: str, city: str, source: str, token: str, rows: int, entities: int
) -> None:
    running, topics, contracts = ingest
    body = (SAMPLES / sample).read_bytes()
    response = push(running.url, city, source, body, token)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["accepted"], answer["rejected"], answer["entities"]) == (rows, 0, entities)

    records = decoded(node, contracts, topics.raw, entities)
    assert len(records) == entities
    assert {r["lineage_id"] for r in records} == {answer["lineage_id"]}
    assert sum(r["row_count"] for r in records) == rows
    for record in records:
        assert (record["city"], record["source"]) == (city, source)
        assert record["received_at"] > 0
        for column in record["columns"]:
            assert len(column_values(column)) == record["row_count"]


def test_linky_frame_values_and_meter_key(node, ingest) -> None:
    running, topics, contracts = ingest
    body = (SAMPLES / "linky-tic/enedis_tic2websocket_historique_base_1frame.txt").read_bytes()
    assert push(running.url, "testville", "linky", body, "tok-linky").status_code == 200
    [message] = read_all(node, topics.raw, expected=1)
    assert message.key() == b"testville|linky|812164417227"
    record = contracts.codec(topics.raw).decode(message.value())
    columns = {c["name"]: column_values(c) for c in record["columns"]}
    assert record["entity_id"] == "812164417227"
    assert columns["BASE"] == ["000000104"] and columns["OPTARIF"] == ["BASE"]


def test_bad_checksum_frame_goes_to_dead_letters_with_original_bytes(node, ingest) -> None:
    running, topics, contracts = ingest
    bad = SAMPLES / "linky-tic/enedis_tic2websocket_standard_1frame_bad_checksum_PCOUP.txt"
    good = (SAMPLES / "linky-tic/enedis_tic2websocket_standard_1frame.txt").read_bytes()
    response = push(running.url, "testville", "linky-std", good + bad.read_bytes(), "tok-linky-std")
    assert response.status_code == 200
    answer = response.json()
    assert (answer["accepted"], answer["rejected"]) == (1, 1)
    [error] = answer["errors"]
    # The group is named by its number: its label is not a field the source declares.
    assert error["reason"] == "bad-checksum" and "group 24" in error["message"]

    # dlq.v1 gets a redacted letter; the original bytes are on the raw dead-letter topic.
    [letter] = decoded(node, contracts, topics.dead_letters, 1)
    assert letter["stage"] == "ingest" and letter["reason"] == "bad-checksum"
    assert (letter["city"], letter["source"]) == ("testville", "linky-std")
    assert letter["original_value"] is None and letter["redacted"] is True
    assert answer["lineage_id"] in letter["message"]
    [raw] = decoded(node, contracts, topics.raw_dead_letters, 1)
    assert raw["letter_id"] == letter["letter_id"] and b"PCOUP" in raw["original_value"]


def test_one_bad_line_never_rejects_the_good_lines(node, ingest) -> None:
    running, topics, contracts = ingest
    lines = [
        json.dumps({"meter": f"m{i % 3}", "t": 1736755200 + 600 * i, "wh": 100 + i})
        for i in range(9)
    ]
    lines.insert(4, '{"meter": "m9", "wh": ')  # truncated JSON on line 5
    lines.insert(7, json.dumps({"meter": "m1", "wh": "lots"}))  # not a number on line 8
    response = push(running.url, "testville", "meters", "\n".join(lines).encode(), "tok-meters")
    answer = response.json()
    assert response.status_code == 200
    assert (answer["accepted"], answer["rejected"], answer["entities"]) == (9, 2, 3)
    assert {(e["position"], e["reason"]) for e in answer["errors"]} == {
        ("line 5", "bad-json"),
        ("line 8", "bad-number"),
    }
    records = decoded(node, contracts, topics.raw, 3)
    by_meter = {r["entity_id"]: r for r in records}
    wh = next(c for c in by_meter["m0"]["columns"] if c["name"] == "wh")
    assert wh["kind"] == "long" and wh["longs"] == [100, 103, 106]
    letters = decoded(node, contracts, topics.raw_dead_letters, 2)  # the originals: raw zone
    assert {letter["original_value"] for letter in letters} == {
        b'{"meter": "m9", "wh": ',
        b'{"meter": "m1", "wh": "lots"}',
    }


def test_refusals_have_precise_statuses(ingest) -> None:
    running, _, _ = ingest
    body = b'{"meter": "m1", "wh": 1}\n'
    assert push(running.url, "atlantis", "meters", body, "tok-meters").status_code == 404
    assert push(running.url, "testville", "nope", body, "tok-meters").status_code == 404
    missing = push(running.url, "testville", "meters", body, None)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    assert push(running.url, "testville", "meters", body, "guess").status_code == 401
    # Another source's token: 403 that does not say whose it is (it used to say
    # "belongs to another source", telling a token's holder that a guess was a token).
    other = push(running.url, "testville", "meters", body, "tok-kv")
    assert other.status_code == 403 and "another source" not in other.json()["error"]
    huge = push(running.url, "testville", "meters", body * 200_000, "tok-meters")
    assert huge.status_code == 413
    empty = push(running.url, "testville", "meters", b"", "tok-meters")
    assert empty.status_code == 400
    everything_bad = push(running.url, "testville", "meters", b"not json\n", "tok-meters")
    assert everything_bad.status_code == 422 and everything_bad.json()["rejected"] == 1


def wide_rows(meter: str, count: int) -> bytes:
    """NDJSON rows of one meter, each with 200 characters that do not compress."""
    return b"".join(
        json.dumps({"meter": meter, "wh": i, "note": os.urandom(100).hex()}).encode() + b"\n"
        for i in range(count)
    )


def test_an_entity_too_large_for_a_message_is_refused_and_files_are_cut(
    node, ingest, cities, tmp_path: Path
) -> None:
    running, topics, contracts = ingest
    refused = push(running.url, "testville", "meters", wide_rows("big", 5_000), "tok-meters")
    assert refused.status_code == 413, refused.text
    answer = refused.json()
    assert answer["entity"] == "big" and answer["rows"] == 5_000
    assert answer["size"] > answer["limit"] and "fewer rows per entity" in answer["error"]
    assert "retry" not in answer
    # Refused before Kafka: the next batch of the source is not affected.
    after = push(running.url, "testville", "meters", b'{"meter": "m1", "wh": 1}\n', "tok-meters")
    assert after.status_code == 200 and after.json()["accepted"] == 1
    # The same kind of export from a file is cut between records until each batch fits.
    export = tmp_path / "big.ndjson"
    export.write_bytes(wide_rows("big", 12_000))
    summary = ingest_paths(
        running.core, cities["testville"].source("meters"), [export], show_progress=False
    )
    assert summary.accepted == 12_000 and summary.rejected == 0 and summary.payloads > 3
    raw = decoded(node, contracts, topics.raw, expected=1 + summary.payloads)
    assert sum(r["row_count"] for r in raw if r["entity_id"] == "big") == 12_000
    assert read_all(node, topics.dead_letters, expected=0, settle_s=0.5) == []


def test_a_huge_bad_payload_still_reaches_the_dead_letters(node, ingest) -> None:
    running, topics, contracts = ingest
    items = (json.dumps({"meter": "m1", "x": os.urandom(30).hex()}).encode() for _ in range(40_000))
    body = b"[" + b",".join(items) + b",oops"  # ~3.3 MB that do not compress, then bad JSON
    answer = push(running.url, "testville", "meters", body, "tok-meters")
    assert answer.status_code == 422 and answer.json()["rejected"] == 1
    [letter] = decoded(node, contracts, topics.dead_letters, 1)
    assert letter["reason"] == "bad-json" and letter["original_size"] == len(body)
    # Whole in the raw zone, in chunks that each fit a message of the default size.
    chunks = decoded(node, contracts, topics.raw_dead_letters, -(-len(body) // RAW_CHUNK_BYTES))
    assert len(chunks) > 10 and {c["letter_id"] for c in chunks} == {letter["letter_id"]}
    assert reassemble(chunks) == body


def test_a_source_above_its_rate_limit_is_told_when_to_come_back(node, ingest) -> None:
    running, topics, contracts = ingest
    answers = [
        push(running.url, "testville", "limited", b'{"meter": "m%d", "wh": 1}\n' % i, "tok-limited")
        for i in range(3)
    ]
    assert [a.status_code for a in answers] == [200, 200, 429]
    refused = answers[2]
    assert int(refused.headers["Retry-After"]) >= 1 and refused.json()["retry_after_s"] > 0
    assert "0.2 batches per second (burst 2" in refused.json()["error"]
    # Other sources are not limited by it; nothing of the refused batch was kept.
    other = push(running.url, "testville", "meters", b'{"meter": "x", "wh": 1}\n', "tok-meters")
    assert other.status_code == 200
    raw = decoded(node, contracts, topics.raw, 3)
    assert sorted(r["entity_id"] for r in raw) == ["m0", "m1", "x"]
