"""Magnitudes no meter or sensor can produce (the vocabulary's ``implausible``
limits): flagged by default, refused for a source that says so, and the limits
of interval metrics scale with the reading's interval."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from services.normalise import quality
from services.normalise.plausibility import Limit, implausible
from services.normalise.vocabulary import load_vocabulary
from services.runtime.errors import ConfigError
from testkit.normalise import CURVES, LINKY, Run, city_file, curves, normaliser, record

REFUSING = {**copy.deepcopy(CURVES), "id": "curves-refusing"}
REFUSING["mapping"]["on_implausible"] = "refuse"


@pytest.fixture()
def run(tmp_path: Path) -> Run:
    return Run(normaliser(city_file(tmp_path, "testville", [CURVES, REFUSING, LINKY])))


def test_1e308_wh_is_flagged_by_default(run: Run) -> None:
    out = run(curves([0.5, 1e305, 0.7]))  # 1e308 Wh, in kWh
    [series] = out
    assert series["values"] == [0.5, 1e305, 0.7]
    assert [quality.names(q) for q in series["quality"]] == [[], ["out-of-range"], []]
    assert run.dropped == {}


def test_a_refusing_source_does_not_publish_it_and_counts_it(run: Run) -> None:
    rec = curves([0.5, 1e305, 0.7])
    rec["source"] = "curves-refusing"
    out = run(rec)
    assert [v for o in out for v in o["values"]] == [0.5, 0.7]
    assert run.dropped == {"implausible": 1}


def test_a_register_jumping_by_1e308_wh_is_refused_or_flagged(run: Run) -> None:
    times = ["E250113000000", "E250113001000", "E250113002000"]
    rec = record("testville", "linky", {"DATE@time": times, "EAST": ["1000", "1e308", "1e308"]})
    [series] = run(rec)
    assert quality.names(series["quality"][0]) == ["out-of-range"]


def test_interval_limits_scale_with_the_interval() -> None:
    limit = Limit(max_per_hour=1000.0)
    values = [170.0, 170.0, 20_000.0, 20_000.0]
    assert implausible(limit, values, [600, 3600, 86400, None], interval=True) == [0]
    assert implausible(limit, [1.0, 2.0], [600, 600], interval=True) == []
    assert implausible(Limit(min=-1.0, max=1.0), [0.0, 2.0, -3.0], None, interval=False) == [1, 2]


def test_the_vocabulary_bounds_energy_and_temperatures() -> None:
    limits = load_vocabulary().plausibility.limits
    assert limits["active_energy_import"].max_per_hour is not None
    assert limits["air_temperature"].max is not None and limits["no2"].max is not None


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("implausible: {on_implausible: drop}", "implausible.on_implausible"),
        ("implausible: {limits: {nope: {max: 1}}}", "implausible.limits.nope"),
        ("implausible: {limits: {air_temperature: {max_per_hour: 1}}}", "air_temperature"),
        ("implausible: {limits: {precipitation: {max_per_hour: '9'}}}", "max_per_hour"),
    ],
)
def test_a_wrong_section_names_its_key(tmp_path: Path, section: str, key: str) -> None:
    from services.normalise.vocabulary import VOCABULARY_FILE

    text = VOCABULARY_FILE.read_text(encoding="utf-8")
    text = text[: text.index("\nimplausible:")] + "\n" + section + "\n"
    path = tmp_path / "vocabulary.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=key):
        load_vocabulary(path)
