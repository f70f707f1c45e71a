"""A stage's changelog-backed state against the real broker: restored by a new
process, untouched by aborted batches and by records that went to dead letters."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import pytest

from services.runtime.changelog_deltas import is_delta
from services.runtime.errors import RejectedInput
from services.runtime.kafka import RecordProducer, make_producer
from services.runtime.processor import BaseStage, Emit, InputMeta, StageRunner
from services.runtime.provisioning import connect_contracts, provision_topics
from services.runtime.state import ChangelogStore
from services.runtime.topics import TopicSpec
from testkit.kafka import CommitFailsOnce, read_to_end, restored_state
from testkit.records import observation

pytestmark = pytest.mark.integration


class RunningTotals(BaseStage):
    """Keeps a running total of values per entity; emits the total after each record.
    Its store is declared: the runner restores it, produces its changelog records
    (one delta per partition and batch) and commits or drops its writes."""

    def __init__(self, node, contracts, source: str, target: str, changelog: str):
        self.name = f"test-totals-{uuid.uuid4().hex[:6]}"
        self.input_topics = [source]
        self.target = target
        self.node = node
        self.contracts = contracts
        self.totals = ChangelogStore("totals", changelog, deltas=True)
        self.stores = (self.totals,)

    def transform(self, record: dict[str, Any], meta: InputMeta) -> Iterable[Emit]:
        entity = record["entity_pseudonym"]
        total = self.totals.get(entity, 0.0) + sum(record["values"])
        self.totals.put(entity, total, meta.partition)
        if record["city"] == "poison":  # the state write above must be undone
            raise RejectedInput("poison", "poisoned record")
        yield Emit(self.target, entity, {**record, "values": [total]})


def test_state_survives_restart_and_ignores_aborted_and_rejected_writes(node, isolated_topics):
    specs, contracts = isolated_topics(
        "observations.v1", "public.observations.v1", "dlq.v1", partitions=2
    )
    changelog = replace(
        TopicSpec(f"{specs['dlq.v1'].name}.changelog", "StateEntry", "k", 2, -1, "compact")
    )
    provision_topics(node, [changelog])
    contracts = connect_contracts(node, [*specs.values(), changelog])
    source, target = specs["observations.v1"].name, specs["public.observations.v1"].name
    writer = RecordProducer(make_producer(node), contracts)

    def send(entity: str, value: float, city: str = "lyon") -> None:
        writer.produce(
            source,
            entity,
            {**observation(points=1, entity=entity), "values": [value], "city": city},
        )

    for i in range(6):
        send(f"e{i % 3}", 1.0)  # e0, e1, e2 twice each
    send("e0", 100.0, city="poison")
    assert writer.flush() == 0

    group = f"g-{uuid.uuid4().hex[:6]}"
    first = RunningTotals(node, contracts, source, target, changelog.name)
    first.name = group
    summary = CommitFailsOnce(
        first, node, contracts, instance="a", dead_letter_topic=specs["dlq.v1"].name
    ).run(idle_exit_s=3)
    assert summary.aborted == 1 and summary.dead_letter_reasons == {"poison": 1}
    restored = restored_state(node, contracts, changelog.name, "totals", [0, 1])
    assert {k: restored.get(k) for k in ("e0", "e1", "e2")} == {"e0": 2.0, "e1": 2.0, "e2": 2.0}

    for i in range(3):
        send(f"e{i}", 10.0)
    assert writer.flush() == 0
    second = RunningTotals(node, contracts, source, target, changelog.name)
    second.name = group  # same consumer group: resumes after the committed offsets
    StageRunner(second, node, contracts, instance="b", dead_letter_topic=specs["dlq.v1"].name).run(
        idle_exit_s=3
    )
    restored = restored_state(node, contracts, changelog.name, "totals", [0, 1])
    assert {k: restored.get(k) for k in ("e0", "e1", "e2")} == {
        "e0": 12.0,
        "e1": 12.0,
        "e2": 12.0,
    }
    # The changelog holds delta records only (one per partition and batch), and the
    # second run, having carried the first run's deltas forward, tombstoned them
    # (null values) in its transaction: the restore above read through both.
    messages = read_to_end(node, changelog.name)
    records = [
        contracts.codec(changelog.name).decode(m.value()) for m in messages if m.value() is not None
    ]
    assert records and all(is_delta(r["key"]) for r in records)
    assert any(m.value() is None for m in messages)
