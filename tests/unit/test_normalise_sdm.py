"""Every real Smart Data Models sample (8 types x 4 forms) maps with no per-city code.

The samples go through ingest's own parser for their form, then normalise with
nothing but the built-in mapping of their entity type (a source with no
``mapping:`` section)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.ingest.formats import parse_payload
from services.ingest.records import raw_record
from services.normalise import quality
from services.runtime.cities import CityConfig
from testkit.fixtures import SAMPLES
from testkit.normalise import Run, from_raw, normaliser, source_config

SDM = SAMPLES / "smart-data-models"
FORMS = {
    "keyvalues": "sdm-keyvalues",
    "keyvalues-ld": "ngsi-ld",
    "normalized": "ngsi-v2-normalized",
    "normalized-ld": "ngsi-ld",
}
# What each type must give (value of the first reading, canonical unit).
EXPECTED = {
    "AirQualityObserved": {  # (the key-values sample has co2 where the others have no2)
        "nox": (139.0, "µg/m3"),
        "so2": (11.0, "µg/m3"),
        "co": (500.0, "mg/m3"),
        "air_temperature": (12.2, "°C"),
        "relative_humidity": (54.0, "%"),
        "wind_speed": (0.64, "m/s"),
    },
    "TrafficFlowObserved": {
        "traffic_intensity": (197.0, "count"),
        "traffic_occupancy": (0.76, "1"),
        "average_vehicle_speed": (52.6, "km/h"),
    },
    "WeatherObserved": {
        "air_temperature": (3.3, "°C"),
        "atmospheric_pressure": (938.9, "hPa"),
        "wind_speed": (2.0, "m/s"),
    },
    "OffStreetParking": {
        "parking_available_spots": (132.0, "count"),
        "parking_total_spots": (414.0, "count"),
        "parking_occupancy": (0.68, "1"),
    },
    "BikeHireDockingStation": {
        "bike_hire_available_bikes": (20.0, "count"),
        "bike_hire_free_slots": (10.0, "count"),
        "bike_hire_total_slots": (100.0, "count"),
    },
    "WaterConsumptionObserved": {
        "water_flow_max": (0.62, "m3/h"),  # 620 L/h (unitCode E32 or the model's default)
    },
    "ACMeasurement": {
        "active_power": (31.70027, "kW"),  # 31700.269531 W
        "apparent_power": (36.01909, "kVA"),
        "grid_frequency": (50.020672, "Hz"),
    },
    "ThreePhaseAcMeasurement": {
        "active_power": (31.70027, "kW"),
        "reactive_power": (-7.830332, "kvar"),
    },
}
REGISTERS = {  # cumulative: the first reading only sets the register (canonical unit)
    "ACMeasurement": ("active_energy_import", 150781.96448),
    "ThreePhaseAcMeasurement": ("active_energy_import", 150781.96448),
    "WaterConsumptionObserved": ("water_volume", None),  # 191051 L, or 191051 m3 unitless
}


def samples() -> list[Path]:
    return sorted(SDM.glob("*.json"))


def normalise_sample(path: Path):
    model, form = path.name.removesuffix(".json").split(".", 1)
    source = source_config("testville", FORMS[form])
    city = CityConfig("testville", "Testville", "Europe/Paris", (source,))
    run = Run(normaliser(city))
    parsed = parse_payload(path.read_bytes(), source)
    assert not parsed.rejected and len(parsed.entities) == 1
    raw = raw_record(
        parsed.entities[0], source, lineage_id="l", received_at_us=1_700_000_000_000_000
    )
    return model, run, run(from_raw(raw, "pseudo"))


def test_all_samples_are_there():
    assert len(samples()) == 32
    assert {p.name.split(".", 1)[0] for p in samples()} == set(EXPECTED)


@pytest.mark.parametrize("path", samples(), ids=lambda p: p.name)
def test_every_sample_maps(path: Path):
    model, run, observations = normalise_sample(path)
    found = {o["metric"]: (o["values"][0], o["unit"]) for o in observations}
    for metric, (value, unit) in EXPECTED[model].items():
        assert metric in found, (metric, sorted(found))
        assert found[metric][0] == pytest.approx(value), metric
        assert found[metric][1] == unit
    for o in observations:
        assert o["entity_type"] == model
        assert o["start"] > 0 and len(o["values"]) == 1
        for flags in o["quality"]:
            assert set(quality.names(flags)) <= {"time-from-reception"}
    if model in REGISTERS:
        metric, register = REGISTERS[model]
        state = run.state[f"testville|pseudo|{metric}"]
        if register is not None:
            assert state["reg"][1] == pytest.approx(register)


def test_observed_at_is_preferred_and_reception_time_is_the_last_resort():
    _, _, observations = normalise_sample(SDM / "ThreePhaseAcMeasurement.normalized-ld.json")
    power = next(o for o in observations if o["metric"] == "apparent_power")
    assert power["times"] == [1_548_367_200_173_000]  # 2019-01-24T22:00:00.173Z
    _, _, observations = normalise_sample(SDM / "WaterConsumptionObserved.keyvalues.json")
    assert all(o["times"] == [1_700_000_000_000_000] for o in observations)
    assert all(quality.names(o["quality"][0]) == ["time-from-reception"] for o in observations)


def test_bicycle_counters_are_a_metric_of_their_own():
    import json

    entity = json.loads((SDM / "TrafficFlowObserved.keyvalues.json").read_text())
    entity["vehicleType"] = "bicycle"
    source = source_config("testville", "sdm-keyvalues")
    city = CityConfig("testville", "Testville", "Europe/Paris", (source,))
    run = Run(normaliser(city))
    parsed = parse_payload(json.dumps(entity).encode(), source)
    raw = raw_record(parsed.entities[0], source, lineage_id="l", received_at_us=0)
    found = {o["metric"]: o for o in run(from_raw(raw))}
    assert "bicycle_count" in found and "traffic_intensity" not in found
    # the observation period (dateObservedFrom/To) is the interval of the count
    assert (found["bicycle_count"]["start"], found["bicycle_count"]["step_seconds"]) == (
        1_481_109_000_000_000,
        300,
    )


def test_registers_from_successive_entities_give_consumption():
    import json

    entity = json.loads((SDM / "ACMeasurement.normalized-ld.json").read_text())
    source = source_config("testville", "ngsi-ld")
    city = CityConfig("testville", "Testville", "Europe/Paris", (source,))
    run = Run(normaliser(city))
    outputs = []
    for k, (at, kwh) in enumerate(
        (("2020-02-24T22:00:00Z", 150781.964), ("2020-02-24T22:10:00Z", 150782.5))
    ):
        entity["totalActiveEnergyImport"] = {
            "type": "Property",
            "value": kwh,
            "unitCode": "KWH",
            "observedAt": at,
        }
        parsed = parse_payload(json.dumps(entity).encode(), source)
        raw = raw_record(parsed.entities[0], source, lineage_id=f"l{k}", received_at_us=0)
        outputs += run(from_raw(raw, "meter"))
    energy = [o for o in outputs if o["metric"] == "active_energy_import"]
    assert [(o["start"], o["step_seconds"], o["values"]) for o in energy] == [
        (1_582_581_600_000_000, 600, [0.536])
    ]
