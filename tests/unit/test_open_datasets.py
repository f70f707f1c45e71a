"""What the sample city files open (deploy/cities): real open datasets with their
real licences, never a personal source, each with a licence of the allowed list."""

from __future__ import annotations

import pytest

from services.normalise.mapping import compile_city
from services.normalise.vocabulary import load_vocabulary
from services.policy.sharing import LICENCES, parse_sharing, sharing_policies
from services.runtime.cities import load_cities
from services.runtime.errors import ConfigError
from services.runtime.paths import CITIES_DIR

CITIES = load_cities(CITIES_DIR)


def _open() -> list[tuple[str, str, str, str]]:
    policies = sharing_policies(CITIES)
    return [
        (city.code, source.id, source.domain, policies[(city.code, source.id)].licence or "")
        for city in CITIES.values()
        for source in city.sources
        if policies[(city.code, source.id)].level == "open"
    ]


def test_every_open_source_names_an_allowed_licence() -> None:
    found = _open()
    assert found
    for city, source, _, licence in found:
        assert licence in LICENCES, (city, source, licence)


def test_no_personal_source_is_open_or_shared() -> None:
    """A household's meter (energy, water) never leaves as open or shared data."""
    policies = sharing_policies(CITIES)
    for city in CITIES.values():
        for source in city.sources:
            personal = bool((source.privacy or {}).get("personal"))
            if personal:
                assert policies[(city.code, source.id)].level == "internal", source.id
            if policies[(city.code, source.id)].level != "internal":
                fields = (source.privacy or {}).get("fields", {})
                assert "identifier" not in fields.values(), (city.code, source.id)


def test_every_city_opens_air_quality_and_traffic_with_a_position() -> None:
    """What the common API's demo serves: air and traffic in every city, positions
    from each source's location (a Smart Data Models `location` or a declared one)."""
    vocabulary = load_vocabulary()
    domains: dict[str, set[str]] = {}
    for city, source, domain, _ in _open():
        domains.setdefault(city, set()).add(domain)
        mapping = compile_city(CITIES[city], vocabulary).get(source)
        assert mapping is not None, f"{city}/{source} is open but has no mapping"
        assert mapping.position is not None, f"{city}/{source} gives no position"
    assert set(domains) == {"paris", "lyon", "nice", "bordeaux", "angers"}
    for city, found in domains.items():
        assert {"environment", "mobility"} <= found, (city, found)
    assert sum("parking" in found for found in domains.values()) >= 3


@pytest.mark.parametrize("licence", ["Etalab", "ODbL", "etalab-2.0 ", "odbl-1.0"])
def test_an_unknown_licence_is_refused_with_the_list(licence: str) -> None:
    with pytest.raises(ConfigError, match=r"Licence-Ouverte-2\.0"):
        parse_sharing({"level": "open", "licence": licence}, source="x.yaml", key="sharing")
