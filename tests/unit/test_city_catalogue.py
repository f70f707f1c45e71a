"""What a city file says for catalogues (contact, insee, siren, a source's frequency):
checked at start, each mistake named with its file, key and the fix; and the
frequency a source gets when its file declares none."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.federation.catalog import derived_frequency
from services.runtime.cities import load_city
from services.runtime.errors import ConfigError
from testkit.city_files import VALID_SOURCE, city_yaml, write_city

HEADER = "code: testville\nname: Testville\n"


def test_declared_facts_are_read(tmp_path: Path) -> None:
    header = HEADER + 'contact: opendata@testville.example\ninsee: "2A004"\nsiren: "217500016"\n'
    source = VALID_SOURCE + "    frequency: HOURLY\n"
    city = load_city(write_city(tmp_path, city_yaml(source, header)))
    assert city.metadata.contact == "opendata@testville.example"
    assert city.metadata.insee == "2A004" and city.metadata.siren == "217500016"
    assert city.sources[0].frequency == "HOURLY"


def test_every_deployed_city_declares_its_contact_and_territory() -> None:
    root = Path(__file__).resolve().parents[2] / "deploy" / "cities"
    for path in sorted(root.glob("*.yaml")):
        city = load_city(path)
        assert city.metadata.contact and city.metadata.insee, path


@pytest.mark.parametrize(
    ("extra", "key", "hint"),
    [
        ("contact: not-an-address\n", "contact", "e-mail address"),
        ("insee: 6088\n", "insee", "quoted string"),  # YAML ate the leading zero
        ('insee: "690"\n', "insee", "commune's INSEE code"),
        ('insee: "200046978"\n', "insee", "not a valid SIREN"),
        ('siren: "217500017"\n', "siren", "valid key"),
        ("siren: 217500016\n", "siren", "quoted string"),
    ],
)
def test_a_wrong_fact_stops_the_start_naming_key_and_fix(
    tmp_path: Path, extra: str, key: str, hint: str
) -> None:
    path = write_city(tmp_path, city_yaml(header=HEADER + extra))
    with pytest.raises(ConfigError) as caught:
        load_city(path)
    assert caught.value.key == key and caught.value.source == str(path)
    assert hint in str(caught.value)


def test_an_unknown_frequency_names_the_codes_to_use(tmp_path: Path) -> None:
    path = write_city(tmp_path, city_yaml(VALID_SOURCE + "    frequency: hourly\n"))
    with pytest.raises(ConfigError) as caught:
        load_city(path)
    assert caught.value.key == "sources[0].frequency"
    assert "HOURLY" in str(caught.value) and "CONT" in str(caught.value)


def test_frequency_derived_from_privacy_when_not_declared(tmp_path: Path) -> None:
    daily = VALID_SOURCE + "    privacy: {coarsen: {to: P1D}}\n"
    city = load_city(write_city(tmp_path, city_yaml(daily)))
    assert derived_frequency(city.sources[0]) == "DAILY"
    city = load_city(write_city(tmp_path, city_yaml()))
    assert derived_frequency(city.sources[0]) == "CONT"
