"""The vocabulary file and the mapping sections: validated at start, errors name the
file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.normalise import quality
from services.normalise.mapping import compile_city, parse_duration
from services.normalise.stage import compile_mappings
from services.normalise.vocabulary import VOCABULARY_FILE, load_vocabulary
from services.runtime.cities import load_cities
from services.runtime.errors import ConfigError
from services.runtime.paths import CITIES_DIR
from testkit.normalise import city_file

ENERGY = {
    "id": "courbes",
    "format": "csv",
    "domain": "energy",
    "entity": "prm",
    "mapping": {
        "time": {"field": "horodate", "format": "%Y-%m-%d %H:%M:%S"},
        "measures": {"kwh": {"metric": "active_energy_import", "unit": "kWh"}},
    },
}


def with_mapping(**changes):
    source = yaml.safe_load(yaml.safe_dump(ENERGY))
    source["mapping"].update(changes)
    return source


def test_the_vocabulary_loads_and_lists_the_quality_bits():
    vocabulary = load_vocabulary()
    assert vocabulary.metrics["active_energy_import"].unit.symbol == "kWh"
    assert vocabulary.metrics["no2"].unit.symbol == "µg/m3"
    assert "residential" in vocabulary.sectors
    document = yaml.safe_load(VOCABULARY_FILE.read_text(encoding="utf-8"))
    assert {f["name"]: f["bit"] for f in document["quality_flags"]} == quality.BITS
    for metric in vocabulary.metrics.values():
        assert metric.description and metric.domain


def test_every_city_file_of_the_repository_compiles():
    cities = load_cities(CITIES_DIR)
    mappings = compile_mappings(cities, load_vocabulary())
    for city, source in [
        ("paris", "enedis-courbes-charge"),
        ("bordeaux", "releves-compteurs"),
        ("lyon", "linky-habitat"),
        ("nice", "compteurs-communicants"),
        ("angers", "courbes-charge-compteurs"),
        ("paris", "comptages-routiers"),
    ]:
        assert (city, source) in mappings


def test_a_valid_mapping(tmp_path: Path):
    city = city_file(tmp_path, "testville", [ENERGY])
    mapping = compile_city(city, load_vocabulary())["courbes"]
    assert mapping.measures[0].metric.name == "active_energy_import"
    assert mapping.measures[0].kind == "interval"
    assert mapping.times[0].timezone == "Europe/Paris"


@pytest.mark.parametrize(
    ("mapping", "key", "words"),
    [
        (
            {"measures": {"kwh": {"metric": "energy", "unit": "kWh"}}},
            "measures.kwh.metric",
            "unknown metric",
        ),
        (
            {"measures": {"kwh": {"metric": "active_energy_import", "unit": "kWhh"}}},
            "measures.kwh.unit",
            "unknown unit",
        ),
        (
            {"measures": {"kwh": {"metric": "active_energy_import", "unit": "kW"}}},
            "measures.kwh.unit",
            "cannot",
        ),
        (
            {
                "measures": {
                    "kwh": {"metric": "active_energy_import", "unit": "kW", "kind": "instantaneous"}
                }
            },
            "measures.kwh.unit",
            "interval metric",
        ),
        ({"measures": {"kwh": {"metric": "no2", "unit": "ppb"}}}, "measures.kwh.unit", "cannot"),
        (
            {"measures": {"kwh": {"metric": "active_energy_import", "unit": "Wh", "kind": "sum"}}},
            "measures.kwh.kind",
            "not a kind",
        ),
        (
            {"measures": {"kwh": {"metric": "active_energy_import", "unit": "Wh", "rollover": 10}}},
            "measures.kwh.rollover",
            "cumulative",
        ),
        (
            {"measures": {"kwh": {"metric": "active_energy_import"}}},
            "measures.kwh.unit",
            "required",
        ),
        ({"time": {"field": "t", "format": "yyyy"}}, "time.format", "unknown time format"),
        ({"time": {"field": "t", "timezone": "Paris"}}, "time.timezone", "unknown time zone"),
        ({"step": {"field": "pas", "format": "fortnights"}}, "step.format", "expected one of"),
        ({"zone": {"column": "iris"}}, "zone.column", "unknown key"),
        (
            {"sector": {"field": "s", "values": {"res": "household"}}},
            "sector.values.res",
            "not a sector",
        ),
        ({"smart_data_models": True}, "smart_data_models", "only sdm"),
        ({"colour": "blue"}, "colour", "unknown key"),
    ],
)
def test_mapping_errors_name_file_and_key(tmp_path: Path, mapping, key, words):
    city = city_file(tmp_path, "testville", [with_mapping(**mapping)])
    with pytest.raises(ConfigError) as error:
        compile_city(city, load_vocabulary())
    assert error.value.source == str(tmp_path / "testville.yaml")
    assert error.value.key == f"sources[0].mapping.{key}"
    assert words in str(error.value)


def test_time_is_required_outside_smart_data_models(tmp_path: Path):
    source = with_mapping()
    del source["mapping"]["time"]
    city = city_file(tmp_path, "testville", [source])
    with pytest.raises(ConfigError, match="time"):
        compile_city(city, load_vocabulary())


def test_smart_data_models_sources_need_no_mapping(tmp_path: Path):
    city = city_file(
        tmp_path,
        "testville",
        [{"id": "air", "format": "ngsi-ld", "domain": "environment"}, {**ENERGY, "mapping": None}],
    )
    mappings = compile_city(city, load_vocabulary())
    assert mappings["air"].smart_data_models
    assert "courbes" not in mappings  # a CSV source without a mapping is not normalised


def test_vocabulary_errors(tmp_path: Path):
    document = yaml.safe_load(VOCABULARY_FILE.read_text(encoding="utf-8"))
    document["metrics"]["no2"]["unit"] = "µg/l"
    path = tmp_path / "vocabulary.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_vocabulary(path)
    assert error.value.key == "metrics.no2.unit"
    document["metrics"]["no2"]["unit"] = "µg/m3"
    document["metrics"]["no2"]["sdm"][0]["unit"] = "ppb"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_vocabulary(path)
    assert error.value.key == "metrics.no2.sdm[0]"


@pytest.mark.parametrize(
    ("text", "fmt", "seconds"),
    [
        ("PT10M", "iso8601", 600),
        ("PT1H", "iso8601", 3600),
        ("P1D", "iso8601", 86400),
        ("PT30S", "iso8601", 30),
        ("600", "seconds", 600),
        (600, "seconds", 600),
        ("10", "minutes", 600),
        ("PT", "iso8601", None),
        ("ten", "minutes", None),
        ("0", "seconds", None),
    ],
)
def test_step_durations(text, fmt, seconds):
    assert parse_duration(text, fmt) == seconds
