"""One bad attribute costs only itself: a station with one pollutant in ppb keeps its
eleven good metrics, and the pollutant alone is set aside with its reason."""

from __future__ import annotations

from pathlib import Path

from services.normalise.rejects import attribute_record
from testkit.normalise import Run, city_file, normaliser, record

GOOD = {  # attribute -> value (the model's default unit)
    "no2": 22.0,
    "pm10": 18.0,
    "pm25": 9.0,
    "o3": 61.0,
    "co": 0.3,
    "no": 4.0,
    "nox": 28.0,
    "airQualityIndex": 3.0,
    "temperature": 12.2,
    "relativeHumidity": 0.54,
    "windSpeed": 0.64,
}
STATION = {"id": "air", "format": "ngsi-v2-normalized", "domain": "environment", "entity": "id"}


def station(so2_unit: str = "61") -> dict:
    """An AirQualityObserved entity (NGSI-v2 normalized): eleven metrics in their
    units, and so2 with unitCode 61 (ppb: no conversion to µg/m3 without a molar
    mass and a temperature)."""
    columns = {"dateObserved": ["2025-01-13T10:00:00Z"]}
    columns |= {name: [value] for name, value in GOOD.items()}
    columns |= {"so2": [4.0], "so2@unitCode": [so2_unit], "no2@unitCode": ["GQ"]}
    return record("testville", "air", columns, entity_type="AirQualityObserved")


def test_a_station_keeps_its_good_metrics_and_sets_the_bad_one_aside(tmp_path: Path):
    norm = normaliser(city_file(tmp_path, "testville", [STATION]))
    rec = station()
    outcome = norm.normalise(rec, {}.get)
    metrics = {o["metric"]: o["values"] for o in outcome.observations}
    assert len(metrics) == 11 and "so2" not in metrics
    assert metrics["no2"] == [22.0] and metrics["relative_humidity"] == [54.0]
    [reject] = outcome.rejected
    assert (reject.attribute, reject.reason, reject.readings) == ("so2", "incompatible-unit", 1)
    assert "ppb" in reject.message and "µg/m3" in reject.message
    # its letter holds the attribute alone (with the entity's time), not the good ones
    letter = attribute_record(rec, reject)
    assert {c["name"] for c in letter["columns"]} == {"dateObserved", "so2", "so2@unitCode"}
    assert rec["columns"] != letter["columns"]  # the input record is left as it was


def test_every_bad_attribute_is_set_aside_on_its_own(tmp_path: Path):
    norm = normaliser(city_file(tmp_path, "testville", [STATION]))
    rec = station()
    rec["columns"] = [c for c in rec["columns"] if c["name"] != "no2@unitCode"]
    rec["columns"].append(record("t", "s", {"no2@unitCode": ["furlongs"]})["columns"][0])
    outcome = norm.normalise(rec, {}.get)
    assert sorted((r.attribute, r.reason) for r in outcome.rejected) == [
        ("no2", "unknown-unit"),
        ("so2", "incompatible-unit"),
    ]
    assert len(outcome.observations) == 10


def test_a_good_station_sets_nothing_aside(tmp_path: Path):
    run = Run(normaliser(city_file(tmp_path, "testville", [STATION])))
    outcome = run.norm.normalise(station("GQ"), {}.get)
    assert outcome.rejected == [] and len(outcome.observations) == 12
