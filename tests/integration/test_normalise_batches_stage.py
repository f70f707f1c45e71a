"""The normalise stage on anonymised.v2 batches of single readings, on the real broker
and registry: a clean batch takes the columnar fast path, a batch with one bad
member goes member by member (that member alone a dead letter); either way
observations.v2 and the state changelog hold what the per-record path gives."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from services.normalise.stage import STORE, NormaliseStage, NormaliseTopics
from services.runtime.batches import batching, entity_partition
from services.runtime.cities import CityConfig, load_cities
from services.runtime.errors import RejectedInput
from services.runtime.kafka import RecordProducer, make_producer
from services.runtime.processor import StageRunner
from testkit.kafka import read_to_end, restored_state
from testkit.normalise import city_file, column, normaliser

pytestmark = pytest.mark.integration

SOURCE = {
    "id": "curves",
    "format": "csv",
    "domain": "energy",
    "entity": "prm",
    "mapping": {
        "entity_type": "ElectricityMeter",
        "time": {"field": "horodate", "format": "%Y-%m-%d %H:%M:%S"},
        "step": {"field": "pas", "format": "iso8601"},
        "zone": {"field": "iris"},
        "sector": {"field": "secteur", "values": {"residentiel": "residential"}},
        "measures": {
            "kwh": {"metric": "active_energy_import", "unit_field": "unite", "unit": "kWh"}
        },
    },
}
PARTITIONS = 2


def single(entity: str, k: int, lineage: str, sector: str = "residentiel") -> dict[str, Any]:
    """One entity's single reading, as anonymise writes it (one row)."""
    fields = {
        "horodate": ("2025-01-13 08:10:00", "string"),
        "pas": ("PT10M", "string"),
        "iris": (f"75101020{k % 3}", "string"),
        "secteur": (sector, "string"),
        "kwh": (0.1 + k / 997, "double"),
        "unite": ("Wh" if k % 2 else "kWh", "string"),
    }
    return {
        "city": "testville",
        "source": "curves",
        "dataset": "test-dataset",
        "format": "csv",
        "entity_pseudonym": entity,
        "entity_type": None,
        "key_epoch": "2025-01",
        "policy_version": "test",
        "lineage_id": lineage,
        "received_at": 1_767_225_600_000_000,
        "row_count": 1,
        "event_times": [],
        "columns": [column(name, [value], kind) for name, (value, kind) in fields.items()],
        "attributes": {},
    }


def batches(lineage: str, bad: int | None = None) -> dict[int, list[dict[str, Any]]]:
    """Forty entities' readings as batch messages, by partition (as ingest shards)."""
    out: dict[int, list[dict[str, Any]]] = {}
    for k in range(40):
        entity = f"prm-{lineage}-{k}"
        member = single(entity, k, lineage, "martien" if k == bad else "residentiel")
        out.setdefault(entity_partition(f"testville|{entity}", PARTITIONS), []).append(member)
    return out


def test_batches_of_single_readings_give_what_records_give(
    node, isolated_topics, tmp_path: Path
) -> None:
    specs, contracts = isolated_topics(
        "anonymised.v1",
        "anonymised.v2",
        "observations.v2",
        "normalise.state.v1",
        "dlq.v1",
        partitions=PARTITIONS,
    )
    city = city_file(tmp_path, "testville", [dict(SOURCE)])
    cities = load_cities(tmp_path)
    topics = NormaliseTopics(
        input=specs["anonymised.v1"].name,
        output=specs["observations.v2"].name,
        state=specs["normalise.state.v1"].name,
        dead_letters=specs["dlq.v1"].name,
        input_batches=specs["anonymised.v2"].name,
    )
    carrier = batching("AnonymisedRecord")
    writer = RecordProducer(make_producer(node), contracts)
    members: list[dict[str, Any]] = []
    clean = 0  # readings of the batch messages without the bad member
    for lineage, bad in (("clean", None), ("one-bad", 7)):
        for partition, group in batches(lineage, bad).items():
            if all(m["entity_pseudonym"] != f"prm-one-bad-{bad}" for m in group):
                clean += len(group)
            (batch,) = carrier.implode(group)
            writer.producer.produce(
                topics.input_batches,
                contracts.codec(topics.input_batches).encode(batch),
                partition=partition,
            )
            members += group
    assert writer.flush() == 0

    stage = NormaliseStage(node, contracts, cities, topics=topics)
    stage.name = f"normalise-batches-{uuid.uuid4().hex[:6]}"
    StageRunner(stage, node, contracts, dead_letter_topic=topics.dead_letters).run(idle_exit_s=3)

    expected = per_record(members, city)
    out = contracts.codec(topics.output)
    got = [
        o
        for m in read_to_end(node, topics.output)
        for o in batching("Observation").explode(out.decode(m.value()))
    ]
    assert sorted(got, key=_order) == sorted(expected["observations"], key=_order)
    restored = restored_state(node, contracts, topics.state, STORE, list(range(PARTITIONS)))
    assert {key: restored.get(key) for key in restored.live_keys()} == expected["state"]
    letters = [
        contracts.codec(topics.dead_letters).decode(m.value())
        for m in read_to_end(node, topics.dead_letters)
    ]
    assert [(x["reason"], x["source_topic"]) for x in letters] == [("unknown-sector", topics.input)]
    assert stage.columnar.total("columnar") == clean


def per_record(members: list[dict[str, Any]], city: CityConfig) -> dict[str, Any]:
    """What the per-record path gives for the same members (a rejected one: nothing)."""
    norm = normaliser(city)
    state: dict[str, Any] = {}
    observations = []
    for member in members:
        try:
            outcome = norm.normalise(member, state.get)
        except RejectedInput:
            continue
        state.update(outcome.states)
        observations += outcome.observations
    carrier = batching("Observation")
    exploded = [o for b in carrier.implode(observations) for o in carrier.explode(b)]
    return {"observations": exploded, "state": state}


def _order(o: dict[str, Any]) -> tuple:
    return (o["entity_pseudonym"], o["metric"], o["start"])
