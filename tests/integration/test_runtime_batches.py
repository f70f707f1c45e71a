"""The runner on v2 batch topics, against the real broker and registry: a batch message
goes through the stage's fast path, or member by member; a bad member is its own dead
letter (replayable on the v1 topic beside) and never costs its neighbours; outputs are
imploded on each entity's partition; exactly once across an aborted transaction; v1
input still read beside v2 (a node being upgraded)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from services.runtime.batches import batching, entity_partition
from services.runtime.errors import RejectedInput
from services.runtime.kafka import RecordProducer, make_producer, produce_bytes
from services.runtime.outbox import member_key
from services.runtime.processor import BaseStage, Emit, InputMeta, StageRunner, Tally
from testkit.kafka import CommitFailsOnce, read_to_end
from testkit.records import anonymised_record, observation

pytestmark = pytest.mark.integration

PARTITIONS = 2
ANONYMISED = batching("AnonymisedRecord")
OBSERVATIONS = batching("Observation")
GOOD = [f"e{i}" for i in range(9)]


def member(entity: str, rows: int) -> dict[str, Any]:
    record = anonymised_record()
    record["entity_pseudonym"] = entity
    record["row_count"] = rows
    record["event_times"] = record["event_times"][:1] * rows
    for column in record["columns"]:
        column["missing"] = []
        for kind in ("strings", "doubles"):
            if column[kind]:
                column[kind] = column[kind][:1] * rows
    return record


def to_observation(record: dict[str, Any]) -> dict[str, Any]:
    return {**observation(points=record["row_count"], entity=record["entity_pseudonym"])}


class ToObservations(BaseStage):
    """One Observation per AnonymisedRecord (as many values as rows); refuses the
    entity 'bad'. ``counts`` holds readings per record (undone with a rejected
    record). With ``fast``, a columnar path that writes its counts, then raises on a
    batch holding 'bad' (the runner must undo those counts)."""

    def __init__(self, inputs: list[str], target: str, *, fast: bool = False):
        self.name = f"test-batches-{uuid.uuid4().hex[:6]}"
        self.input_topics = inputs
        self.target = target
        self.fast = fast
        self.fast_batches = 0
        self.counts = Tally()
        self.stores = (self.counts,)

    def transform(self, record: dict[str, Any], meta: InputMeta) -> Iterable[Emit]:
        if record["entity_pseudonym"] == "bad":
            raise RejectedInput("bad-entity", "this test refuses the entity 'bad'")
        self.counts.add("readings", record["row_count"])
        key = member_key("AnonymisedRecord", record)
        assert meta.key == key.encode()  # a member's meta carries its v1 key
        # ...and the key of the message it came in (None for a record that came alone)
        assert meta.batch_key == (message_key(meta.partition) if is_batch(meta.topic) else None)
        yield Emit(self.target, key, to_observation(record), readings=record["row_count"])

    def process_batch(self, batch: dict[str, Any], meta: InputMeta) -> list[Emit] | None:
        if not self.fast:
            return None
        self.fast_batches += 1
        members = ANONYMISED.explode(batch)
        readings = sum(m["row_count"] for m in members)
        self.counts.add("readings", readings)
        if any(m["entity_pseudonym"] == "bad" for m in members):
            raise ValueError("the columnar path leaves this batch to the per-record path")
        [out] = OBSERVATIONS.implode([to_observation(m) for m in members])
        return [
            Emit(self.target, None, out, readings=readings, partition=meta.partition, batched=True)
        ]


def message_key(partition: int) -> bytes:
    """The key this test gives its batch messages (a stage may key them coarser
    than their members, as energy-analytics keys its regrouped readings)."""
    return f"message-{partition}".encode()


def is_batch(topic: str) -> bool:
    return topic.endswith("anonymised.v2")


def produce_input(node, contracts, specs) -> dict[str, int]:
    """Nine good entities and 'bad' as batch messages on anonymised.v2 (by entity
    partition), and one v1 record on anonymised.v1; the readings of each good entity."""
    topic = specs["anonymised.v2"].name
    codec = contracts.codec(topic)
    records = [member(e, rows=i + 1) for i, e in enumerate(GOOD)]
    records.insert(4, member("bad", rows=5))
    by_partition: dict[int, list[dict]] = {}
    for record in records:
        key = member_key("AnonymisedRecord", record)
        by_partition.setdefault(entity_partition(key, PARTITIONS), []).append(record)
    producer = make_producer(node)
    for partition, members in by_partition.items():
        half = len(members) // 2 or 1  # two messages per partition
        for part in (members[:half], members[half:]):
            for batch in ANONYMISED.implode(part):
                value = codec.encode(batch)
                produce_bytes(producer, topic, message_key(partition), value, partition=partition)
    assert producer.flush(30) == 0
    writer = RecordProducer(make_producer(node), contracts)
    writer.produce(specs["anonymised.v1"].name, "lyon|v1-only", member("v1-only", rows=2))
    assert writer.flush() == 0
    return {**{r["entity_pseudonym"]: r["row_count"] for r in records}, "v1-only": 2}


def outputs(node, contracts, topic: str) -> list[tuple[int, dict]]:
    """Every committed observation member with the partition of its message."""
    codec = contracts.codec(topic)
    out = []
    for message in read_to_end(node, topic):
        out += [
            (message.partition(), m) for m in OBSERVATIONS.explode(codec.decode(message.value()))
        ]
    return out


@pytest.fixture()
def topics(node, isolated_topics):
    specs, contracts = isolated_topics(
        "anonymised.v1", "anonymised.v2", "observations.v2", "dlq.v1", partitions=PARTITIONS
    )
    readings = produce_input(node, contracts, specs)
    return specs, contracts, readings


def check_outputs_and_letter(node, contracts, specs, readings: dict[str, int]) -> None:
    got = outputs(node, contracts, specs["observations.v2"].name)
    entities = Counter(m["entity_pseudonym"] for _, m in got)
    assert entities == Counter({e: 1 for e in readings if e != "bad"})  # each exactly once
    for partition, m in got:
        assert len(m["values"]) == readings[m["entity_pseudonym"]]
        assert partition == entity_partition(member_key("Observation", m), PARTITIONS)

    [message] = read_to_end(node, specs["dlq.v1"].name)
    letter = contracts.codec(specs["dlq.v1"].name).decode(message.value())
    assert letter["reason"] == "bad-entity"
    # Replayable: the member alone, as the v1 record, for the v1 topic the stage reads.
    assert letter["source_topic"] == specs["anonymised.v1"].name
    assert letter["original_key"] == b"lyon|bad"
    original = contracts.codec(specs["anonymised.v1"].name).decode(letter["original_value"])
    assert original["entity_pseudonym"] == "bad" and original["row_count"] == 5
    assert specs["anonymised.v2"].name in letter["position"]
    assert "member" in letter["position"]


def test_a_bad_member_is_its_own_letter_exactly_once_across_an_aborted_commit(node, topics) -> None:
    specs, contracts, readings = topics
    stage = ToObservations(
        [specs["anonymised.v1"].name, specs["anonymised.v2"].name], specs["observations.v2"].name
    )
    runner = CommitFailsOnce(
        stage, node, contracts, instance=stage.name, dead_letter_topic=specs["dlq.v1"].name
    )
    summary = runner.run(idle_exit_s=3)
    assert summary.aborted == 1
    assert summary.dead_letter_reasons == {"bad-entity": 1}
    check_outputs_and_letter(node, contracts, specs, readings)
    good = sum(n for e, n in readings.items() if e != "bad")
    assert stage.counts.total("readings") == good  # counted once, the bad member not at all


def test_the_fast_path_gives_the_outputs_and_a_failing_one_falls_back(node, topics) -> None:
    specs, contracts, readings = topics
    stage = ToObservations(
        [specs["anonymised.v1"].name, specs["anonymised.v2"].name],
        specs["observations.v2"].name,
        fast=True,
    )
    runner = StageRunner(
        stage, node, contracts, instance=stage.name, dead_letter_topic=specs["dlq.v1"].name
    )
    summary = runner.run(idle_exit_s=3)
    assert stage.fast_batches == 4  # every v2 message tried the fast path
    assert summary.dead_letter_reasons == {"bad-entity": 1}
    check_outputs_and_letter(node, contracts, specs, readings)
    good = sum(n for e, n in readings.items() if e != "bad")
    # The failed fast path's counts were undone before its members went one by one.
    assert stage.counts.total("readings") == good


class TicksAfterAbort(ToObservations):
    """Emits one observation from on_tick, once, after a batch aborted."""

    tick_due = False

    def on_abort(self) -> None:
        super().on_abort()
        self.tick_due = True

    def on_tick(self) -> Iterable[Emit]:
        if not self.tick_due:
            return []
        self.tick_due = False
        record = member("tick", rows=1)
        return [Emit(self.target, member_key("AnonymisedRecord", record), to_observation(record))]


class FailsBeforeCommitOnce(StageRunner):
    """A broker failure while the batch's members wait to be imploded (after every
    record was processed), once; the stage's tick comes right after the abort."""

    failed = False

    def _produce_batch_end(self, tally) -> None:
        if not self.failed:
            self.failed = True
            self._ticked = 0.0  # the next loop ticks before reading again
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "injected", retriable=True))
        super()._produce_batch_end(tally)


def test_members_of_an_aborted_batch_never_leave_with_a_later_transaction(node, topics) -> None:
    specs, contracts, readings = topics
    stage = TicksAfterAbort(
        [specs["anonymised.v1"].name, specs["anonymised.v2"].name], specs["observations.v2"].name
    )
    runner = FailsBeforeCommitOnce(
        stage, node, contracts, instance=stage.name, dead_letter_topic=specs["dlq.v1"].name
    )
    summary = runner.run(idle_exit_s=3)
    assert summary.aborted == 1 and runner.failed
    got = outputs(node, contracts, specs["observations.v2"].name)
    expected = {e: 1 for e in readings if e != "bad"} | {"tick": 1}
    assert Counter(m["entity_pseudonym"] for _, m in got) == Counter(expected)
