"""Delta changelogs (services/runtime/changelog_deltas.py) beyond one owner that
stays put: two workers that both write one changelog partition, owners that change
more often than a cycle's age, and keys written one record per key by an earlier
release. The log is replayed as a new owner reads it (whole, or compacted as far
as Kafka may compact it: every record with a later one of its key removed, every
tombstone removed once its retention passed)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from services.normalise.stage import NormaliseStage, NormaliseTopics
from services.runtime import changelog_deltas
from services.runtime.config import load_node_config
from services.runtime.errors import ConfigError
from services.runtime.processor import StageRunner
from services.runtime.stage import BaseStage, Emit
from services.runtime.state import ChangelogStore
from services.runtime.topics import resolve_topics
from testkit.codecs import offline_contracts

NAME, TOPIC, PARTITION = "normalise", "normalise.state.v1", 3
Log = list[tuple[str, dict[str, Any] | None]]  # one partition: Kafka key, record (None: tombstone)


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def written(log: Log, emits: list[Emit]) -> None:
    for emit in emits:
        assert emit.partition == PARTITION and isinstance(emit.key, str)
        log.append((emit.key, emit.value))


def compacted(log: Log) -> Log:
    """The whole log cleaned: the last record of each key, no tombstone."""
    last = {key: offset for offset, (key, _) in enumerate(log)}
    return [(k, r) for o, (k, r) in enumerate(log) if last[k] == o and r is not None]


def restored(log: Log, clock: Clock) -> ChangelogStore:
    """A worker that was assigned the partition: the log read from the start."""
    store = ChangelogStore(NAME, TOPIC, deltas=True, clock=clock)
    for key, record in log:
        if record is None:
            store.apply_tombstone(key.split("|", 1)[1], PARTITION)
        else:
            store.apply(json.loads(json.dumps(record)), PARTITION)
    store.finish_restore([PARTITION])
    return store


def batch(store: ChangelogStore, log: Log, puts: dict[str, Any], deletes: tuple[str, ...] = ()):
    """One committed batch (or, with nothing to write, a tick)."""
    for key, value in puts.items():
        store.put(key, value, PARTITION)
    for key in deletes:
        store.delete(key, PARTITION)
    written(log, store.changelog_emits())
    store.commit()


def test_a_stage_whose_delta_changelog_could_have_two_writers_is_refused() -> None:
    """Found in review: a stage reading two topics without co-partitioning may get
    partition n of each on two workers, both writing changelog partition n; each then
    carries the other's keys forward with stale values and tombstones its deltas (a
    value one deleted, the other wrote back forever). Such a stage does not start."""

    class TwoInputs(BaseStage):
        name = "two-inputs"
        input_topics = ("anonymised.v1", "anonymised.v2")

        def __init__(self, deltas: bool):
            self.stores = (ChangelogStore(NAME, TOPIC, deltas=deltas),)

    node = load_node_config(env={})
    contracts = offline_contracts(TOPIC)
    with pytest.raises(ConfigError, match="co-partitioned"):
        StageRunner(TwoInputs(True), node, contracts, consumer=_Consumer(), producer=_Producer())  # type: ignore[arg-type]
    StageRunner(TwoInputs(False), node, contracts, consumer=_Consumer(), producer=_Producer())  # type: ignore[arg-type]
    co_partitioned = TwoInputs(True)
    co_partitioned.co_partitioned = True
    StageRunner(co_partitioned, node, contracts, consumer=_Consumer(), producer=_Producer())  # type: ignore[arg-type]


def test_a_deleted_value_leaves_the_topic_when_owners_change_more_often_than_a_cycle_age() -> None:
    """The time bound "tombstoned within about two cycle ages even without input": a
    restored partition starts a new cycle at the restore, so when the partition is
    assigned again every few minutes (a sibling worker restarting in a loop rebalances
    the group; every range-assigned worker restores all it holds) no cycle ever ends
    and a deleted value stays on the topic, here for eight cycle ages."""
    clock, log = Clock(), []
    owner = restored(log, clock)
    batch(owner, log, {f"city|m{n}": {"secret": f"reading-{n}"} for n in range(50)})
    clock.now += 1
    batch(owner, log, {}, deletes=("city|m7",))
    while clock.now < 8 * changelog_deltas.CYCLE_MAX_AGE_S:
        clock.now += changelog_deltas.CYCLE_MAX_AGE_S * 5 / 6  # a rebalance
        log = compacted(log)
        owner = restored(log, clock)
        clock.now += changelog_deltas.CYCLE_MAX_AGE_S * 5 / 6 - 1  # ticks, no input
        batch(owner, log, {})
    text = json.dumps(compacted(log))
    assert "reading-8" in text
    assert "reading-7" not in text


def test_a_key_written_before_deltas_leaves_the_topic_once_deleted() -> None:
    """A key with a per-key record of an earlier release (an energy meter-day names
    the meter's pseudonym and the day) is deleted with a per-key record whose Kafka
    value is not null: compaction keeps it as the key's last record, forever."""
    clock, log = Clock(), []
    old = ChangelogStore(NAME, TOPIC, clock=clock)
    old.put("md|lyon|electricity|1|Z1|residential|m7", {"v": 1}, PARTITION)
    old.put("md|lyon|electricity|1|Z1|residential|m8", {"v": 1}, PARTITION)
    written(log, old.changelog_emits())
    old.commit()
    store = restored(log, clock)
    batch(store, log, {}, deletes=("md|lyon|electricity|1|Z1|residential|m7",))
    for _ in range(3):
        clock.now += changelog_deltas.CYCLE_MAX_AGE_S
        batch(store, log, {})
    assert "m7" not in json.dumps(compacted(log))


def test_normalise_whose_state_is_deltas_has_one_writer_per_state_partition() -> None:
    """The rewrites above are sound only with one writer per changelog partition: a
    stage with more than one input topic gets that only when co-partitioned (the range
    assignor pinned and each assignment checked, services/runtime/copartition.py)."""
    topics = NormaliseTopics.resolve(resolve_topics())
    assert len(topics.inputs) == 2
    assert NormaliseStage.co_partitioned


class _Producer:
    """Records what a transaction holds."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def produce(self, topic: str, value: bytes | None, key: Any, **kwargs: Any) -> None:
        self.calls.append(f"produce {topic} {'tombstone' if value is None else 'record'}")

    def send_offsets_to_transaction(self, offsets: Any, group: Any, timeout: float) -> None:
        self.calls.append("send_offsets")

    def commit_transaction(self, timeout: float) -> None:
        self.calls.append("commit")


class _Consumer:
    """A member whose partition is still listed: the group may have moved it already
    (past max.poll.interval.ms the member is out, told only at its next poll)."""

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("anonymised.v1", PARTITION)]

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition("anonymised.v1", PARTITION, 10)]

    def consumer_group_metadata(self) -> object:
        return object()


class _DeltaStage(BaseStage):
    name = "normalise"
    input_topics = ("anonymised.v1",)

    def __init__(self, store: ChangelogStore):
        self.store = store
        self.stores = (store,)


def test_a_tick_that_writes_a_changelog_is_fenced_like_a_batch() -> None:
    """A batch's transaction carries the group's offsets, so a worker that lost its
    partitions cannot commit it (the coordinator refuses the old generation). A tick
    now writes a cycle's rewrites and tombstones whenever one is due, for every stage
    with a delta store, in a transaction without them: a worker that fell out of the
    group (a batch past max.poll.interval.ms) still commits its tick, carrying its
    own values forward after those of the worker that took the partition over."""
    clock, log = Clock(), []
    store = restored(log, clock)
    batch(store, log, {"lyon|a|no2": {"v": 1}})
    clock.now += 2 * changelog_deltas.CYCLE_MAX_AGE_S
    node = load_node_config(env={})
    producer = _Producer()
    runner = StageRunner(
        _DeltaStage(store),
        node,
        offline_contracts(TOPIC),
        consumer=_Consumer(),  # type: ignore[arg-type]
        producer=producer,  # type: ignore[arg-type]
    )
    runner.tick()
    assert any(call.startswith(f"produce {TOPIC}") for call in producer.calls)
    assert "send_offsets" in producer.calls
