"""The official examples of 14 Smart Data Models types, in their four forms, give
the right metrics in the right units with nothing but the built-in mapping
(ingest's parser for the form, then normalise; no broker). Values were read by
hand from each example (tests/fixtures/sdm/PROVENANCE.md)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from services.ingest.formats import parse_payload
from services.ingest.records import raw_record
from services.normalise import quality
from services.normalise.mapping import compile_city
from services.normalise.sdm_models import SDM_DIR as VOCABULARY_SDM
from services.normalise.transform import Normaliser, Outcome
from services.runtime.cities import CityConfig
from testkit.normalise import Run, from_raw, normaliser, source_config

SDM = Path(__file__).resolve().parents[1] / "fixtures" / "sdm"
RECEIVED = 1_700_000_000_000_000
FORMS = {
    "example.json": "sdm-keyvalues",
    "example-normalized.json": "ngsi-v2-normalized",
    "example.jsonld": "ngsi-ld",
    "example-normalized.jsonld": "ngsi-ld",
}
TYPES = (
    "AirQualityObserved",
    "WeatherObserved",
    "NoiseLevelObserved",
    "TrafficFlowObserved",
    "WasteContainer",
    "EVChargingStation",
    "ParkingSpot",
    "OnStreetParking",
    "Streetlight",
    "WaterObserved",
    "IndoorEnvironmentObserved",
    "EnvironmentObserved",
    "WeatherForecast",
    "SolarEnergy",
)
# metric -> (first value, canonical unit), in every form of the type's examples
EXPECTED: dict[str, dict[str, tuple[float, str]]] = {
    "AirQualityObserved": {
        "no": (45.0, "µg/m3"),
        "so2": (11.0, "µg/m3"),
        "co": (500.0, "mg/m3"),
        "air_temperature": (12.2, "°C"),
        "relative_humidity": (54.0, "%"),  # 0.54
    },
    "WeatherObserved": {
        "air_temperature": (3.3, "°C"),
        "atmospheric_pressure": (938.9, "hPa"),
        "snow_height": (20.0, "cm"),
        "uv_index": (1.0, "index"),
    },
    "NoiseLevelObserved": {
        "noise_level": (67.8, "dB"),  # LAeq
        "noise_level_max": (94.5, "dB"),  # LAmax
        "noise_level_slow": (91.6, "dB"),  # LAS
        "noise_level_day": (65.4, "dB"),  # LAeq_d
    },
    "TrafficFlowObserved": {
        "traffic_intensity": (197.0, "count"),
        "traffic_occupancy": (0.76, "1"),
        "average_vehicle_speed": (52.6, "km/h"),
        "average_vehicle_length": (9.87, "m"),
    },
    "WasteContainer": {},  # today's examples describe a bin: no reading (see 2020 below)
    "EVChargingStation": {
        "ev_charging_capacity": (2.0, "count"),
        "ev_charging_power": (10.0, "kW"),
    },
    "ParkingSpot": {"parking_spot_occupied": (0.0, "1")},  # status "free"
    "OnStreetParking": {
        "parking_available_spots": (3.0, "count"),
        "parking_occupied_spots": (3.0, "count"),
        "parking_total_spots": (6.0, "count"),
        "parking_extra_spots": (2.0, "count"),
    },
    "Streetlight": {
        "streetlight_on": (0.0, "1"),  # powerState "off"
        "streetlight_power": (0.01, "kW"),  # 10 W
        "streetlight_voltage": (50.0, "V"),
        "streetlight_power_factor": (0.7, "1"),
    },
    "WaterObserved": {
        "water_flow": (12.0, "m3/s"),
        "water_height": (3.52, "m"),
        "floating_objects_area_share": (35.0, "%"),
        "floating_objects_volume": (17.5, "m3"),
    },
    "IndoorEnvironmentObserved": {
        "indoor_temperature": (12.2, "°C"),
        "indoor_relative_humidity": (54.0, "%"),
        "indoor_illuminance": (1000.0, "lx"),  # unitCode "LX" in the v2 normalized form
        "people_count": (10.0, "count"),
    },
    "EnvironmentObserved": {},  # links other observations, measures nothing
    "WeatherForecast": {
        "forecast_air_temperature": (12.0, "°C"),
        "forecast_air_temperature_max": (15.0, "°C"),  # dayMaximum.temperature
        "forecast_air_temperature_min": (11.0, "°C"),
        "forecast_relative_humidity": (85.0, "%"),
        "forecast_precipitation_probability": (15.0, "%"),
        "forecast_uv_index": (1.0, "index"),
    },
    "SolarEnergy": {
        "solar_active_power": (0.8739, "kW"),  # 873.9 W
        "solar_energy_generated": (766.1, "kWh"),
        "solar_voltage": (122.0, "V"),
        "grid_frequency": (50.0, "Hz"),
    },
}
# (type, file) -> what the form holds beyond EXPECTED
EXTRA = {
    ("WaterObserved", "example.json"): {"water_level": (2.4, "m"), "water_discharge": (3.0, "m3")},
    ("OnStreetParking", "example.json"): {"parking_out_of_service_spots": (0.0, "count")},
    ("IndoorEnvironmentObserved", "example.json"): {"atmospheric_pressure": (1013.52, "hPa")},
    # 0.54 sent with unitCode P1 (percent): the unit the source declares is what counts
    ("IndoorEnvironmentObserved", "example-normalized.json"): {
        "indoor_relative_humidity": (0.54, "%")
    },
    ("AirQualityObserved", "example.json"): {"co2": (69.0, "ppm")},  # no2 in the others
    ("AirQualityObserved", "example.jsonld"): {"no2": (69.0, "µg/m3")},
}
# (type, file) -> attributes the vocabulary does not carry (counted, not silent)
DROPPED = {
    ("AirQualityObserved", "example.json"): ["pm4", "tpc", "tsp"],
    ("AirQualityObserved", "example-normalized.json"): ["pm4", "tpc", "tsp"],
    ("AirQualityObserved", "example-normalized.jsonld"): ["pm4", "tpc", "tsp"],
}
# (type, file) -> the time of the readings (UTC µs), where the example gives one
TIMES = {
    ("NoiseLevelObserved", "example.json"): 1_482_922_800_000_000,  # dateObservedFrom
    ("EVChargingStation", "example.json"): 1_656_428_249_000_000,  # 20:27:29+05:30
    ("ParkingSpot", "example-normalized.jsonld"): 1_537_531_200_000_000,  # status observedAt
    ("ParkingSpot", "example.json"): RECEIVED,  # none: the reception time, flagged
    ("WaterObserved", "example.json"): 1_584_434_700_209_000,
    ("WeatherForecast", "example.json"): 1_480_611_600_000_000,  # validFrom
    ("SolarEnergy", "example.json"): 1_642_708_972_000_000,  # observationDateTime
}


@functools.cache
def _normaliser(fmt: str) -> Normaliser:
    """One per form (loading the vocabulary is the slow part); state stays per test."""
    source = source_config("testville", fmt)
    return normaliser(CityConfig("testville", "Testville", "Europe/Paris", (source,)))


def normalise_file(path: Path, fmt: str | None = None) -> tuple[Run, Outcome]:
    """One example through the parser of its form and normalise's built-in mapping."""
    fmt = fmt or FORMS[path.name.replace("-2020", "").replace("-2019", "")]
    source = source_config("testville", fmt)
    run = Run(_normaliser(fmt))
    parsed = parse_payload(path.read_bytes(), source)
    assert not parsed.rejected and len(parsed.entities) == 1, parsed.rejected
    raw = raw_record(parsed.entities[0], source, lineage_id="l", received_at_us=RECEIVED)
    outcome = run.norm.normalise(from_raw(raw, "pseudo"), run.state.get)
    run.state.update(outcome.states)
    return run, outcome


def first_values(outcome: Outcome) -> dict[str, tuple[float, str]]:
    return {o["metric"]: (o["values"][0], o["unit"]) for o in outcome.observations}


def first_time(observation: dict) -> int:
    return observation["times"][0] if observation["times"] else observation["start"]


CASES = [(t, f) for t in TYPES for f in FORMS if (SDM / t / f).exists()]


def test_every_type_has_its_four_forms():
    assert sorted({t for t, _ in CASES}) == sorted(TYPES)
    assert len(CASES) == 4 * len(TYPES)


@pytest.mark.parametrize(("model", "name"), CASES, ids=[f"{t}/{f}" for t, f in CASES])
def test_official_example_gives_its_metrics(model: str, name: str):
    _, outcome = normalise_file(SDM / model / name)
    found = first_values(outcome)
    expected = {**EXPECTED[model], **EXTRA.get((model, name), {})}
    for metric, (value, unit) in expected.items():
        assert metric in found, (metric, sorted(found))
        assert found[metric][0] == pytest.approx(value), metric
        assert found[metric][1] == unit, metric
    assert sorted(outcome.dropped_attributes) == DROPPED.get((model, name), [])
    if not expected:  # a bin's description, links to other observations: no reading
        assert outcome.observations == []
    for observation in outcome.observations:
        assert observation["entity_type"] == model
        assert len(observation["values"]) == 1
        for flags in observation["quality"]:
            assert set(quality.names(flags)) <= {"time-from-reception"}
        if (model, name) in TIMES:
            assert first_time(observation) == TIMES[(model, name)], observation["metric"]


def test_legacy_upper_case_air_quality_names_are_mapped():
    """The 2019 AirQualityObserved example (CO, NO, NO2, NOx, SO2, CO_Level)."""
    _, outcome = normalise_file(SDM / "AirQualityObserved" / "example-2019.json")
    found = first_values(outcome)
    assert found["no2"] == (69.0, "µg/m3")
    assert found["co"] == (500.0, "mg/m3")
    assert found["so2"] == (11.0, "µg/m3")
    assert found["no"] == (45.0, "µg/m3")
    assert found["nox"] == (139.0, "µg/m3")
    assert outcome.dropped_attributes == []  # CO_Level: the old name of coLevel (describes)


@pytest.mark.parametrize(
    "name", ["example-2020.json", "example-normalized-2020.json", "example-normalized-2020.jsonld"]
)
def test_waste_container_reading_of_the_2020_examples(name: str):
    _, outcome = normalise_file(SDM / "WasteContainer" / name)
    found = first_values(outcome)
    assert found["fill_level"] == (40.0, "%")  # fillingLevel 0.4
    assert found["waste_container_temperature"] == (23.0, "°C")
    assert outcome.dropped_attributes == []


def test_streetlight_lifetime_consumption_is_a_register():
    run, outcome = normalise_file(SDM / "Streetlight" / "example.json")
    assert "streetlight_energy" not in first_values(outcome)  # one reading: no interval yet
    assert run.state["testville|pseudo|streetlight_energy"]["reg"][1] == pytest.approx(93.4)


def entity(model: str, name: str = "example.json") -> dict:
    return json.loads((SDM / model / name).read_text(encoding="utf-8"))


def normalise_entity(item: dict, fmt: str = "sdm-keyvalues") -> Outcome:
    source = source_config("testville", fmt)
    run = Run(_normaliser(fmt))
    parsed = parse_payload(json.dumps(item).encode(), source)
    raw = raw_record(parsed.entities[0], source, lineage_id="l", received_at_us=RECEIVED)
    return run.norm.normalise(from_raw(raw, "pseudo"), run.state.get)


def test_names_match_case_insensitively_and_the_model_spelling_wins():
    item = entity("AirQualityObserved", "example-2019.json")
    item["no2"] = 70  # both spellings in one entity: one no2, the model's
    outcome = normalise_entity(item)
    no2 = [o for o in outcome.observations if o["metric"] == "no2"]
    assert [o["values"] for o in no2] == [[70.0]]
    assert outcome.dropped_attributes == ["NO2"]  # counted, never published twice


def test_uv_index_max_spelled_as_real_sources_do():
    item = entity("WeatherObserved")
    item["uvIndexMax"] = item.pop("uVIndexMax")
    assert first_values(normalise_entity(item))["uv_index"] == (1.0, "index")


def test_an_attribute_the_vocabulary_does_not_know_is_counted_not_silent():
    item = entity("NoiseLevelObserved")
    item["LAeq_night"] = 55.0
    item["vendorBatteryLevel"] = 0.8
    outcome = normalise_entity(item)
    assert sorted(outcome.dropped_attributes) == ["LAeq_night", "vendorBatteryLevel"]
    assert first_values(outcome)["noise_level"] == (67.8, "dB")  # the rest still published


def test_a_state_outside_the_values_table_is_counted():
    item = entity("ParkingSpot")
    item["status"] = "closed"
    outcome = normalise_entity(item)
    assert outcome.observations == [] and outcome.dropped["unmapped-state"] == 1


def test_an_entity_with_only_unknown_attributes_is_a_dead_letter_naming_them():
    from services.runtime.errors import RejectedInput

    item = {"id": "x", "type": "AirQualityObserved", "dateObserved": "2024-01-01T00:00:00Z"}
    item["PM2_5"] = 12
    with pytest.raises(RejectedInput) as error:
        normalise_entity(item)
    assert error.value.reason == "no-measure" and "PM2_5" in str(error.value)


# -- the mapping files themselves ------------------------------------------------------
def load_with(tmp_path: Path, name: str, text: str):
    """The repository's vocabulary with deploy/sdm/ plus one file written by the test."""
    import shutil

    from services.normalise.vocabulary import VOCABULARY_FILE, load_vocabulary

    shutil.copy(VOCABULARY_FILE, tmp_path / "vocabulary.yaml")
    shutil.copytree(VOCABULARY_FILE.parent / "sdm", tmp_path / "sdm")
    (tmp_path / "sdm" / name).write_text(text, encoding="utf-8")
    return load_vocabulary(tmp_path / "vocabulary.yaml")


SCHEMA = "schema: {repository: r, path: p, commit: c}\n"


@pytest.mark.parametrize(
    ("name", "text", "key"),
    [
        (
            "NoiseLevelObserved.yaml",
            "type: NoiseLevelObserved\n" + SCHEMA + "attributes: {LAeq: {metric: pm10, unit: GQ}}",
            "attributes.LAeq",  # already noise_level in deploy/vocabulary.yaml
        ),
        (
            "Hive.yaml",
            "type: Hive\n" + SCHEMA + "time: [t]\nattributes: {x: {metric: honey}}",
            "attributes.x.metric",
        ),
        (
            "Hive.yaml",
            "type: Hive\n" + SCHEMA + "time: [t]\nattributes: {x: {metric: pm10, unit: °C}}",
            "attributes.x.unit",
        ),
        ("Hive.yaml", "type: BeeHive\n" + SCHEMA + "time: [t]", "type"),
        ("Hive.yaml", "type: Hive\n" + SCHEMA, "time"),
        ("Hive.yaml", "type: Hive\ntime: [t]\n", "schema"),
    ],
)
def test_a_wrong_mapping_file_is_refused_naming_file_and_key(tmp_path, name, text, key):
    from services.runtime.errors import ConfigError

    with pytest.raises(ConfigError) as error:
        load_with(tmp_path, name, text)
    assert error.value.key == key
    assert name in str(error.value.source)


def test_every_mapping_file_names_the_schema_it_was_read_from():
    import re

    from services.normalise.sdm_models import SDM_DIR
    from services.runtime.yaml_config import parse_strict

    files = sorted(SDM_DIR.glob("*.yaml"))
    assert {f.stem for f in files} >= set(TYPES)
    for path in files:
        schema = parse_strict(path.read_text(encoding="utf-8"), str(path))["schema"]
        assert schema["repository"].startswith("smart-data-models/dataModel.")
        assert schema["path"] == f"{path.stem}/schema.json"
        assert re.fullmatch(r"[0-9a-f]{40}", schema["commit"])


SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "samples" / "smart-data-models"
SAMPLE_FORMS = {
    "keyvalues": "sdm-keyvalues",
    "keyvalues-ld": "ngsi-ld",
    "normalized": "ngsi-v2-normalized",
    "normalized-ld": "ngsi-ld",
}
SAMPLE_DROPPED = {  # measures the vocabulary does not carry; everything else is known
    "AirQualityObserved": ["pm4", "tpc", "tsp"],
    "OffStreetParking": ["vehicleEntranceCount", "vehicleExitCount"],
}


@pytest.mark.parametrize("path", sorted(SAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_the_other_types_samples_drop_only_measures_the_vocabulary_lacks(path: Path):
    model, form = path.name.removesuffix(".json").split(".", 1)
    _, outcome = normalise_file(path, SAMPLE_FORMS[form])
    expected = SAMPLE_DROPPED.get(model, [])
    if (model, form) == ("AirQualityObserved", "keyvalues-ld"):
        expected = []  # this form has no pm4, tpc, tsp
    assert sorted(outcome.dropped_attributes) == expected
    assert outcome.observations


def test_a_dotted_attribute_name_is_an_attribute_not_a_sub_property():
    item = entity("AirQualityObserved", "example-2019.json")
    item["PM2.5"] = 12  # a spelling seen in exports: not the sub-property of a column
    outcome = normalise_entity(item)
    assert outcome.dropped_attributes == ["PM2.5"]


def test_aliases_of_a_mapping_file_map_old_names(tmp_path):
    text = (VOCABULARY_SDM / "NoiseLevelObserved.yaml").read_text(encoding="utf-8")
    mapped = "LAmax: {metric: noise_level_max, unit: dB"
    text = text.replace(mapped + "}", mapped + ", aliases: [LAFmax]}")
    vocabulary = load_with(tmp_path, "NoiseLevelObserved.yaml", text)
    item = entity("NoiseLevelObserved")
    item["LAFmax"] = item.pop("LAmax")
    source = source_config("testville", "sdm-keyvalues")
    city = CityConfig("testville", "Testville", "Europe/Paris", (source,))
    norm = Normaliser(vocabulary, {("testville", "s"): compile_city(city, vocabulary)["s"]})
    parsed = parse_payload(json.dumps(item).encode(), source)
    raw = raw_record(parsed.entities[0], source, lineage_id="l", received_at_us=RECEIVED)
    outcome = norm.normalise(from_raw(raw, "pseudo"), lambda _: None)
    assert first_values(outcome)["noise_level_max"] == (94.5, "dB")
    assert outcome.dropped_attributes == []
