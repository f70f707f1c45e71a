"""Ingest's raw messages, without a broker: on raw.v2 a request's entities travel
many to a message, each message on the partition its members' raw.v1 keys give,
under the message size limit, and exploding the messages gives back exactly the
RawRecords raw.v1 would have carried; on raw.v1 nothing changes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.core import IngestCore, IngestTopics
from services.ingest.shards import raw_batch_messages, raw_messages
from services.runtime.batches import batching, entity_partition
from services.runtime.cities import SourceConfig
from services.runtime.codec import Contracts
from services.runtime.errors import OversizedBatch
from testkit.codecs import offline_contracts

TOPICS = ("raw.v1", "raw.v2", "dlq.v1", "raw.dlq.v1")
SOURCE = SourceConfig(
    id="air",
    city="c",
    format="ndjson",
    dataset="air-quality",
    domain="environment",
    entity="sensor",
    token="env:T",
    numeric=("no2",),
)


def single_readings(sensors: int, *, extra: str = "") -> bytes:
    """One reading per sensor: what air-quality, traffic or parking systems push."""
    rows = [
        {"sensor": f"s{n:04d}", "t": "2026-11-20T10:00:00Z", "no2": 10.5 + n % 7, "note": extra}
        for n in range(sensors)
    ]
    return "\n".join(json.dumps(r) for r in rows).encode()


def cores(contracts: Contracts) -> tuple[IngestCore, IngestCore]:
    v1 = IngestCore(contracts, None, topics=IngestTopics(raw="raw.v1"))
    v2 = IngestCore(contracts, None, topics=IngestTopics(raw="raw.v2"))
    return v1, v2


def members_by_partition(contracts: Contracts, messages) -> dict[int, list[dict]]:
    """raw.v2 messages decoded and exploded, per partition, in produce order; every
    member's own raw.v1 key must give the message's partition."""
    codec, out = contracts.codec("raw.v2"), {}
    for _, key, value, partition in (m for m in messages if m[0] == "raw.v2"):
        members = batching("RawBatch").explode(codec.decode(value))
        assert key == f"c|air|{partition}"
        for member in members:
            v1_key = f"c|air|{member['entity_id']}"
            assert entity_partition(v1_key, codec.spec.partitions) == partition
        out.setdefault(partition, []).extend(members)
    return out


def v1_by_partition(contracts: Contracts, messages) -> dict[int, list[dict]]:
    codec, out = contracts.codec("raw.v1"), {}
    for _, key, value in (m for m in messages if m[0] == "raw.v1"):
        partition = entity_partition(key, codec.spec.partitions)
        out.setdefault(partition, []).append(codec.decode(value))
    return out


def test_single_readings_of_a_thousand_sensors_are_a_handful_of_messages_equal_to_v1() -> None:
    contracts = offline_contracts(*TOPICS)
    v1, v2 = cores(contracts)
    body = single_readings(1000)
    old, new = v1.prepare(SOURCE, body), v2.prepare(SOURCE, body)
    assert old.raw_messages == 1000 and len(old.messages) == 1000
    assert new.raw_messages <= 6 and len(new.messages) == new.raw_messages
    assert (new.accepted, new.entities, new.readings) == (1000, 1000, 1000)
    assert new.answer()["entities"] == old.answer()["entities"] == 1000
    # Same members on the same partitions, in the same order, once the lineage
    # (a fresh id per request) and the arrival time are set aside.
    strip = {"lineage_id": None, "received_at": 0}
    before = v1_by_partition(contracts, old.messages)
    after = members_by_partition(contracts, new.messages)
    expect = {p: [{**r, **strip} for r in rs] for p, rs in before.items()}
    got = {p: [{**r, **strip} for r in rs] for p, rs in after.items()}
    assert got == expect


def test_a_caller_configured_with_raw_v1_keeps_one_record_per_entity() -> None:
    contracts = offline_contracts(*TOPICS)
    v1, _ = cores(contracts)
    result = v1.prepare(SOURCE, single_readings(3))
    assert [(t, k) for t, k, _ in result.messages] == [
        ("raw.v1", "c|air|s0000"),
        ("raw.v1", "c|air|s0001"),
        ("raw.v1", "c|air|s0002"),
    ]
    assert IngestTopics().raw == "raw.v2"  # the default is the batch form


def test_an_oversized_request_is_split_under_the_limit_and_one_huge_entity_refused() -> None:
    contracts = offline_contracts(*TOPICS, partitions=1)
    codec = contracts.codec("raw.v2")
    _, v2 = cores(contracts)
    prepared = v2.prepare(SOURCE, single_readings(300, extra="x" * 200))
    members = members_by_partition(contracts, prepared.messages)[0]
    records = [(f"c|air|{m['entity_id']}", m) for m in members]
    whole = raw_batch_messages(records, codec)
    assert len(whole) == 1
    limit = len(whole[0][2]) // 5
    parts = raw_batch_messages(records, codec, limit=limit)
    assert len(parts) >= 5 and all(len(value) <= limit for _, _, value, _ in parts)
    assert members_by_partition(contracts, parts)[0] == [r for _, r in records]
    with pytest.raises(OversizedBatch) as caught:
        raw_messages(records[:1], codec, limit=100)
    assert caught.value.entity == "s0000" and "s0000" not in str(caught.value)
    with pytest.raises(OversizedBatch):
        raw_messages(records[:1], contracts.codec("raw.v1"), limit=100)


def test_members_that_share_less_travel_apart() -> None:
    """Reference attributes (a meter's zone) are shared fields of a batch: meters
    of two zones on one partition make two messages, never a member in the wrong one."""
    contracts = offline_contracts(*TOPICS, partitions=1)
    core = IngestCore(
        contracts,
        None,
        topics=IngestTopics(raw="raw.v2"),
        attributes={"c/air": {f"s{n:04d}": {"zone": f"z{n % 2}"} for n in range(10)}},
    )
    result = core.prepare(SOURCE, single_readings(10))
    assert result.raw_messages == 2
    members = members_by_partition(contracts, result.messages)[0]
    assert all(m["attributes"] == {"zone": f"z{int(m['entity_id'][1:]) % 2}"} for m in members)


@settings(max_examples=25, deadline=None)
@given(
    entities=st.lists(st.integers(0, 60), min_size=1, max_size=40),
    partitions=st.integers(1, 7),
    limit_share=st.floats(0.05, 1.5),
)
def test_any_request_lands_on_v2_as_it_would_on_v1(
    entities: list[int], partitions: int, limit_share: float
) -> None:
    """Whatever the entities, partition count and size limit: per partition, the
    members of the v2 messages are the v1 records in order, each message fits."""
    contracts = offline_contracts(*TOPICS, partitions=partitions)
    v1, _ = cores(contracts)
    rows = [
        {"sensor": f"e{e}", "t": f"2026-11-20T10:{i % 60:02d}:00Z", "no2": i}
        for i, e in enumerate(entities)
    ]
    body = "\n".join(json.dumps(r) for r in rows).encode()
    old = v1.prepare(SOURCE, body)
    keyed = [(key, contracts.codec("raw.v1").decode(value)) for _, key, value in old.messages]
    largest = max(len(value) for _, _, value in old.messages)
    limit = max(largest + 64, int(limit_share * sum(len(v) for _, _, v in old.messages)))
    new = raw_batch_messages(keyed, contracts.codec("raw.v2"), limit=limit)
    assert all(len(value) <= limit for _, _, value, _ in new)
    assert members_by_partition(contracts, new) == v1_by_partition(contracts, old.messages)
