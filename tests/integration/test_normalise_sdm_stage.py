"""Official Smart Data Models examples through the normalise stage on the real broker
and registry: their metrics are published, an attribute the vocabulary does not know
is counted in the stage's metrics (what `citeplus status` reads), an entity of a type
with no mapping goes to the dead letters."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from services.ingest.formats import parse_payload
from services.ingest.records import raw_record
from services.node.status import parse_metrics
from services.normalise.stage import NormaliseStage, NormaliseTopics
from services.runtime.cities import load_cities
from services.runtime.kafka import RecordProducer, make_producer
from services.runtime.metrics import ServiceMetrics
from services.runtime.processor import StageRunner
from testkit.kafka import read_all
from testkit.normalise import city_file, from_raw

pytestmark = pytest.mark.integration

SDM = Path(__file__).resolve().parents[1] / "fixtures" / "sdm"
SOURCE = {"id": "meteo", "format": "sdm-keyvalues", "domain": "weather", "entity": "id"}


def anonymised(cities, item: dict, pseudonym: str) -> dict:
    source = cities["testville"].sources[0]
    parsed = parse_payload(json.dumps(item).encode(), source)
    raw = raw_record(parsed.entities[0], source, lineage_id=pseudonym, received_at_us=1)
    return from_raw(raw, pseudonym)


def test_examples_publish_and_unknown_attributes_are_counted(node, isolated_topics, tmp_path):
    specs, contracts = isolated_topics(
        "anonymised.v1", "observations.v1", "normalise.state.v1", "dlq.v1", partitions=1
    )
    city_file(tmp_path, "testville", [dict(SOURCE)])
    cities = load_cities(tmp_path)
    topics = NormaliseTopics(
        input=specs["anonymised.v1"].name,
        output=specs["observations.v1"].name,
        state=specs["normalise.state.v1"].name,
    )
    forecast = json.loads((SDM / "WeatherForecast" / "example.json").read_text())
    forecast["vendorConfidence"] = 0.9
    legacy = json.loads((SDM / "AirQualityObserved" / "example-2019.json").read_text())
    unknown = {"id": "b1", "type": "BeeHive", "honey": 3}
    writer = RecordProducer(make_producer(node), contracts)
    for pseudonym, item in (("forecast", forecast), ("station", legacy), ("hive", unknown)):
        writer.produce(topics.input, pseudonym, anonymised(cities, item, pseudonym))
    assert writer.flush() == 0

    metrics = ServiceMetrics("normalise")
    stage = NormaliseStage(node, contracts, cities, topics=topics, metrics=metrics)
    stage.name = f"normalise-sdm-{uuid.uuid4().hex[:6]}"
    runner = StageRunner(stage, node, contracts, dead_letter_topic=specs["dlq.v1"].name)
    summary = runner.run(idle_exit_s=3)

    assert summary.dead_letter_reasons == {"unknown-entity-type": 1}
    codec = contracts.codec(topics.output)
    published = [codec.decode(m.value()) for m in read_all(node, topics.output)]
    found = {(o["entity_pseudonym"], o["metric"]): (o["values"], o["unit"]) for o in published}
    assert found[("forecast", "forecast_air_temperature_max")] == ([15.0], "°C")
    assert found[("station", "no2")] == ([69.0], "µg/m3")  # "NO2" in the 2019 example
    assert parse_metrics(metrics.exposition().decode()).dropped_attributes == {
        "testville/meteo": 1.0  # vendorConfidence
    }
