"""The normalise stage on the real broker and registry: register differences across a
restart (state restored from the changelog), replays publish nothing twice, unit
errors go to the dead-letter topic (one attribute alone when the entity has others)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from services.normalise.stage import NormaliseStage, NormaliseTopics
from services.runtime.cities import load_cities
from services.runtime.kafka import RecordProducer, make_producer
from services.runtime.processor import StageRunner
from testkit.kafka import read_to_end
from testkit.normalise import CURVES, LINKY, MIN10, T0, city_file, curves, linky, record

pytestmark = pytest.mark.integration

METERS = ("meter-a", "meter-b", "meter-c")
DAY = 144


@pytest.fixture()
def setup(node, isolated_topics, tmp_path: Path):
    specs, contracts = isolated_topics(
        "anonymised.v1", "observations.v1", "normalise.state.v1", "dlq.v1", partitions=2
    )
    station = {"id": "air", "format": "ngsi-v2-normalized", "domain": "environment", "entity": "id"}
    city_file(tmp_path, "testville", [LINKY, CURVES, station])
    cities = load_cities(tmp_path)
    topics = NormaliseTopics(
        input=specs["anonymised.v1"].name,
        output=specs["observations.v1"].name,
        state=specs["normalise.state.v1"].name,
        dead_letters=specs["dlq.v1"].name,
    )
    group = f"normalise-test-{uuid.uuid4().hex[:6]}"
    writer = RecordProducer(make_producer(node), contracts)

    def send(records: list[dict]) -> None:
        for rec in records:
            writer.produce(topics.input, f"{rec['city']}|{rec['entity_pseudonym']}", rec)
        assert writer.flush() == 0

    def run(instance: str):
        stage = NormaliseStage(node, contracts, cities, topics=topics)
        stage.name = group  # same consumer group: a restart resumes after committed offsets
        runner = StageRunner(
            stage, node, contracts, instance=instance, dead_letter_topic=specs["dlq.v1"].name
        )
        return stage, runner.run(idle_exit_s=3)

    # Read once a run has returned: its transactions are committed, so the end of the
    # log is all there is (no waiting for stragglers, nor 20 s on an empty topic).
    def observations() -> list[dict]:
        codec = contracts.codec(topics.output)
        return [codec.decode(m.value()) for m in read_to_end(node, topics.output)]

    def dead_letters() -> list[dict]:
        codec = contracts.codec(specs["dlq.v1"].name)
        return [codec.decode(m.value()) for m in read_to_end(node, specs["dlq.v1"].name)]

    def decode_input(value: bytes) -> dict:
        return contracts.codec(topics.input).decode(value)

    return send, run, observations, dead_letters, decode_input


def registers(day: int, meter: int) -> list[int]:
    """Wh registers of a meter at each 10-minute boundary of a day (grows by meter+1 Wh)."""
    base = 5_000_000 + meter * 1_000_000
    return [base + (day * DAY + k) * (100 + meter) for k in range(DAY)]


def expanded(observations: list[dict]) -> dict[tuple[str, int], float]:
    out = {}
    for o in observations:
        for k, value in enumerate(o["values"]):
            key = (o["entity_pseudonym"], o["start"] + k * o["step_seconds"] * 1_000_000)
            assert key not in out, f"published twice: {key}"
            out[key] = value
    return out


def test_register_differences_across_a_restart_and_replays(setup):
    send, run, observations, dead_letters, _ = setup
    send([linky(registers(0, m), 0, entity=e, lineage="day-1") for m, e in enumerate(METERS)])
    _, summary = run("a")
    assert summary.records_in == 3 and summary.dead_letters == 0
    first = expanded(observations())
    assert len(first) == 3 * (DAY - 1)  # the first reading of a meter only sets its register

    # a new process (empty memory) restores the registers from the changelog
    send([linky(registers(1, m), DAY, entity=e, lineage="day-2") for m, e in enumerate(METERS)])
    _, summary = run("b")
    assert summary.records_in == 3 and summary.dead_letters == 0
    both = expanded(observations())
    assert len(both) == 3 * (2 * DAY - 1)
    for m, entity in enumerate(METERS):
        # the interval between the two days' records, computed from the restored register
        assert both[(entity, T0 + (DAY - 1) * MIN10)] == pytest.approx((100 + m) / 1000)
        assert all(both[(entity, T0 + k * MIN10)] == (100 + m) / 1000 for k in range(2 * DAY - 1))

    # replays of both days, and of a load curve already published, publish nothing new
    send([linky(registers(0, m), 0, entity=e, lineage="day-1") for m, e in enumerate(METERS)])
    send([linky(registers(1, m), DAY, entity=e, lineage="day-2") for m, e in enumerate(METERS)])
    send([curves([0.1] * DAY, entity="curve-1", lineage="c1")])
    run("c")
    count = len(observations())
    send([curves([0.1] * DAY, entity="curve-1", lineage="c1-again")])
    _, summary = run("d")
    assert summary.records_in == 1 and summary.records_out == 0
    assert len(observations()) == count
    final = expanded(observations())  # (asserts nothing was published twice)
    assert len(final) == 3 * (2 * DAY - 1) + DAY
    assert dead_letters() == []


def test_unit_errors_go_to_the_dead_letter_topic(setup):
    send, run, observations, dead_letters, _ = setup
    send(
        [
            curves([0.1, 0.2], unit=["kWh", "kW"], entity="bad-dimension"),
            curves([0.1, 0.2], unit=["kWh", "furlongs"], entity="bad-unit"),
            curves([150.0, 250.0], unit="Wh", entity="good"),
        ]
    )
    _, summary = run("a")
    assert summary.dead_letter_reasons == {"incompatible-unit": 1, "unknown-unit": 1}
    letters = {letter["reason"]: letter for letter in dead_letters()}
    assert letters["incompatible-unit"]["stage"].startswith("normalise")
    assert "kW" in letters["incompatible-unit"]["message"]
    assert letters["unknown-unit"]["original_value"]  # the bytes, for a replay once fixed
    published = observations()
    assert [(o["entity_pseudonym"], o["values"]) for o in published] == [("good", [0.15, 0.25])]


def test_one_unconvertible_attribute_is_dead_lettered_alone(setup):
    send, run, observations, dead_letters, decode_input = setup
    good = {"no2": 22.0, "pm10": 18.0, "pm25": 9.0, "o3": 61.0, "co": 0.3, "no": 4.0}
    good |= {"nox": 28.0, "airQualityIndex": 3.0, "temperature": 12.2}
    good |= {"relativeHumidity": 0.54, "windSpeed": 0.64}
    columns = {"dateObserved": ["2025-01-13T10:00:00Z"], **{k: [v] for k, v in good.items()}}
    columns |= {"so2": [4.0], "so2@unitCode": ["61"]}  # ppb: not convertible to µg/m3
    send(
        [record("testville", "air", columns, entity="station-1", entity_type="AirQualityObserved")]
    )
    _, summary = run("a")
    assert summary.records_in == 1 and summary.dead_letter_reasons == {"incompatible-unit": 1}
    published = observations()
    assert len(published) == 11 and "so2" not in {o["metric"] for o in published}
    [letter] = dead_letters()
    assert (letter["reason"], letter["field_names"]) == ("incompatible-unit", ["so2"])
    assert "so2" in letter["message"] and "ppb" in letter["message"]
    original = decode_input(letter["original_value"])  # replayable: this attribute alone
    assert {c["name"] for c in original["columns"]} == {"dateObserved", "so2", "so2@unitCode"}
    assert original["entity_pseudonym"] == "station-1"


def test_a_correction_and_an_implausible_time_on_the_broker(setup):
    """A correction crosses the broker with its version and replaced value (the
    Observation schema's optional fields); a row with an implausible time is its own
    dead letter while its neighbours are published."""
    send, run, observations, dead_letters, _ = setup
    send([curves([0.1] * 6, entity="curve-1", lineage="c1")])
    run("a")
    broken = curves([0.3, 0.2], entity="curve-1", lineage="c2")  # 00:00 corrected, 00:10 again
    for column in broken["columns"]:
        if column["name"] == "horodate":
            column["strings"] = ["2025-01-13 00:00:00", "1970-01-21 10:20:00"]
    send([broken])
    _, summary = run("b")
    assert summary.records_in == 1
    corrections = [o for o in observations() if o["versions"]]
    assert [(o["start"], o["values"], o["versions"], o["replaced"]) for o in corrections] == [
        (T0, [0.3], [1], [0.1])
    ]
    [letter] = dead_letters()
    assert letter["reason"] == "time-implausible" and letter["original_value"] is None
    assert "row 2" in letter["message"] and letter["source_offset"] is not None
