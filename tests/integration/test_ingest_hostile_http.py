"""Hostile and clumsy input over HTTP against the real broker: a bad line among
good ones costs only itself (no 500, nothing lost), NaN is a bad-number dead
letter, content that cannot be the source's format is 422 with a dead letter,
a Content-Type naming another format is 415, a 20,000-column header is refused."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from services.ingest.core import IngestTopics
from services.ingest.service import build_core
from services.runtime.cities import load_cities
from testkit.ingest import serve_ingest
from testkit.kafka import read_all

pytestmark = pytest.mark.integration

HOSTILE = """
code: hostile
name: Hostile
timezone: Europe/Paris
sources:
  - {id: meters, format: ndjson, dataset: load-curves, domain: energy, entity: meter,
     token: "env:HO_METERS", numeric: [wh]}
  - {id: linky, format: linky-tic, dataset: tic, domain: energy, entity: ADSC,
     token: "env:HO_LINKY"}
  - {id: export, format: csv, dataset: load-curves, domain: energy, entity: meter,
     token: "env:HO_EXPORT", numeric: [wh], csv: {separator: ";"}}
"""
TOKENS = {"HO_METERS": "tok-meters", "HO_LINKY": "tok-linky", "HO_EXPORT": "tok-export"}


@pytest.fixture()
def ingest(node, isolated_topics, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for name, value in TOKENS.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "hostile.yaml").write_text(HOSTILE)
    cities = load_cities(tmp_path)
    specs, contracts = isolated_topics("raw.v1", "dlq.v1", "raw.dlq.v1", partitions=1)
    topics = IngestTopics(raw=specs["raw.v1"].name, dead_letters=specs["dlq.v1"].name)
    core = build_core(node, contracts, cities, topics=topics, instance=specs["raw.v1"].name)
    with serve_ingest(core, cities) as running:
        yield running, topics, contracts


def push(url: str, source: str, body: bytes, token: str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/cities/hostile/sources/{source}/records",
        content=body,
        headers={"Authorization": f"Bearer {token}", **headers},
        timeout=60,
    )


def letters(node, contracts, topic: str, expected: int | None) -> list[dict]:
    codec = contracts.codec(topic)
    return [codec.decode(m.value()) for m in read_all(node, topic, expected=expected)]


def test_bad_json_lines_among_good_ones_are_dead_letters_alone(node, ingest) -> None:
    running, topics, contracts = ingest
    good = [json.dumps({"meter": f"m{i}", "wh": i}).encode() for i in range(1_000)]
    bad = {
        3: b'{"meter": "x", "wh": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        10: b'{"meter": "x", "note": "\\ud800"}',
        20: b'{"meter": "x", "wh": 1, "wh": 2}',
        30: b'{"meter": "x", "wh": NaN}',
        40: b'{"meter": "x", "wh": "Infinity"}',
    }
    lines = list(good)
    for at in sorted(bad):
        lines.insert(at - 1, bad[at])
    response = push(running.url, "meters", b"\n".join(lines), "tok-meters")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["accepted"], answer["rejected"]) == (1_000, 5)
    assert {(e["position"], e["reason"]) for e in answer["errors"]} == {
        ("line 3", "too-deep"),
        ("line 10", "bad-unicode"),
        ("line 20", "duplicate-key"),
        ("line 30", "bad-number"),
        ("line 40", "bad-number"),
    }
    dead = letters(node, contracts, topics.dead_letters, 5)
    assert sorted(d["reason"] for d in dead) == sorted(
        ["too-deep", "bad-unicode", "duplicate-key", "bad-number", "bad-number"]
    )
    raw = letters(node, contracts, topics.raw_dead_letters, None)
    assert {r["original_value"] for r in raw if r["reason"] != "too-deep"} == {
        bad[10],
        bad[20],
        bad[30],
        bad[40],
    }
    records = read_all(node, topics.raw, expected=1_000)
    assert len(records) == 1_000


def test_content_that_is_not_tic_is_422_and_a_dead_letter(node, ingest) -> None:
    running, topics, contracts = ingest
    body = b"meter;wh\nm1;12\nm2;13\n"
    response = push(running.url, "linky", body, "tok-linky")
    assert response.status_code == 422, response.text
    answer = response.json()
    assert (answer["accepted"], answer["rejected"]) == (0, 1)
    assert answer["errors"][0]["reason"] == "not-tic"
    [letter] = letters(node, contracts, topics.dead_letters, 1)
    assert letter["reason"] == "not-tic"
    [raw] = letters(node, contracts, topics.raw_dead_letters, 1)
    assert raw["original_value"] == body


def test_a_content_type_naming_another_format_is_415(ingest) -> None:
    running, _, _ = ingest
    body = b'{"meter": "m1", "wh": 1}\n'
    refused = push(running.url, "meters", body, "tok-meters", **{"Content-Type": "text/csv"})
    assert refused.status_code == 415 and "ndjson" in refused.json()["error"]
    for generic in ("application/octet-stream", "text/plain", "application/x-ndjson"):
        kept = push(running.url, "meters", body, "tok-meters", **{"Content-Type": generic})
        assert kept.status_code == 200 and kept.json()["accepted"] == 1
    linky = push(running.url, "linky", b"x", "tok-linky", **{"Content-Type": "application/json"})
    assert linky.status_code == 415


def test_a_twenty_thousand_column_header_is_refused_with_its_reason(ingest) -> None:
    running, _, _ = ingest
    header = ";".join(["meter", "wh", *(["dup"] * 19_998)])
    response = push(running.url, "export", f"{header}\nm1;1\n".encode(), "tok-export")
    assert response.status_code == 422
    assert response.json()["errors"][0]["reason"] == "too-many-columns"
