"""Hostile subscribers: what one caller's subscription must not be able to do to the
node (hang delivery for everyone, reach what its audience may not read)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from services.api.ngsi.params import id_pattern
from services.api.ngsi.problems import NgsiError

# The id of a station with a long key; the pattern backtracks exponentially in a
# backtracking engine (Python's re) on any id that does not end with "!".
EVIL = ".*(.|.)*!"
LONG_ID = "urn:ngsi-ld:AirQualityObserved:lyon:" + "s" * 60

MATCH_ONCE = f"""
from services.api.ngsi.names import load_names
from services.api.subscriptions.matching import Matcher
from services.api.subscriptions.model import EntitySelector, Subscription
sub = Subscription(
    id="urn:ngsi-ld:Subscription:evil", owner="k1", audience="public",
    endpoint_uri="http://127.0.0.1:9/n", created_at="2026-01-01T00:00:00.000Z",
    entities=(EntitySelector("AirQualityObserved", id_pattern={EVIL!r}),),
)
print(Matcher.of(sub, load_names()).selects("AirQualityObserved", {LONG_ID!r}))
"""


def test_an_id_pattern_cannot_hang_the_delivery_engine() -> None:
    """Matching runs in the engine's thread for every record: a pattern that takes
    exponential time would stop every subscriber's notifications. Failed before
    (Python's re: never returned; the bound below is generous, a linear engine answers
    in milliseconds)."""
    assert id_pattern(EVIL)[0] == EVIL  # the routes accept it
    done = subprocess.run(
        [sys.executable, "-c", MATCH_ONCE], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("pattern", [".*(a)\\1", ".*a(?=b)", ".*\\bx(?P<n>y)(?P=n)"])
def test_patterns_the_nodes_cannot_run_are_refused(pattern: str) -> None:
    with pytest.raises(NgsiError):
        id_pattern(pattern)
