"""City configuration: the shipped files load, and every mistake names file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.runtime.cities import (
    CityConfig,
    CsvOptions,
    load_cities,
    load_city,
    resolve_secret,
)
from services.runtime.errors import ConfigError
from testkit.city_files import VALID_SOURCE, city_yaml, write_city

CITIES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "cities"

# --- the shipped city files -------------------------------------------------------


def test_all_five_city_files_load() -> None:
    cities = load_cities(CITIES_DIR)
    assert set(cities) == {"paris", "lyon", "nice", "bordeaux", "angers"}
    for code, city in cities.items():
        assert isinstance(city, CityConfig)
        assert city.code == code
        assert city.timezone == "Europe/Paris"
        domains = {source.domain for source in city.sources}
        assert {"energy", "environment", "mobility"} <= domains, code
        for source in city.sources:
            assert source.city == code
            assert source.token.startswith(("env:", "file:/"))


def test_every_city_has_a_meter_source_in_linky_or_csv() -> None:
    for city in load_cities(CITIES_DIR).values():
        meters = [
            s for s in city.sources if s.domain == "energy" and s.format in ("linky-tic", "csv")
        ]
        assert meters, city.code


def test_paris_declares_its_open_data_exports() -> None:
    paris = load_city(CITIES_DIR / "paris.yaml")
    velo = paris.source("velo-compteurs")
    assert velo.format == "csv"
    assert velo.entity == "Identifiant du compteur"
    assert velo.csv == CsvOptions(separator=";", decimal=".", header=True, encoding="utf-8")
    assert velo.numeric == ("Comptage horaire",)
    assert paris.source("velib-disponibilite").json_records == "data.stations"
    assert paris.source("enedis-courbes-charge").csv.decimal == ","


def test_unknown_source_is_a_config_error_and_a_key_error() -> None:
    paris = load_city(CITIES_DIR / "paris.yaml")
    with pytest.raises(KeyError) as caught:
        paris.source("nope")
    assert isinstance(caught.value, ConfigError)
    assert "nope" in str(caught.value)
    assert "velo-compteurs" in str(caught.value)
    assert not str(caught.value).startswith("'")


# --- a minimal valid file -----------------------------------------------------------


def test_minimal_city_defaults(tmp_path: Path) -> None:
    city = load_city(write_city(tmp_path, city_yaml()))
    assert city.timezone == "Europe/Paris"
    source = city.source("compteurs")
    assert source.csv == CsvOptions(separator=";", decimal=",", header=True, encoding="utf-8")
    assert source.privacy is None


def test_later_stage_sections_are_kept_raw(tmp_path: Path) -> None:
    sources = VALID_SOURCE + (
        "    privacy: {drop: [Nom du compteur], anything: {goes: here}}\n"
        "    mapping: {metric: bike_count}\n"
        "    sharing: {open: true}\n"
    )
    source = load_city(write_city(tmp_path, city_yaml(sources))).source("compteurs")
    assert source.privacy == {"drop": ["Nom du compteur"], "anything": {"goes": "here"}}
    assert source.mapping == {"metric": "bike_count"}
    assert source.sharing == {"open": True}
    hash(source)  # frozen config stays hashable despite the raw dicts


def test_sdm_and_linky_entities_have_defaults(tmp_path: Path) -> None:
    sources = (
        "  - {id: air, format: ngsi-ld, dataset: aq, domain: environment, token: env:T}\n"
        "  - {id: tic, format: linky-tic, dataset: tic, domain: energy, token: 'file:/run/t'}\n"
    )
    city = load_city(write_city(tmp_path, city_yaml(sources)))
    assert city.source("air").entity == "id"
    assert city.source("tic").entity == "ADSC"


# --- every mistake names the file and the key ----------------------------------------

BAD_CITIES = [
    pytest.param(
        city_yaml(VALID_SOURCE.replace("format: csv", "format: xml")),
        "sources[0].format",
        "linky-tic",
        id="unknown-format",
    ),
    pytest.param(
        city_yaml(VALID_SOURCE.replace("domain: mobility", "domain: tourism")),
        "sources[0].domain",
        "parking",
        id="unknown-domain",
    ),
    pytest.param(
        city_yaml(VALID_SOURCE + VALID_SOURCE), "sources[1].id", "duplicate", id="duplicate-id"
    ),
    pytest.param(
        city_yaml(VALID_SOURCE.replace("    entity: Identifiant du compteur\n", "")),
        "sources[0].entity",
        "missing",
        id="missing-entity",
    ),
    pytest.param(
        city_yaml(VALID_SOURCE.replace("    dataset: comptage-velo\n", "")),
        "sources[0].dataset",
        "missing",
        id="missing-dataset",
    ),
    pytest.param(
        city_yaml(VALID_SOURCE.replace("header: true", 'header: "oui"')),
        "sources[0].csv.header",
        "true or false",
        id="header-wrong-type",
    ),
    pytest.param(
        city_yaml(VALID_SOURCE.replace("numeric: [Comptage horaire]", "numeric: Comptage horaire")),
        "sources[0].numeric",
        "list",
        id="numeric-not-a-list",
    ),
    pytest.param(
        city_yaml(header="code: testville\nname: Testville\ntimezone: Europe/Lutece\n"),
        "timezone",
        "IANA",
        id="bad-timezone",
    ),
    pytest.param(
        city_yaml(header="code: paris\nname: Paris\n"), "code", "testville.yaml", id="code-not-stem"
    ),
    pytest.param(
        city_yaml(VALID_SOURCE.replace("mobility\n", "mobility\n    colour: blue\n")),
        "sources[0].colour",
        "allowed keys",
        id="unknown-source-key",
    ),
    pytest.param(
        city_yaml(header="code: testville\nname: Testville\nregion: IDF\n"),
        "region",
        "allowed keys",
        id="unknown-city-key",
    ),
    pytest.param(
        city_yaml(VALID_SOURCE.replace("header: true", "header: false")),
        "sources[0].csv.columns",
        "header is false",
        id="headerless-without-columns",
    ),
    pytest.param(
        city_yaml(VALID_SOURCE.replace('separator: ";"', 'separator: ";;"')),
        "sources[0].csv.separator",
        "one character",
        id="bad-separator",
    ),
    pytest.param(
        city_yaml(VALID_SOURCE.replace("format: csv", "format: ngsi-ld")),
        "sources[0].entity",
        "'id'",
        id="ngsi-entity-not-id",
    ),
    pytest.param(
        city_yaml(
            VALID_SOURCE.replace("format: csv", "format: ngsi-ld").replace(
                "entity: Identifiant du compteur", "entity: id"
            )
        ),
        "sources[0].csv",
        "only csv",
        id="csv-options-on-ngsi",
    ),
    pytest.param(
        city_yaml(
            "  - {id: tic, format: linky-tic, dataset: t, domain: energy,"
            " entity: PRM, token: env:T}\n"
        ),
        "sources[0].entity",
        "ADSC",
        id="linky-entity-not-a-meter-label",
    ),
    pytest.param(city_yaml("  []\n"), "sources", "non-empty list", id="no-sources"),
    pytest.param("- just\n- a list\n", None, "mapping", id="not-a-mapping"),
    pytest.param(city_yaml("  - id: [unhashable\n"), None, "not valid YAML", id="bad-yaml"),
    pytest.param(
        "code: testville\ncode: testville\nname: T\nsources: []\n",
        None,
        "duplicate key",
        id="dup-yaml-key",
    ),
]


@pytest.mark.parametrize(("body", "key", "hint"), BAD_CITIES)
def test_config_errors_name_file_and_key(
    tmp_path: Path, body: str, key: str | None, hint: str
) -> None:
    path = write_city(tmp_path, body)
    with pytest.raises(ConfigError) as caught:
        load_city(path)
    error = caught.value
    assert error.source == str(path)
    assert error.key == key
    assert hint in str(error)
    assert str(path) in str(error)


@pytest.mark.parametrize(
    "token", ["s3cr3t-T0ken-value", "Bearer abc.def", "env:lower-case-dash", "file:relative"]
)
def test_literal_tokens_are_refused_without_echoing_them(tmp_path: Path, token: str) -> None:
    path = write_city(
        tmp_path, city_yaml(VALID_SOURCE.replace("env:CITEPLUS_TOKEN_TEST", f'"{token}"'))
    )
    with pytest.raises(ConfigError) as caught:
        load_city(path)
    assert caught.value.key == "sources[0].token"
    assert "env:VARIABLE or file:" in str(caught.value)
    assert token not in str(caught.value)


def test_empty_and_missing_directories_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no city file"):
        load_cities(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_cities(tmp_path / "absent")


def test_yml_files_are_not_silently_ignored(tmp_path: Path) -> None:
    write_city(tmp_path, city_yaml())
    (tmp_path / "other.yml").write_text(city_yaml(), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\.yaml"):
        load_cities(tmp_path)


def test_headerless_csv_options_need_columns() -> None:
    with pytest.raises(ValueError, match="columns"):
        CsvOptions(header=False)


def test_one_bad_file_fails_the_whole_directory(tmp_path: Path) -> None:
    write_city(tmp_path, city_yaml())
    bad = write_city(tmp_path, "code: other\nname: Other\nsources: []\n", stem="other")
    with pytest.raises(ConfigError) as caught:
        load_cities(tmp_path)
    assert caught.value.source == str(bad)


# --- secrets ---------------------------------------------------------------------------


def test_resolve_secret_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITEPLUS_TOKEN_TEST", "abc123")
    assert resolve_secret("env:CITEPLUS_TOKEN_TEST") == "abc123"
    secret = tmp_path / "token"
    secret.write_text("xyz789\n", encoding="utf-8")
    assert resolve_secret(f"file:{secret}") == "xyz789"


def test_resolve_secret_errors_are_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CITEPLUS_TOKEN_ABSENT", raising=False)
    with pytest.raises(ConfigError, match="CITEPLUS_TOKEN_ABSENT is not set"):
        resolve_secret("env:CITEPLUS_TOKEN_ABSENT")
    with pytest.raises(ConfigError, match="cannot read the credentials file"):
        resolve_secret(f"file:{tmp_path / 'absent'}")
    with pytest.raises(ConfigError, match="not a credentials reference") as caught:
        resolve_secret("hunter2")
    assert "hunter2" not in str(caught.value)
