"""Short commit cycles on the real broker and chDB: a lone record is committed by the
first cycle that sees it, closed by its linger (not by a batch timeout, not by waiting
for a full batch); the ClickHouse sink lands the messages of every partition of one
batch in one insert (one part per table partition), and closes a batch on its rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from services.publish.rows import observations_table
from services.publish.sink import SinkRoute, WarehouseSink
from services.runtime.kafka import RecordProducer, make_producer
from services.runtime.linger import FULL, LINGERED
from services.runtime.processor import BaseStage, Emit, InputMeta, StageRunner
from services.warehouse.chdb_embedded import ChdbWarehouse
from services.warehouse.migrations import migrate
from testkit.kafka import read_to_end
from testkit.records import observation

pytestmark = pytest.mark.integration


class PassThrough(BaseStage):
    def __init__(self, source: str, target: str):
        self.name = f"test-cycles-{uuid.uuid4().hex[:6]}"
        self.input_topics = [source]
        self.target = target

    def process(self, record: dict[str, Any], meta: InputMeta) -> Iterable[Emit]:
        yield Emit(self.target, meta.key, record, readings=len(record["values"]))


def test_a_lone_record_is_committed_by_the_first_cycle_that_sees_it(node, isolated_topics) -> None:
    specs, contracts = isolated_topics(
        "observations.v1", "public.observations.v1", "dlq.v1", partitions=1
    )
    source, target = specs["observations.v1"].name, specs["public.observations.v1"].name
    writer = RecordProducer(make_producer(node), contracts)
    writer.produce(source, "m1", observation(points=1, entity="m1"))
    assert writer.flush() == 0
    # An idle wait far longer than the linger: were the batch waiting to fill, or for
    # its timeout, this cycle would not have closed by its linger.
    slow_idle = replace(
        node, processing=replace(node.processing, batch_timeout_s=60.0, linger_ms=20)
    )
    runner = StageRunner(
        PassThrough(source, target), slow_idle, contracts, dead_letter_topic=specs["dlq.v1"].name
    )
    runner.start()
    try:
        cycles = 0
        while runner.summary.records_in == 0 and cycles < 10:
            runner.run_once()
            cycles += 1
    finally:
        runner.close()
    assert runner.summary.records_in == 1 and runner.summary.batches == 1
    assert runner.linger.counts.batches == {LINGERED: 1}
    assert cycles == 1 + runner.linger.counts.idle  # committed in the cycle that saw it
    assert [m.key() for m in read_to_end(node, target)] == [b"m1"]


def test_the_sink_lands_a_batch_of_every_partition_in_one_insert(
    node, isolated_topics, tmp_path: Path
) -> None:
    specs, contracts = isolated_topics("observations.v1", partitions=6)
    source = specs["observations.v1"].name
    writer = RecordProducer(make_producer(node), contracts)
    for i in range(24):
        writer.produce(source, f"m{i}", observation(points=10, entity=f"m{i}"))
    assert writer.flush() == 0
    warehouse = ChdbWarehouse(tmp_path / "warehouse")
    try:
        migrate(warehouse)
        sink = WarehouseSink(
            node,
            contracts,
            warehouse,
            [SinkRoute(source, "observations", observations_table)],
            group_id=f"sink-{uuid.uuid4().hex[:6]}",
            flush_s=60.0,  # never reached: the batch closes on its rows
            flush_rows=24 * 10,
        )
        sink.start()
        try:
            for _ in range(300):  # idle cycles until the group has assigned the partitions
                if sink.run_once():
                    break
        finally:
            sink.close()
        parts = warehouse.query_arrow(
            "SELECT count() AS parts, max(max_block_number) AS blocks FROM system.parts "
            "WHERE database = currentDatabase() AND table = 'observations' AND active"
        ).to_pylist()
        rows = warehouse.query_arrow("SELECT count() AS n FROM observations").to_pylist()
    finally:
        warehouse.close()
    assert sink.summary.batches == 1 and sink.summary.messages == 24
    assert sink.summary.inserts == 1  # six partitions, one insert
    assert sink.linger.counts.batches == {FULL: 1}
    assert rows == [{"n": 240}]
    assert parts == [{"parts": 1, "blocks": 1}]  # one month of readings: one part, made once
