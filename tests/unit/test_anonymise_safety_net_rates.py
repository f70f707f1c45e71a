"""The net's error rates, measured as bench/safety_net.py prints them: under 1% of
the kept values of public sources flagged (real samples and the simulator, shipped
policies), and a floor on the recall of names the detector's lists never saw."""

from __future__ import annotations

import pytest

from bench.safety_net import false_positives, name_recall

# Floors of the held-out recall (bench/safety_net.py, 300 people per locale, seed 7);
# measured: fr_CH 81%, fr_CA 94%, fr_FR 99.8% over the four forms.
RECALL_FLOOR = {"fr_CH": 0.75, "fr_CA": 0.90, "fr_FR": 0.97}
CIVILITY_FLOOR = 0.95  # "M. Nom" / "Mme Nom": the civility gives the name away


@pytest.fixture(scope="module")
def shipped_rates():
    return false_positives(declared=True), false_positives(declared=False, simulate=False)


def test_under_one_percent_of_public_kept_values_are_flagged(shipped_rates) -> None:
    shipped, _ = shipped_rates
    for corpus in ("samples", "simulator"):
        tally = shipped[corpus]
        assert tally.records > 20 and tally.kept > 5000, (corpus, tally)
        assert tally.rate < 0.01, (corpus, tally)


def test_the_detectors_do_see_declared_places(shipped_rates) -> None:
    """Without the declaration, station names, addresses and positions are found:
    the bound above holds because declared places are left alone, not because the
    detectors are blind."""
    _, undeclared = shipped_rates
    assert undeclared["samples"].rate > 0.05


def test_held_out_names_are_found_above_the_stated_floor() -> None:
    recall = name_recall(300)
    for locale, floor in RECALL_FLOOR.items():
        assert recall[locale]["all"] >= floor, (locale, recall[locale])
        assert recall[locale]["M. {last}"] >= CIVILITY_FLOOR, (locale, recall[locale])
