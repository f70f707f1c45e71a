"""A day of a source coarsened to the day, re-sent without an idempotency key (so
under another lineage id), lands once in the warehouse: through the normalise
stage on the real broker, then publish's sink into the real ClickHouse engine
(chDB), in ``observations`` and in the daily rollup alike."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from services.normalise.stage import NormaliseStage, NormaliseTopics
from services.publish.rows import observations_table
from services.publish.sink import SinkRoute, WarehouseSink
from services.runtime.cities import load_cities
from services.runtime.kafka import RecordProducer, make_producer
from services.runtime.processor import StageRunner
from services.warehouse.chdb_embedded import ChdbWarehouse
from services.warehouse.migrations import migrate
from testkit.normalise import CURVES, T0, city_file, curves

pytestmark = pytest.mark.integration

METERS = ("meter-a", "meter-b")


def day_record(entity: str, kwh: float, lineage: str) -> dict:
    """What anonymise releases for one meter's local day: one summed row."""
    rec = curves([kwh], entity=entity, lineage=lineage)
    rec["event_times"] = [T0]
    rec["attributes"] = {"anonymise.coarsened": "P1D"}
    return rec


def test_a_day_re_sent_under_another_lineage_lands_once(node, isolated_topics, tmp_path: Path):
    specs, contracts = isolated_topics(
        "anonymised.v1", "observations.v1", "normalise.state.v1", "dlq.v1", partitions=2
    )
    city_file(tmp_path, "testville", [CURVES])
    topics = NormaliseTopics(
        input=specs["anonymised.v1"].name,
        output=specs["observations.v1"].name,
        state=specs["normalise.state.v1"].name,
    )
    writer = RecordProducer(make_producer(node), contracts)
    for lineage in ("push-1", "push-2-same-day-again", "push-3-and-again"):
        for n, meter in enumerate(METERS):
            rec = day_record(meter, 10.0 + n, lineage)
            writer.produce(topics.input, f"testville|{meter}", rec)
    assert writer.flush() == 0

    stage = NormaliseStage(node, contracts, load_cities(tmp_path), topics=topics)
    stage.name = f"normalise-resent-{uuid.uuid4().hex[:6]}"
    StageRunner(stage, node, contracts, instance="0", dead_letter_topic=specs["dlq.v1"].name).run(
        idle_exit_s=3
    )

    warehouse = ChdbWarehouse(tmp_path / "warehouse")
    try:
        migrate(warehouse)
        route = SinkRoute(topics.output, "observations", observations_table)
        WarehouseSink(
            node, contracts, warehouse, [route], group_id=f"sink-{uuid.uuid4().hex[:6]}"
        ).run(idle_exit_s=3)
        rows = warehouse.query_arrow(
            "SELECT entity, value FROM observations ORDER BY entity"
        ).to_pylist()
        daily = warehouse.query_arrow(
            "SELECT sumMerge(total) AS total, countMerge(readings) AS readings "
            "FROM observations_daily"
        ).to_pylist()
    finally:
        warehouse.close()
    assert rows == [{"entity": "meter-a", "value": 10.0}, {"entity": "meter-b", "value": 11.0}]
    assert daily == [{"total": 21.0, "readings": 2}]
