"""Privacy policies: validated at start, every error names the city file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.anonymise.policy import (
    MEASURE,
    Band,
    Bucket,
    Grid,
    Prefix,
    load_policies,
)
from services.runtime.cities import load_cities
from services.runtime.errors import ConfigError
from testkit.anonymise import city_file, policy_of

CITIES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "cities"
VALID = {"version": "1", "fields": {"meter": "identifier", "kwh": "measure"}}


def refused(tmp_path: Path, privacy, **kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        policy_of(tmp_path, privacy, **kwargs)
    error = caught.value
    assert error.source == str(tmp_path / "testville.yaml"), error
    return error


def test_every_shipped_source_has_a_valid_policy() -> None:
    cities = load_cities(CITIES_DIR)
    policies = load_policies(cities)
    assert len(policies) == sum(len(city.sources) for city in cities.values())
    for policy in policies:
        assert policy.version
        assert policy.fields


def test_shipped_policies_pseudonymise_meters_and_drop_photos() -> None:
    policies = load_policies(load_cities(CITIES_DIR))
    assert policies.get("paris", "enedis-courbes-charge").fields["prm"].cls == "identifier"
    linky = policies.get("lyon", "linky-habitat")
    assert linky.fields["ADSC"].cls == linky.fields["PRM"].cls == "identifier"
    assert linky.fields["MSG1"].cls == "free-text"
    assert linky.attributes["zone"].cls == MEASURE
    velo = policies.get("paris", "velo-compteurs")
    assert velo.fields["Lien vers photo du site de comptage"].cls == "drop"
    assert isinstance(velo.fields["Coordonnées géographiques"].generalisation, Grid)
    assert policies.get("bordeaux", "releves-compteurs").coarsening.step == "P1D"


def test_a_source_without_policy_is_refused(tmp_path: Path) -> None:
    error = refused(tmp_path, None)
    assert error.key == "sources[0].privacy"
    assert "no privacy policy" in str(error)


@pytest.mark.parametrize(
    ("privacy", "key", "words"),
    [
        ({"fields": {"a": "measure"}}, "sources[0].privacy.version", "version"),
        ({"version": "1"}, "sources[0].privacy.fields", "required"),
        (
            {"version": "1", "fields": {"a": "secret"}},
            "sources[0].privacy.fields.a",
            "unknown class",
        ),
        (
            {"version": "1", "fields": {"a": {"class": "pseudonym"}}},
            "sources[0].privacy.fields.a.class",
            "unknown class",
        ),
        (
            {"version": "1", "fields": {"a": "quasi-identifier"}},
            "sources[0].privacy.fields.a",
            "needs a generalisation",
        ),
        (
            {"version": "1", "fields": {"a": {"class": "quasi-identifier", "blur": 3}}},
            "sources[0].privacy.fields.a",
            "exactly one generalisation",
        ),
        (
            {"version": "1", "fields": {"a": {"class": "quasi-identifier", "grid": 1, "band": 2}}},
            "sources[0].privacy.fields.a",
            "exactly one generalisation",
        ),
        (
            {"version": "1", "fields": {"a": {"class": "quasi-identifier", "grid": -5}}},
            "sources[0].privacy.fields.a.grid",
            "metres",
        ),
        (
            {
                "version": "1",
                "fields": {"a": {"class": "quasi-identifier", "grid": 500, "output": "blob"}},
            },
            "sources[0].privacy.fields.a.output",
            "centre",
        ),
        (
            {"version": "1", "fields": {"a": {"class": "quasi-identifier", "bucket": "PT7M"}}},
            "sources[0].privacy.fields.a.bucket",
            "PT1H",
        ),
        (
            {
                "version": "1",
                "fields": {"a": {"class": "quasi-identifier", "bucket": "PT1H", "format": "x"}},
            },
            "sources[0].privacy.fields.a.format",
            "unknown time format",
        ),
        (
            {"version": "1", "fields": {"a": {"class": "quasi-identifier", "prefix": 0}}},
            "sources[0].privacy.fields.a.prefix",
            "characters",
        ),
        (
            {"version": "1", "fields": {"a": {"class": "measure", "grid": 5}}},
            "sources[0].privacy.fields.a.grid",
            "unknown key",
        ),
        (
            {"version": "1", "fields": {"a": "measure"}, "attributes": {"zone": "public"}},
            "sources[0].privacy.attributes.zone",
            "unknown class",
        ),
        (
            {"version": "1", "fields": {"a": "measure"}, "consent": "yes"},
            "sources[0].privacy.consent",
            "true or false",
        ),
        (
            {"version": "1", "fields": {"a": "measure"}, "retention": 3},
            "sources[0].privacy.retention",
            "unknown key",
        ),
        (
            {"version": "1", "fields": {"a": "identifier"}, "coarsen": {"to": "P1D", "sum": ["a"]}},
            "sources[0].privacy.coarsen.sum[0]",
            "measure",
        ),
        (
            {"version": "1", "fields": {"a": "measure"}, "coarsen": {"to": "P1W", "sum": ["a"]}},
            "sources[0].privacy.coarsen.to",
            "P1D",
        ),
        (
            {
                "version": "1",
                "fields": {"a": "measure"},
                "coarsen": {"to": "P1D", "sum": ["a"], "time": {"field": "t"}},
            },
            "sources[0].privacy.coarsen.time.field",
            "declared",
        ),
        (
            {
                "version": "1",
                "fields": {"a": "measure", "t": "measure"},
                "coarsen": {"to": "P1D", "time": {"field": "t", "zone": "UTC"}},
            },
            "sources[0].privacy.coarsen.time.zone",
            "unknown key",
        ),
        (
            {
                "version": "1",
                "fields": {
                    "lat": {"class": "quasi-identifier", "grid": 100, "lon": "lon"},
                    "lon": "measure",
                },
            },
            "sources[0].privacy.fields.lon",
            "longitude",
        ),
    ],
)
def test_invalid_policies_name_file_and_key(tmp_path: Path, privacy, key: str, words: str) -> None:
    error = refused(tmp_path, privacy)
    assert error.key == key, error
    assert words in str(error), error
    assert str(tmp_path / "testville.yaml") in str(error)


def test_generalisations_are_parsed(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path,
        {
            "version": 3,
            "fields": {
                "meter": "identifier",
                "pos": {"class": "quasi-identifier", "grid": 250, "output": "both"},
                "lat": {"class": "quasi-identifier", "grid": 500, "lon": "lng"},
                "t": {"class": "quasi-identifier", "bucket": "PT1H", "format": "epoch_s"},
                "age": {"class": "quasi-identifier", "band": 10},
                "iris": {"class": "quasi-identifier", "prefix": 5},
                "note": "free-text",
                "photo": "drop",
            },
        },
    )
    assert policy.version == "3"
    assert policy.fields["pos"].generalisation == Grid(250.0, "both", None)
    assert policy.fields["lat"].generalisation == Grid(500.0, "centre", "lng")
    assert policy.partners == {"lng": "lat"}
    bucket = policy.fields["t"].generalisation
    assert isinstance(bucket, Bucket) and bucket.seconds == 3600
    assert bucket.time.format == "epoch_s" and bucket.time.timezone == "Europe/Paris"
    assert policy.fields["age"].generalisation == Band(10.0)
    assert policy.fields["iris"].generalisation == Prefix(5)
    assert policy.output_names() == {"meter", "pos", "pos@cell", "lat", "lng", "t", "age", "iris"}


def test_qualifiers_follow_kept_fields_only(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path,
        {"version": "1", "fields": {"no2": "measure", "name": "drop", "no2.method": "measure"}},
    )
    assert policy.rule("no2@unitCode").cls == MEASURE
    assert policy.rule("no2@observedAt").cls == MEASURE
    assert policy.rule("no2@somethingElse") is None
    assert policy.rule("name@observedAt") is None  # a dropped field's qualifiers go too
    assert policy.rule("no2.method").cls == MEASURE
    assert policy.rule("no2.other") is None


def test_consent_turns_coarsening_off(tmp_path: Path) -> None:
    privacy = {
        "version": "1",
        "fields": {"kwh": "measure"},
        "coarsen": {"to": "PT1H", "sum": ["kwh"]},
    }
    assert policy_of(tmp_path, privacy).coarsening.step == "PT1H"
    assert policy_of(tmp_path, {**privacy, "consent": True}).coarsening is None


def test_load_policies_refuses_the_first_bad_source(tmp_path: Path) -> None:
    city_file(tmp_path, {"version": "1", "fields": {"kwh": "measure"}})
    city_file(tmp_path, None, code="otherville")
    with pytest.raises(ConfigError) as caught:
        load_policies(load_cities(tmp_path))
    assert caught.value.source == str(tmp_path / "otherville.yaml")
    assert caught.value.key == "sources[0].privacy"


def test_privacy_check_lists_every_shipped_policy(capsys) -> None:
    from services.cli import main

    assert main(["privacy", "check", "--cities", str(CITIES_DIR)]) == 0
    out = capsys.readouterr().out
    assert "38 privacy policies valid." in out  # 33 + a charging-point source per city
    assert "bordeaux/releves-compteurs: version 2025-01" in out and "coarsened to P1D" in out


def test_yaml_booleans_as_field_names_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "testville.yaml"
    path.write_text(
        "code: testville\nname: T\nsources:\n  - id: air\n    format: ndjson\n"
        "    dataset: air\n    domain: environment\n    entity: station\n"
        "    token: env:X\n    privacy:\n      version: '1'\n      fields:\n        no: measure\n"
    )
    from services.anonymise.policy import parse_policy
    from services.runtime.cities import load_city

    city = load_city(path)
    with pytest.raises(ConfigError) as caught:
        parse_policy(city.sources[0], city, 0)
    assert caught.value.key == "sources[0].privacy.fields.False" and "quote it" in str(caught.value)
