"""The v2 batch contracts carry v1 records exactly: explode(implode(records)) gives
the records back, through real Avro encoding, for any records and any grouping; and
the committed batch schemas are the ones derived from the v1 schemas."""

from __future__ import annotations

import io
import json

import fastavro
from hypothesis import given, settings
from hypothesis import strategies as st

from services.runtime.batches import BATCHES, batch_schema, batching, entity_partition
from services.runtime.codec import parse_plain
from services.runtime.paths import AVRO_DIR
from services.runtime.schemas import load_schemas, read_schema_files
from testkit.batch_records import observation, raw


def avro_round_trip(name: str, record: dict) -> dict:
    parsed = parse_plain(load_schemas()[name].expanded)
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parsed, record)
    buffer.seek(0)
    return fastavro.schemaless_reader(buffer, parsed)


def through_batches(member: str, batch: str, records: list[dict]) -> list[dict]:
    carrier = batching(member)
    out = []
    for one in carrier.implode(records):
        out.extend(carrier.explode(avro_round_trip(batch, one)))
    return out


def by_group(records: list[dict], shared: tuple[str, ...]) -> list[dict]:
    """implode keeps members' order within a group, groups in first-seen order."""
    seen: dict = {}
    for r in records:
        signature = repr([(c["name"], c["kind"]) for c in r.get("columns", [])])
        key = (*(repr(r.get(name)) for name in shared), signature)
        seen.setdefault(key, []).append(r)
    return [r for group in seen.values() for r in group]


@settings(max_examples=150, deadline=None)
@given(st.lists(observation(), max_size=8))
def test_observations_survive_a_batch(records: list[dict]) -> None:
    expected = [avro_round_trip("Observation", r) for r in records]
    got = through_batches("Observation", "ObservationBatch", expected)
    assert got == by_group(expected, BATCHES[2].shared)


@settings(max_examples=150, deadline=None)
@given(st.lists(raw(), max_size=8))
def test_raw_records_survive_a_batch(records: list[dict]) -> None:
    expected = [avro_round_trip("RawRecord", r) for r in records]
    got = through_batches("RawRecord", "RawBatch", expected)
    assert got == by_group(expected, BATCHES[0].shared)


def test_a_batch_that_lies_about_its_counts_is_refused() -> None:
    carrier = batching("Observation")
    obs = {"city": "lyon", "source": "s", "dataset": "d", "lineage_id": "L", "values": [1.0, 2.0]}
    (batch,) = carrier.implode(
        [
            {
                **obs,
                **{
                    k: None
                    for k in (
                        "domain",
                        "metric",
                        "unit",
                        "entity_pseudonym",
                        "entity_type",
                        "zone",
                        "position",
                        "start",
                        "step_seconds",
                        "key_epoch",
                        "sector",
                        "carrier",
                    )
                },
            }
        ]
    )
    batch["values_counts"] = [3]
    try:
        carrier.explode(batch)
    except ValueError as exc:
        assert "values" in str(exc)
    else:
        raise AssertionError("a batch whose counts do not add up was exploded")


def test_committed_batch_schemas_are_the_derived_ones() -> None:
    documents = {d["name"]: d for d in read_schema_files().values()}
    for spec in BATCHES:
        committed = json.loads((AVRO_DIR / f"{spec.batch}.avsc").read_text())
        assert committed == batch_schema(spec, documents[spec.member]), (
            f"avro/{spec.batch}.avsc differs from what {spec.member} gives: regenerate it"
        )


def test_an_entity_lands_on_the_partition_librdkafka_gives_its_key() -> None:
    # librdkafka's consistent_random: CRC-32 of the key modulo the partition count.
    assert entity_partition("lyon|abc", 6) == entity_partition(b"lyon|abc", 6)
    assert {entity_partition(f"lyon|{i}", 6) for i in range(100)} == set(range(6))


def test_a_hostile_batch_is_refused_whole_before_any_fast_path() -> None:
    """A dictionary index past the dictionary raised IndexError in explode (publish
    stopped on it at every restart: found by review), a negative count slid through;
    ``check`` refuses both with a ValueError saying which field."""
    carrier = batching("Observation")
    obs = {"city": "lyon", "source": "s", "dataset": "d", "lineage_id": "L", "values": [1.0]}
    fields = ("domain", "metric", "unit", "entity_pseudonym", "entity_type", "zone")
    fields += ("position", "start", "step_seconds", "key_epoch", "sector", "carrier")
    (batch,) = carrier.implode([{**obs, **dict.fromkeys(fields)}])
    assert carrier.check(batch) == 1
    for field, value in (("domain", [5]), ("values_counts", [-1]), ("metric", [-2])):
        hostile = {**batch, field: value}
        try:
            carrier.check(hostile)
        except ValueError as exc:
            assert field.removesuffix("_counts") in str(exc) or field in str(exc)
        else:
            raise AssertionError(f"{field}={value} was accepted")
