"""The sample records of the open datasets (tests/fixtures/api/, used by the common
API's whole-node tests): one file per open source, and each goes through ingest,
its city's privacy policy and normalise to observations with a position."""

from __future__ import annotations

import pytest

from services.policy.sharing import sharing_policies
from services.runtime.cities import load_cities
from services.runtime.paths import CITIES_DIR
from testkit.api_data import API_DATA, ApiSample, api_samples, expected_observations

CITIES = load_cities(CITIES_DIR)


def test_every_open_source_has_samples_and_every_sample_an_open_source() -> None:
    policies = sharing_policies(CITIES)
    opened = {key for key, policy in policies.items() if policy.level == "open"}
    assert {(s.city, s.source) for s in api_samples()} == opened
    assert (API_DATA / "README.md").exists()


@pytest.mark.parametrize("sample", api_samples(), ids=lambda s: f"{s.city}/{s.source}")
def test_a_sample_becomes_observations_with_a_position(sample: ApiSample) -> None:
    observations = expected_observations(sample, CITIES)
    assert observations, sample.path.name
    source = CITIES[sample.city].source(sample.source)
    for observation in observations:
        assert observation["city"] == sample.city and observation["source"] == source.id
        position = observation["position"]
        assert position is not None, (sample.path.name, observation["metric"])
        assert -90 <= position["lat"] <= 90 and -180 <= position["lon"] <= 180


def test_the_cities_filter() -> None:
    found = api_samples(["nice"])
    assert found and {s.city for s in found} == {"nice"}
