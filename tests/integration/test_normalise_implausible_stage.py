"""1e308 Wh through the normalise stage on the real broker: published with the
out-of-range bit for a source that flags (the default), not published and counted
for a source that refuses (``on_implausible: refuse`` in its mapping)."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path

import pytest

from services.normalise import quality
from services.normalise.stage import NormaliseStage, NormaliseTopics
from services.runtime.cities import load_cities
from services.runtime.kafka import RecordProducer, make_producer
from services.runtime.processor import StageRunner
from testkit.kafka import read_all
from testkit.normalise import CURVES, city_file, curves

pytestmark = pytest.mark.integration


def test_1e308_wh_is_flagged_or_refused_per_source(node, isolated_topics, tmp_path: Path):
    specs, contracts = isolated_topics(
        "anonymised.v1", "observations.v1", "normalise.state.v1", "dlq.v1", partitions=1
    )
    refusing = {**copy.deepcopy(CURVES), "id": "curves-refusing"}
    refusing["mapping"]["on_implausible"] = "refuse"
    city_file(tmp_path, "testville", [copy.deepcopy(CURVES), refusing])
    topics = NormaliseTopics(
        input=specs["anonymised.v1"].name,
        output=specs["observations.v1"].name,
        state=specs["normalise.state.v1"].name,
    )
    writer = RecordProducer(make_producer(node), contracts)
    flagged = curves([0.5, 1e305, 0.7], entity="flagging-meter")  # 1e308 Wh, in kWh
    refused = curves([0.5, 1e305, 0.7], entity="refusing-meter")
    refused["source"] = "curves-refusing"
    for rec in (flagged, refused):
        writer.produce(topics.input, f"{rec['city']}|{rec['entity_pseudonym']}", rec)
    assert writer.flush() == 0

    stage = NormaliseStage(node, contracts, load_cities(tmp_path), topics=topics)
    stage.name = f"normalise-test-{uuid.uuid4().hex[:6]}"
    runner = StageRunner(
        stage, node, contracts, instance="a", dead_letter_topic=specs["dlq.v1"].name
    )
    summary = runner.run(idle_exit_s=3)
    assert summary.records_in == 2 and summary.dead_letters == 0

    codec = contracts.codec(topics.output)
    published = [codec.decode(m.value()) for m in read_all(node, topics.output, expected=2)]
    by_entity: dict[str, list[tuple[float, int]]] = {}
    for o in published:
        marks = o["quality"] or [0] * len(o["values"])
        by_entity.setdefault(o["entity_pseudonym"], []).extend(zip(o["values"], marks, strict=True))
    assert by_entity["flagging-meter"] == [(0.5, 0), (1e305, quality.OUT_OF_RANGE), (0.7, 0)]
    assert [value for value, _ in by_entity["refusing-meter"]] == [0.5, 0.7]
    assert stage.dropped.labels("implausible")._value.get() == 1
