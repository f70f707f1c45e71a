"""Positions of observations (services/normalise/positions.py): from the real Smart
Data Models samples' ``location`` (GeoJSON is [lon, lat]), from declared columns of
csv/json sources, dropped and counted when invalid, never for a personal source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.ingest.formats import parse_payload
from services.ingest.records import raw_record
from services.normalise.positions import OUT_OF_RANGE, UNREADABLE, read_text
from services.runtime.errors import ConfigError
from testkit.fixtures import SAMPLES
from testkit.normalise import city_file, from_raw, normaliser, record

SDM = SAMPLES / "smart-data-models"
RECEIVED = 1_700_000_000_000_000
T = ["2025-01-13T08:00:00+01:00", "2025-01-13T09:00:00+01:00"]


def _sdm_observations(tmp_path: Path, model: str, form: str, fmt: str, **privacy) -> list[dict]:
    data = (SDM / f"{model}.{form}.json").read_bytes()
    source = {"id": "s", "format": fmt, "domain": "environment", "entity": "id"}
    if privacy:
        source["privacy"] = {"version": "t", "fields": {"location": "measure"}, **privacy}
    city = city_file(tmp_path, "testville", [source])
    parsed = parse_payload(data, city.source("s"))
    assert not parsed.rejected and parsed.entities
    norm = normaliser(city)
    out = []
    for found in parsed.entities:
        raw = raw_record(found, city.source("s"), lineage_id="l", received_at_us=RECEIVED)
        out += norm.normalise(from_raw(raw), {}.get).observations
    return out


@pytest.mark.parametrize(
    ("form", "fmt"),
    [
        ("normalized-ld", "ngsi-ld"),
        ("normalized", "ngsi-v2-normalized"),
        ("keyvalues", "sdm-keyvalues"),
    ],
)
def test_a_smart_data_models_location_becomes_the_position_in_lat_lon_order(
    tmp_path: Path, form: str, fmt: str
) -> None:
    sample = json.loads((SDM / f"OffStreetParking.{form}.json").read_text())
    location = sample["location"]
    geometry = location.get("value", location)
    lon, lat = geometry["coordinates"][:2]  # GeoJSON order: longitude first
    observations = _sdm_observations(tmp_path, "OffStreetParking", form, fmt)
    assert observations
    for observation in observations:
        assert observation["position"] == {"lat": round(lat, 6), "lon": round(lon, 6)}
    assert 41 < lat < 42 and -9 < lon < -8  # the sample is a car park in Porto


def test_a_line_counts_as_the_mean_of_its_positions(tmp_path: Path) -> None:
    observations = _sdm_observations(
        tmp_path, "TrafficFlowObserved", "normalized", "ngsi-v2-normalized"
    )
    line = json.loads((SDM / "TrafficFlowObserved.normalized.json").read_text())["location"]
    points = line["value"]["coordinates"]
    lat = sum(p[1] for p in points) / len(points)
    assert observations and observations[0]["position"]["lat"] == pytest.approx(lat, abs=1e-6)


def test_a_personal_source_never_carries_a_position(tmp_path: Path) -> None:
    """The attacker's view: a household water meter's observations, published to the
    warehouse and the API, must not say where the household is, not even as the
    generalised cell the anonymiser leaves in its location."""
    observations = _sdm_observations(
        tmp_path,
        "WaterConsumptionObserved",
        "normalized-ld",
        "ngsi-ld",
        personal=True,
        consent=True,
    )
    assert observations
    assert all(o["position"] is None for o in observations)


def test_a_personal_source_may_not_declare_a_position(tmp_path: Path) -> None:
    source = {
        "id": "meters",
        "format": "csv",
        "domain": "energy",
        "entity": "prm",
        "privacy": {"version": "t", "personal": True, "fields": {"prm": "identifier"}},
        "mapping": {
            "time": {"field": "t", "format": "iso8601"},
            "measures": {"kwh": {"metric": "active_energy_import", "unit": "kWh"}},
            "position": {"lat": "lat", "lon": "lon"},
        },
    }
    city = city_file(tmp_path, "testville", [source])
    with pytest.raises(ConfigError, match="personal source never carries a position"):
        normaliser(city)


def _stations(tmp_path: Path, position: dict | str) -> object:
    source = {
        "id": "bikes",
        "format": "ndjson",
        "domain": "mobility",
        "entity": "number",
        "privacy": {"version": "t", "personal": False, "fields": {"number": "measure"}},
        "mapping": {
            "time": {"field": "t", "format": "iso8601"},
            "measures": {"bikes": {"metric": "bike_hire_available_bikes", "unit": "count"}},
            "position": position,
        },
    }
    return normaliser(city_file(tmp_path, "testville", [source]))


def test_declared_lat_lon_columns_give_the_latest_valid_position(tmp_path: Path) -> None:
    norm = _stations(tmp_path, {"lat": "lat", "lon": "lng"})
    rec = record(
        "testville",
        "bikes",
        {"t": T, "bikes": [3, 4], "lat": [45.76, 45.7601], "lng": [4.83, 4.8302]},
    )
    out = norm.normalise(rec, {}.get)
    assert [o["position"] for o in out.observations] == [{"lat": 45.7601, "lon": 4.8302}]
    assert not out.position_drops


def test_invalid_coordinates_publish_the_readings_without_a_position_and_count(
    tmp_path: Path,
) -> None:
    norm = _stations(tmp_path, {"lat": "lat", "lon": "lng"})
    rec = record(
        "testville", "bikes", {"t": T, "bikes": [3, 4], "lat": [145.0, 95.0], "lng": [4.8, 4.8]}
    )
    out = norm.normalise(rec, {}.get)
    assert out.readings == 2 and not out.letters
    assert all(o["position"] is None for o in out.observations)
    assert out.position_drops == {OUT_OF_RANGE: 2}

    words = record(
        "testville", "bikes", {"t": T, "bikes": [3, 4], "lat": ["north", "x"], "lng": ["a", "b"]}
    )
    out = norm.normalise(words, {}.get)
    assert out.readings == 2 and out.position_drops == {UNREADABLE: 2}


def test_a_lat_lon_text_column_and_a_bad_row_among_good_ones(tmp_path: Path) -> None:
    norm = _stations(tmp_path, {"field": "geo_point_2d"})
    rec = record(
        "testville",
        "bikes",
        {"t": T, "bikes": [3, 4], "geo_point_2d": ["48.8698, 2.3075", "not a place"]},
    )
    out = norm.normalise(rec, {}.get)
    assert [o["position"] for o in out.observations] == [{"lat": 48.8698, "lon": 2.3075}]
    assert out.position_drops == {UNREADABLE: 1}


def test_position_none_turns_the_default_off(tmp_path: Path) -> None:
    source = {"id": "s", "format": "ngsi-ld", "domain": "parking", "entity": "id"}
    source["mapping"] = {"position": "none"}
    city = city_file(tmp_path, "testville", [source])
    data = (SDM / "OffStreetParking.normalized-ld.json").read_bytes()
    found = parse_payload(data, city.source("s")).entities[0]
    raw = raw_record(found, city.source("s"), lineage_id="l", received_at_us=RECEIVED)
    out = normaliser(city).normalise(from_raw(raw), {}.get)
    assert out.observations and all(o["position"] is None for o in out.observations)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"type":"Point","coordinates":[4.85,45.75]}', (45.75, 4.85)),
        ('{"type":"Feature","geometry":{"type":"Point","coordinates":[7.26,43.7]}}', (43.7, 7.26)),
        ("45.75,4.85", (45.75, 4.85)),
        ('{"lon":-0.5746,"lat":44.8346}', (44.8346, -0.5746)),
        ('{"lon":null,"lat":44.8}', None),
        ('{"type":"Point","coordinates":[4.85,95]}', False),
        ('{"type":"Point","coordinates":"here"}', None),
        ("{not json", None),
        ("near the station", None),
    ],
)
def test_read_text(text: str, expected: object) -> None:
    assert read_text(text) == expected


def test_bad_position_mappings_say_what_to_write(tmp_path: Path) -> None:
    for bad in ({"lat": "y"}, {"field": ""}, ["lat", "lon"]):
        with pytest.raises(ConfigError, match="position"):
            _stations(tmp_path, bad)
