"""The ClickHouse sink on the real broker and the real ClickHouse engine (chDB):
rows land, and a crash between the insert and the offset commit duplicates nothing."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from services.publish.rows import aggregates_table, dead_letters_table, observations_table
from services.publish.sink import SinkRoute, WarehouseSink
from services.runtime.kafka import RecordProducer, make_consumer, make_producer
from services.warehouse.chdb_embedded import ChdbWarehouse
from services.warehouse.migrations import migrate
from testkit.records import T0, dead_letter, energy_aggregate, observation

pytestmark = pytest.mark.integration


@pytest.fixture()
def warehouse(tmp_path: Path):
    wh = ChdbWarehouse(tmp_path / "warehouse")
    migrate(wh)
    yield wh
    wh.close()


def routes(specs) -> list[SinkRoute]:
    return [
        SinkRoute(specs["observations.v1"].name, "observations", observations_table),
        SinkRoute(specs["energy.aggregates.v1"].name, "energy_aggregates", aggregates_table),
        SinkRoute(specs["dlq.v1"].name, "dead_letters", dead_letters_table),
    ]


class CrashAfterInsert(WarehouseSink):
    """Dies at the worst moment: ClickHouse has the batch, Kafka has no commit."""

    def _commit_offsets(self, offsets) -> None:
        raise RuntimeError("killed between insert and commit")


def count(warehouse, sql: str) -> int:
    return warehouse.query_arrow(sql).column(0)[0].as_py()


def test_sink_lands_rows_and_survives_a_crash_between_insert_and_commit(
    node, isolated_topics, warehouse
) -> None:
    specs, contracts = isolated_topics(
        "observations.v1", "energy.aggregates.v1", "dlq.v1", partitions=2
    )
    writer = RecordProducer(make_producer(node), contracts)
    for i in range(30):
        writer.produce(
            specs["observations.v1"].name, f"m{i}", observation(points=144, entity=f"m{i}")
        )
    for version in (1, 2):
        writer.produce(
            specs["energy.aggregates.v1"].name,
            "lyon|69381",
            {**energy_aggregate(), "version": version, "energy_kwh": 100.0 * version},
        )
    recent = {**dead_letter(), "failed_at": time.time_ns() // 1000}  # the table keeps 90 days
    writer.produce(specs["dlq.v1"].name, "ingest|nice", recent)
    assert writer.flush() == 0

    group = f"sink-{uuid.uuid4().hex[:6]}"
    crashing = CrashAfterInsert(node, contracts, warehouse, routes(specs), group_id=group)
    crashing.start()
    with pytest.raises(RuntimeError, match="killed"):
        for _ in range(50):  # until the first non-empty batch
            crashing.run_once()
    crashing.close()
    landed_before_restart = count(warehouse, "SELECT count() FROM observations")
    assert landed_before_restart > 0

    sink = WarehouseSink(node, contracts, warehouse, routes(specs), group_id=group)
    summary = sink.run(idle_exit_s=3)
    # It resumed after the rows ClickHouse already held, not from Kafka's committed offsets.
    assert summary.messages + summary.skipped_already_landed < 33

    assert count(warehouse, "SELECT count() FROM observations") == 30 * 144
    assert count(warehouse, "SELECT uniqExact(entity) FROM observations") == 30
    first = warehouse.query_arrow(
        "SELECT ts, value FROM observations WHERE entity = 'm3' ORDER BY ts LIMIT 2"
    ).to_pylist()
    assert [round(r["value"], 6) for r in first] == [0.0, 0.1]
    assert int(first[0]["ts"].timestamp() * 1_000_000) == T0
    assert (first[1]["ts"] - first[0]["ts"]).total_seconds() == 600
    latest = warehouse.query_arrow(
        "SELECT version, energy_kwh FROM energy_aggregates FINAL"
    ).to_pylist()
    assert latest == [{"version": 2, "energy_kwh": 200.0}]
    assert count(warehouse, "SELECT count() FROM dead_letters WHERE reason = 'bad-checksum'") == 1
    hourly = count(
        warehouse,
        "SELECT countMerge(readings) FROM observations_hourly "
        "WHERE metric = 'electricity.active_energy'",
    )
    assert hourly == 30 * 144  # the rollup saw every reading exactly once


@pytest.mark.parametrize("more", [False, True], ids=["nothing-new", "new-input"])
def test_after_a_crash_between_insert_and_commit_the_group_commits_what_the_warehouse_holds(
    node, isolated_topics, warehouse, more: bool
) -> None:
    """The restarted sink resumed after the warehouse's rows, but left the group's
    committed offsets behind them until something new arrived: the brokers (and any
    lag tool, and a settled-pipeline check) saw input the sink would never read again."""
    from services.node.unread import unread_input

    specs, contracts = isolated_topics(
        "observations.v1", "energy.aggregates.v1", "dlq.v1", partitions=1
    )
    topic = specs["observations.v1"].name
    writer = RecordProducer(make_producer(node), contracts)
    for i in range(5):
        writer.produce(topic, f"m{i}", observation(points=4, entity=f"m{i}"))
    assert writer.flush() == 0
    group = f"sink-{uuid.uuid4().hex[:6]}"
    crashing = CrashAfterInsert(node, contracts, warehouse, routes(specs), group_id=group)
    crashing.start()
    with pytest.raises(RuntimeError, match="killed"):
        for _ in range(50):
            crashing.run_once()
    crashing.close()
    assert count(warehouse, "SELECT count() FROM observations") == 5 * 4  # all landed
    assert committed(node, group, topic) < 0  # the crash came before the commit
    if more:  # records that arrive while the sink is down: the restart lands them too
        for i in range(5, 8):
            writer.produce(topic, f"m{i}", observation(points=4, entity=f"m{i}"))
        assert writer.flush() == 0
    total = 8 if more else 5

    WarehouseSink(node, contracts, warehouse, routes(specs), group_id=group).run(idle_exit_s=3)

    # After the last record the warehouse holds: the already landed offsets are never
    # committed after (and over) the newer ones of the restart's first batch.
    assert committed(node, group, topic) == total
    assert unread_input(node, [group]) == []
    assert count(warehouse, "SELECT count() FROM observations") == total * 4  # nothing twice


def committed(node, group: str, topic: str) -> int:
    consumer = make_consumer(node, group_id=group)
    try:
        [tp] = consumer.committed([TopicPartition(topic, 0)], timeout=15)
        return tp.offset
    finally:
        consumer.close()
