"""Coarsening to the day on the real broker: a non-consented source sends one
reading per message for two days; what leaves anonymise (``anonymised.v1``, read
committed as a partner's normalise reads it) is one record per meter and local
day, with the day sums and the register at the start of the day, exactly once
through a failed commit and a restart (state restored from its changelog)."""

from __future__ import annotations

import base64
import hashlib
import random
import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.anonymise.policy import COARSENED_ROWS, load_policies
from services.anonymise.stage import AnonymiseStage, AnonymiseTopics
from services.ingest.records import to_column
from services.privacy.keys import KeyStore
from services.runtime.cities import load_cities
from services.runtime.kafka import RecordProducer, make_producer
from services.runtime.metrics import ServiceMetrics
from services.runtime.processor import StageRunner
from testkit.kafka import CommitFailsOnce, read_all

pytestmark = pytest.mark.integration

TEN_MINUTES = 600_000_000
HOUR = 3_600_000_000
DAY1 = 1_763_766_000_000_000  # 2025-11-22T00:00:00+01:00, a Paris local midnight
DAY2 = DAY1 + 24 * HOUR
METERS = 4
# A secret as random-looking as a generated one (weak secrets are refused by keys' guards).
SECRET = (
    base64.urlsafe_b64encode(
        hashlib.sha256(b"tests/integration/test_anonymise_daily_kafka.py").digest()
    )
    .decode()
    .rstrip("=")
)
CITY = {
    "code": "dayville",
    "name": "Dayville",
    "sources": [
        {
            "id": "releves",
            "format": "ndjson",
            "dataset": "releves-compteurs",
            "domain": "energy",
            "entity": "pdl",
            "token": "env:CITEPLUS_TOKEN_DAYVILLE",
            "privacy": {
                "version": "d-1",
                "personal": True,
                "fields": {"pdl": "identifier", "wh": "measure", "index": "measure"},
                "coarsen": {
                    "to": "P1D",
                    "sum": ["wh"],
                    "registers": ["index"],
                    "lateness": "PT1H",
                    "quiet": "PT1H",
                },
            },
        }
    ],
}


class Clock:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self) -> float:
        return self.seconds


def reading(meter: int, t: int, wh: int, index: int) -> dict[str, Any]:
    pdl = f"0912345678{meter:04d}"
    return {
        "city": "dayville",
        "source": "releves",
        "dataset": "releves-compteurs",
        "format": "ndjson",
        "entity_id": pdl,
        "entity_type": None,
        "lineage_id": f"request-{meter}-{t}",
        "received_at": t + 60_000_000,
        "row_count": 1,
        "event_times": [t],
        "columns": [
            to_column("pdl", [pdl]),
            to_column("wh", [wh]),
            to_column("index", [index]),
        ],
        "attributes": {},
    }


def test_one_reading_per_message_leaves_anonymise_as_day_values_only(
    node, isolated_topics, tmp_path: Path
) -> None:
    specs, contracts = isolated_topics(
        "raw.v1",
        "anonymised.v1",
        "audit.v1",
        "dlq.v1",
        "raw.dlq.v1",
        "anonymise.state.v1",
        partitions=2,
    )
    topics = AnonymiseTopics(
        raw=specs["raw.v1"].name,
        anonymised=specs["anonymised.v1"].name,
        audit=specs["audit.v1"].name,
        state=specs["anonymise.state.v1"].name,
        dead_letters=specs["dlq.v1"].name,
    )
    (tmp_path / "dayville.yaml").write_text(yaml.safe_dump(CITY, sort_keys=False))
    policies = load_policies(load_cities(tmp_path))
    keys = KeyStore(tmp_path / "keys", environ={"CITEPLUS_PSEUDONYM_SECRET_DAYVILLE": SECRET})
    small = replace(node, processing=replace(node.processing, batch_size=97))
    name = f"anonymise-daily-{uuid.uuid4().hex[:8]}"
    clock = Clock(1_800_000_000.0)

    def run(runner_class: type[StageRunner] = StageRunner) -> StageRunner:
        stage = AnonymiseStage(
            policies,
            keys,
            contracts,
            topics=topics,
            metrics=ServiceMetrics("anonymise"),
            clock=clock,
            node=small,
        )
        stage.name = name  # one consumer group across restarts
        runner = runner_class(
            stage,
            small,
            contracts,
            instance=uuid.uuid4().hex[:6],
            metrics=stage.metrics,
            dead_letter_topic=topics.dead_letters,
        )
        runner.run(idle_exit_s=3)
        return runner

    def produce(records: list[dict[str, Any]]) -> None:
        writer = RecordProducer(make_producer(small), contracts)
        for r in records:
            writer.produce(topics.raw, f"{r['city']}|{r['source']}|{r['entity_id']}", r)
        assert writer.flush() == 0

    # Two days of 10-minute readings, one message per reading, meters interleaved.
    rng = random.Random(13)
    curves: dict[int, list[tuple[int, int, int]]] = {}
    for meter in range(METERS):
        index, rows = 5_000_000 * (meter + 1), []
        for k in range(288):
            wh = rng.randint(5, 900)
            rows.append((DAY1 + k * TEN_MINUTES, wh, index))
            index += wh
        curves[meter] = rows
    produce([reading(m, *curves[m][k]) for k in range(288) for m in range(METERS)])

    first = run(CommitFailsOnce)  # day 1 closes by the watermark (day 2 passed 01:00)
    assert first.summary.aborted == 1 and first.summary.dead_letters == 0
    # A reading of the released day 1 arrives; then the source goes quiet: a restarted
    # stage restores day 2 from the changelog and closes it by the wall clock.
    late = reading(0, DAY1 + 5 * TEN_MINUTES, 123_456, 42)
    produce([late])
    clock.seconds += 2 * 3600
    second = run()
    assert second.summary.dead_letter_reasons == {"day-released": 1}

    outputs = read_all(small, topics.anonymised, expected=2 * METERS)
    decoded = [contracts.codec(topics.anonymised).decode(m.value()) for m in outputs]
    assert len(decoded) == 2 * METERS
    per_day = Counter((r["entity_pseudonym"], r["event_times"][0]) for r in decoded)
    assert set(per_day.values()) == {1}  # each meter-day once, despite the failed commit
    assert sorted(day for _, day in per_day) == sorted([DAY1, DAY2] * METERS)
    pseudonymise = keys.pseudonymiser("dayville", "2025-11")
    by_meter = {pseudonymise(f"0912345678{m:04d}"): m for m in range(METERS)}
    for record in decoded:
        assert record["row_count"] == 1 and record["attributes"]["anonymise.coarsened"] == "P1D"
        values = {c["name"]: c for c in record["columns"]}
        meter = by_meter[record["entity_pseudonym"]]
        k = 0 if record["event_times"][0] == DAY1 else 1
        day = curves[meter][k * 144 : (k + 1) * 144]
        assert values[COARSENED_ROWS]["longs"] == [144]
        assert values["wh"]["longs"] == [sum(wh for _, wh, _ in day)]
        assert values["index"]["longs"] == [day[0][2]]  # the register at the day's start
        assert values["pdl"]["strings"] == [record["entity_pseudonym"]]
    # No record finer than a day, and nothing of the curve in any value.
    sub_daily = {wh for rows in curves.values() for _, wh, _ in rows}
    released = [v for r in decoded for c in r["columns"] if c["name"] == "wh" for v in c["longs"]]
    assert not sub_daily & set(released)

    # The late reading: a dead letter without values, no second record of day 1.
    [letter] = [
        contracts.codec(topics.dead_letters).decode(m.value())
        for m in read_all(small, topics.dead_letters, expected=1)
    ]
    assert letter["reason"] == "day-released"
    # dlq.v1 carries no original at all (the reading stays whole in the restricted raw zone).
    assert letter["original_value"] is None
    assert b"0912345678" not in (letter["original_key"] or b"")
    assert "0912345678" not in (letter["message"] or "")


def test_one_ndjson_line_per_http_request_leaves_anonymise_as_day_values_only(
    node, isolated_topics, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the real HTTP ingest: hourly readings, one request each; one partition, so
    a reading of a third day moves the source's watermark past the first two."""
    import json

    import httpx

    from services.ingest.core import IngestTopics
    from services.ingest.service import build_core
    from testkit.ingest import serve_ingest

    monkeypatch.setenv("CITEPLUS_TOKEN_DAYVILLE", "tok-dayville")
    city = json.loads(json.dumps(CITY))
    privacy = city["sources"][0]["privacy"]
    privacy["fields"]["debut"] = "measure"
    privacy["coarsen"]["time"] = {"field": "debut", "format": "epoch_s"}
    (tmp_path / "dayville.yaml").write_text(yaml.safe_dump(city, sort_keys=False))
    cities = load_cities(tmp_path)
    specs, contracts = isolated_topics(
        "raw.v1",
        "anonymised.v1",
        "audit.v1",
        "dlq.v1",
        "raw.dlq.v1",
        "anonymise.state.v1",
        partitions=1,
    )
    topics = AnonymiseTopics(
        raw=specs["raw.v1"].name,
        anonymised=specs["anonymised.v1"].name,
        audit=specs["audit.v1"].name,
        state=specs["anonymise.state.v1"].name,
        dead_letters=specs["dlq.v1"].name,
    )
    core = build_core(
        node,
        contracts,
        cities,
        topics=IngestTopics(raw=topics.raw, dead_letters=topics.dead_letters),
        instance=topics.raw,
    )
    meters = 2
    rng = random.Random(29)
    lines: list[tuple[int, dict[str, Any]]] = []
    for meter in range(meters):
        index = 7_000_000 * (meter + 1)
        for hour in range(48):
            wh = rng.randint(100, 2000)
            t = (DAY1 + hour * HOUR) // 1_000_000
            lines.append((hour, {"pdl": f"0812345678{meter:04d}", "debut": t, "wh": wh,
                                 "index": index}))  # fmt: skip
            index += wh
    lines.sort(key=lambda item: item[0])  # meters interleaved, hour by hour
    sentinel = {"pdl": "08123456789999", "debut": (DAY2 + 27 * HOUR) // 1_000_000, "wh": 1,
                "index": 1}  # fmt: skip
    with serve_ingest(core, cities) as running, httpx.Client(timeout=60) as client:
        for body in [line for _, line in lines] + [sentinel]:
            response = client.post(
                f"{running.url}/v1/cities/dayville/sources/releves/records",
                content=json.dumps(body).encode() + b"\n",
                headers={"Authorization": "Bearer tok-dayville"},
            )
            assert response.status_code in (200, 202), response.text
    keys = KeyStore(tmp_path / "keys", environ={"CITEPLUS_PSEUDONYM_SECRET_DAYVILLE": SECRET})
    stage = AnonymiseStage(
        load_policies(cities),
        keys,
        contracts,
        topics=topics,
        metrics=ServiceMetrics("anonymise"),
        node=node,
    )
    stage.name = f"anonymise-http-{uuid.uuid4().hex[:8]}"
    runner = StageRunner(
        stage, node, contracts, metrics=stage.metrics, dead_letter_topic=topics.dead_letters
    )
    runner.run(idle_exit_s=3)
    assert runner.summary.records_in == len(lines) + 1 and runner.summary.dead_letters == 0

    outputs = read_all(node, topics.anonymised, expected=2 * meters)
    decoded = [contracts.codec(topics.anonymised).decode(m.value()) for m in outputs]
    pseudonymise = keys.pseudonymiser("dayville", "2025-11")
    got = {
        (r["entity_pseudonym"], r["event_times"][0]): {c["name"]: c for c in r["columns"]}
        for r in decoded
    }
    assert len(got) == len(decoded) == 2 * meters  # each meter-day once; day 3 still open
    for meter in range(meters):
        pdl = f"0812345678{meter:04d}"
        mine = [line for _, line in lines if line["pdl"] == pdl]
        for k, day in enumerate((DAY1, DAY2)):
            hours = mine[k * 24 : (k + 1) * 24]
            values = got[(pseudonymise(pdl), day)]
            assert values[COARSENED_ROWS]["longs"] == [24]
            assert values["wh"]["longs"] == [sum(h["wh"] for h in hours)]
            assert values["index"]["longs"] == [hours[0]["index"]]
