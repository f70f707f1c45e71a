"""Members emitted to a batch topic become batch messages that keep what v1 messages
kept: each entity on its partition (the one its v1 record would have had), each
entity's records in order, every member exactly once, every message under the size
limit; ready batches keep their place among the members."""

from __future__ import annotations

import io

import fastavro
from hypothesis import given, settings
from hypothesis import strategies as st

from services.runtime.batches import batching, entity_partition
from services.runtime.codec import parse_plain
from services.runtime.outbox import Outbox, Produced, member_key, ordered_groups
from services.runtime.schemas import load_schemas
from services.runtime.stage import Emit
from testkit.records import observation

TOPIC = "observations.v2"
PARTITIONS = 6
OBSERVATIONS = batching("Observation")
_SCHEMA = parse_plain(load_schemas()["ObservationBatch"].expanded)


def encode(batch: dict) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, _SCHEMA, batch)
    return out.getvalue()


def member(entity: str, seq: int, lineage: str, points: int = 2) -> Emit:
    """One observation of ``entity``; ``seq`` (its first value) tells records apart.
    Every field present (as a batch gives its members back)."""
    record = {**observation(points=points, entity=entity), "lineage_id": lineage}
    record["values"] = [float(seq), *record["values"][1:]]
    [record] = OBSERVATIONS.explode(OBSERVATIONS.implode([record])[0])
    return Emit(TOPIC, member_key("Observation", record), record, readings=points)


def drain(outbox: Outbox) -> list[Produced]:
    return outbox.drain(lambda _topic: OBSERVATIONS, lambda _topic: encode)


emits = st.lists(
    st.builds(
        member,
        st.sampled_from(["a", "b", "c", "d", "e"]),
        st.integers(0, 10**6),
        st.sampled_from(["L1", "L2", "L3"]),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(emits)
def test_every_member_once_on_its_entity_partition_in_its_entity_order(run: list[Emit]) -> None:
    outbox = Outbox()
    for emit in run:
        outbox.add_member(emit, PARTITIONS)
    produced = drain(outbox)
    assert not outbox  # drained
    got: list[tuple[int, dict]] = []
    for message in produced:
        assert message.emit.batched and message.emit.key is None
        assert message.value == encode(message.emit.value)
        members = OBSERVATIONS.explode(message.emit.value)
        assert message.emit.readings == sum(len(m["values"]) for m in members)
        got += [(message.emit.partition, m) for m in members]
    assert len(got) == len(run)
    for partition, record in got:  # one entity, one partition: its v1 record's
        assert partition == entity_partition(member_key("Observation", record), PARTITIONS)
    for entity in "abcde":
        sent = [e.value for e in run if e.value["entity_pseudonym"] == entity]
        assert [r for _, r in got if r["entity_pseudonym"] == entity] == sent


def test_members_that_share_their_batch_fields_share_a_message() -> None:
    outbox = Outbox()
    run = [member(e, i, "L1") for i, e in enumerate("aaaa")]  # one entity, one partition
    for emit in run:
        outbox.add_member(emit, PARTITIONS)
    [message] = drain(outbox)
    assert OBSERVATIONS.explode(message.emit.value) == [e.value for e in run]


def test_an_entity_does_not_overtake_itself_across_groups() -> None:
    """a1 (L1), a2 (L2), a3 (L1): a3 may not join a1's batch, which goes first."""
    run = [(i, member("a", i, lineage)) for i, lineage in enumerate(("L1", "L2", "L1"))]
    groups = ordered_groups(run, OBSERVATIONS)
    assert [[e.value["values"][0] for e in g] for g, _ in groups] == [[0.0], [1.0], [2.0]]
    other = [
        (i, member(name, i, lineage))
        for i, (name, lineage) in enumerate((("a", "L1"), ("b", "L2"), ("c", "L1")))
    ]
    groups = ordered_groups(other, OBSERVATIONS)  # three inputs: a and c share
    assert [(len(g), inputs) for g, inputs in groups] == [(2, {0, 2}), (1, {1})]
    same = [(0, emit) for _, emit in other]  # one input: c may not pass b
    assert [len(g) for g, _ in ordered_groups(same, OBSERVATIONS)] == [1, 1, 1]


def test_a_batch_too_large_for_a_message_is_cut_in_order() -> None:
    run = [member(f"m{i}", i, "L1", points=50) for i in range(40)]
    one = len(encode(OBSERVATIONS.implode([run[0].value])[0]))
    outbox = Outbox(limit=one * 5)
    for emit in run:
        outbox.add_member(emit, 1)  # one partition: one group
    produced = drain(outbox)
    assert len(produced) > 1
    assert all(len(p.value) <= one * 5 for p in produced)
    flat = [m for p in produced for m in OBSERVATIONS.explode(p.emit.value)]
    assert flat == [e.value for e in run]


def test_a_ready_batch_keeps_its_place_among_members() -> None:
    outbox = Outbox()
    first, last = member("a", 1, "L1"), member("a", 3, "L1")
    (ready,) = OBSERVATIONS.implode([member("a", 2, "L1").value])
    partition = entity_partition(first.key, PARTITIONS)
    outbox.add_member(first, PARTITIONS)
    outbox.add_batch(Emit(TOPIC, None, ready, partition=partition, batched=True), encode(ready))
    outbox.add_member(last, PARTITIONS)
    produced = drain(outbox)
    values = [m["values"][0] for p in produced for m in OBSERVATIONS.explode(p.emit.value)]
    assert values == [1.0, 2.0, 3.0]
    assert {p.emit.partition for p in produced} == {partition}
    assert len(produced) == 1  # one kind in one lane: joined
