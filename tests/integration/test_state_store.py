"""A stage's changelog-backed state against the real broker: restored by a new
process, untouched by aborted batches and by records that went to dead letters."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import pytest

from services.runtime.errors import RejectedInput
from services.runtime.kafka import RecordProducer, make_producer
from services.runtime.processor import BaseStage, Emit, InputMeta, StageRunner
from services.runtime.provisioning import connect_contracts, provision_topics
from services.runtime.state import ChangelogStore, restore
from services.runtime.topics import TopicSpec
from testkit.kafka import CommitFailsOnce
from testkit.records import observation

pytestmark = pytest.mark.integration


class RunningTotals(BaseStage):
    """Keeps a running total of values per entity; emits the total after each record."""

    def __init__(self, node, contracts, source: str, target: str, changelog: str):
        self.name = f"test-totals-{uuid.uuid4().hex[:6]}"
        self.input_topics = [source]
        self.target = target
        self.node = node
        self.contracts = contracts
        self.totals = ChangelogStore("totals", changelog)

    def on_assign(self, partitions: list[int]) -> None:
        restore(
            self.node, [self.totals], partitions, self.contracts.codec(self.totals.topic).decode
        )

    def on_commit(self) -> None:
        self.totals.commit()

    def on_abort(self) -> None:
        self.totals.abort()

    def on_record_failed(self) -> None:
        self.totals.rollback_record()

    def process(self, record: dict[str, Any], meta: InputMeta) -> Iterable[Emit]:
        self.totals.begin_record()
        entity = record["entity_pseudonym"]
        total = self.totals.get(entity, 0.0) + sum(record["values"])
        yield self.totals.put(entity, total, meta.partition)
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
    assert {k: first.totals.get(k) for k in ("e0", "e1", "e2")} == {"e0": 2.0, "e1": 2.0, "e2": 2.0}

    for i in range(3):
        send(f"e{i}", 10.0)
    assert writer.flush() == 0
    second = RunningTotals(node, contracts, source, target, changelog.name)
    second.name = group  # same consumer group: resumes after the committed offsets
    StageRunner(second, node, contracts, instance="b", dead_letter_topic=specs["dlq.v1"].name).run(
        idle_exit_s=3
    )
    assert {k: second.totals.get(k) for k in ("e0", "e1", "e2")} == {
        "e0": 12.0,
        "e1": 12.0,
        "e2": 12.0,
    }
