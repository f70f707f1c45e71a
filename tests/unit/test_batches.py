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

words = st.sampled_from(["lyon", "paris", "a", "b", "é", ""])
maybe = st.none() | words
times = st.lists(st.integers(0, 2**50), max_size=4)


@st.composite
def observation(draw: st.DrawFn) -> dict:
    n = draw(st.integers(0, 4))
    values = draw(st.lists(st.floats(allow_nan=False), min_size=n, max_size=n))
    return {
        "city": draw(st.sampled_from(["lyon", "paris"])),
        "domain": draw(words),
        "metric": draw(words),
        "unit": draw(words),
        "entity_pseudonym": draw(words),
        "entity_type": draw(maybe),
        "zone": draw(maybe),
        "position": draw(
            st.none()
            | st.builds(lambda a, b: {"lat": a, "lon": b}, st.floats(-90, 90), st.floats(-180, 180))
        ),
        "start": draw(st.integers(0, 2**50)),
        "step_seconds": draw(st.integers(0, 3600)),
        "times": draw(times),
        "values": values,
        "quality": draw(st.lists(st.integers(0, 7), max_size=3)),
        "source": draw(st.sampled_from(["s1", "s2"])),
        "dataset": "d",
        "lineage_id": draw(st.sampled_from(["L1", "L2"])),
        "key_epoch": draw(maybe),
        "sector": draw(maybe),
        "carrier": draw(maybe),
        "versions": draw(st.lists(st.integers(0, 3), max_size=3)),
        "replaced": draw(st.lists(st.floats(allow_nan=False), max_size=3)),
    }


@st.composite
def column(draw: st.DrawFn, name: str, kind: str, rows: int) -> dict:
    element = {
        "string": words,
        "double": st.floats(allow_nan=False),
        "long": st.integers(-(2**62), 2**62),
        "boolean": st.booleans(),
    }[kind]
    own = {"string": "strings", "double": "doubles", "long": "longs", "boolean": "booleans"}[kind]
    out = {"name": name, "kind": kind, "strings": [], "doubles": [], "longs": [], "booleans": []}
    out[own] = draw(st.lists(element, min_size=rows, max_size=rows))
    out["missing"] = sorted(draw(st.sets(st.integers(0, max(rows - 1, 0)), max_size=rows)))
    return out


@st.composite
def raw(draw: st.DrawFn) -> dict:
    rows = draw(st.integers(1, 4))
    signature = draw(
        st.sampled_from(
            [
                [("v", "double")],
                [("v", "double"), ("who", "string")],
                [("n", "long"), ("ok", "boolean")],
            ]
        )
    )
    return {
        "city": "lyon",
        "source": draw(st.sampled_from(["s1", "s2"])),
        "dataset": "d",
        "format": "csv",
        "entity_id": draw(words),
        "entity_type": draw(maybe),
        "lineage_id": draw(st.sampled_from(["L1", "L2"])),
        "received_at": 5,
        "row_count": rows,
        "event_times": draw(
            st.lists(st.integers(0, 2**50), min_size=rows, max_size=rows) | st.just([])
        ),
        "columns": [draw(column(n, k, rows)) for n, k in signature],
        "attributes": draw(st.sampled_from([{}, {"content-type": "text/csv"}])),
    }


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
