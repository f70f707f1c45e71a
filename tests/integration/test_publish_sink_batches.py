"""observations.v2 lands in the warehouse exactly as observations.v1 does: the same
readings, one entity per v1 message or many per v2 message (split at random sizes),
give the same rows, on the real broker and chDB; a crash between a batch message's
insert and its offset commit duplicates no member (the insert's token and the resume
point are per message, and a message's members land in one insert)."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import pytest

from services.publish.batch_rows import check_observation_batch, observation_batches_table
from services.publish.rows import observations_table
from services.publish.sink import SinkRoute, WarehouseSink
from services.runtime.batches import batching, entity_partition
from services.runtime.kafka import RecordProducer, make_producer, produce_bytes
from services.runtime.outbox import member_key
from services.warehouse.chdb_embedded import ChdbWarehouse
from services.warehouse.migrations import migrate
from testkit.records import observation

pytestmark = pytest.mark.integration

OBSERVATIONS = batching("Observation")
PARTITIONS = 2
COLUMNS = "city, domain, metric, unit, entity, zone, ts, value, quality, step_seconds, lineage_id"


class CrashAfterInsert(WarehouseSink):
    """Dies at the worst moment: ClickHouse has the batch, Kafka has no commit."""

    def _commit_offsets(self, offsets) -> None:
        raise RuntimeError("killed between insert and commit")


def records() -> list[dict]:
    out = []
    for i in range(24):
        record = observation(points=6 + i % 5, entity=f"m{i}")
        record["metric"] = "electricity.active_energy" if i % 3 else "electricity.active_power"
        record["values"] = [float(i * 100 + k) for k in range(len(record["values"]))]
        out.append(record)
    return out


def produce(node, contracts, specs, readings: list[dict]) -> None:
    """Every record once on observations.v1 (one per message) and once on
    observations.v2, in batch messages of 1 to 7 members on each entity's partition."""
    writer = RecordProducer(make_producer(node), contracts)
    for record in readings:
        writer.produce(specs["observations.v1"].name, member_key("Observation", record), record)
    assert writer.flush() == 0
    topic = specs["observations.v2"].name
    codec = contracts.codec(topic)
    by_partition: dict[int, list[dict]] = {}
    for record in readings:
        key = member_key("Observation", record)
        by_partition.setdefault(entity_partition(key, PARTITIONS), []).append(record)
    chance = random.Random(17)
    producer = make_producer(node)
    for partition, members in by_partition.items():
        while members:
            size = chance.randint(1, 7)
            for batch in OBSERVATIONS.implode(members[:size]):
                produce_bytes(producer, topic, None, codec.encode(batch), partition=partition)
            members = members[size:]
    assert producer.flush(30) == 0


def rows(warehouse, topic: str) -> list[tuple]:
    table = warehouse.query_arrow(
        f"SELECT {COLUMNS} FROM observations WHERE _topic = '{topic}' ORDER BY entity, metric, ts"
    )
    return list(zip(*(table.column(i).to_pylist() for i in range(table.num_columns)), strict=True))


@pytest.mark.parametrize("whole", [False, True], ids=["exploded", "columns"])
def test_batch_members_land_like_v1_records_and_a_crash_duplicates_none(
    node, isolated_topics, tmp_path: Path, whole: bool
) -> None:
    """``columns``: the route publish runs (a batch message landed from its columns)."""
    specs, contracts = isolated_topics("observations.v1", "observations.v2", partitions=PARTITIONS)
    readings = records()
    produce(node, contracts, specs, readings)
    warehouse = ChdbWarehouse(tmp_path / "warehouse")
    try:
        migrate(warehouse)
        routes = [
            SinkRoute(specs["observations.v1"].name, "observations", observations_table),
            SinkRoute(
                specs["observations.v2"].name,
                "observations",
                observation_batches_table if whole else observations_table,
                whole_batches=whole,
            ),
        ]
        group = f"sink-{uuid.uuid4().hex[:6]}"
        crashing = CrashAfterInsert(node, contracts, warehouse, routes, group_id=group)
        crashing.start()
        with pytest.raises(RuntimeError, match="killed"):
            for _ in range(50):  # until the first non-empty batch
                crashing.run_once()
        crashing.close()
        WarehouseSink(node, contracts, warehouse, routes, group_id=group).run(idle_exit_s=3)
        v1 = rows(warehouse, specs["observations.v1"].name)
        v2 = rows(warehouse, specs["observations.v2"].name)
    finally:
        warehouse.close()
    assert len(v1) == sum(len(r["values"]) for r in readings)
    assert v2 == v1


def test_a_batch_that_cannot_become_rows_is_undecodable_and_costs_no_neighbour(
    node, isolated_topics, tmp_path: Path
) -> None:
    """The route publish runs: a batch message whose member carries one quality code
    for several values is reported (undecodable, its dead letter) as it is decoded; the
    batches around it land, and the sink never fails its insert on it."""
    specs, contracts = isolated_topics("observations.v2", partitions=1)
    topic = specs["observations.v2"].name
    codec = contracts.codec(topic)
    good = [observation(points=4, entity=f"g{i}") for i in range(3)]
    bad = {**observation(points=4, entity="bad"), "quality": [5]}
    producer = make_producer(node)
    for members in ([good[0]], [good[1], bad], [good[2]]):
        produce_bytes(producer, topic, None, codec.encode(OBSERVATIONS.batch_of(members)))
    assert producer.flush(30) == 0
    letters: list[str] = []
    warehouse = ChdbWarehouse(tmp_path / "warehouse")
    try:
        migrate(warehouse)
        route = SinkRoute(
            topic,
            "observations",
            observation_batches_table,
            whole_batches=True,
            check=check_observation_batch,
        )
        sink = WarehouseSink(
            node,
            contracts,
            warehouse,
            [route],
            group_id=f"sink-{uuid.uuid4().hex[:6]}",
            on_undecodable=lambda message, error: letters.append(str(error)),
        )
        sink.run(idle_exit_s=3)
        landed = warehouse.query_arrow(
            "SELECT entity, count() AS n FROM observations GROUP BY entity ORDER BY entity"
        ).to_pylist()
    finally:
        warehouse.close()
    assert landed == [{"entity": "g0", "n": 4}, {"entity": "g2", "n": 4}]
    assert sink.summary.undecodable == 1 and len(letters) == 1 and "'quality'" in letters[0]
