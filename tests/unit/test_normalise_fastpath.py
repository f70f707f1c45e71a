"""Normalise's columnar fast path gives exactly what the per-record path gives.

For random AnonymisedBatches of single readings (shared or distinct time stamps,
units, zones and sectors; missing, unreadable, implausible and out-of-range
values; the missing and the repeated hour; times already published, or not, for
each entity; the same batch again), either the fast path declines (None: the
per-record path decides) or its observations, exploded, and its states are the
per-record path's, and the per-record path wrote no dead letter for that batch and
dropped what the fast path dropped (duplicates).
"""

from __future__ import annotations

import json
import math
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.normalise.fastpath import BatchNormaliser
from services.normalise.stage import observation_batches
from services.normalise.transform import Normaliser
from services.normalise.vectors import distinct, exact_round, numeric
from services.runtime.batches import batching
from services.runtime.errors import RejectedInput
from services.runtime.source_headers import source_of
from testkit.normalise import city_file, column, normaliser

CURVES = {
    "id": "curves",
    "format": "csv",
    "domain": "energy",
    "entity": "prm",
    "mapping": {
        "entity_type": "ElectricityMeter",
        "time": {"field": "horodate", "format": "%Y-%m-%d %H:%M:%S"},
        "step": {"field": "pas", "format": "iso8601"},
        "zone": {"field": "iris"},
        "sector": {"field": "secteur", "values": {"residentiel": "residential"}},
        "measures": {
            "kwh": {"metric": "active_energy_import", "unit_field": "unite", "unit": "kWh"},
            "kw": {"metric": "active_energy_export", "unit": "kW", "kind": "average"},
        },
    },
}
WEATHER = {
    "id": "weather",
    "format": "json",
    "domain": "environment",
    "entity": "station",
    "mapping": {
        "time": {"field": "ts", "format": "iso8601"},
        "zone": {"attribute": "zone"},
        "measures": {
            "temp": {"metric": "air_temperature", "unit_field": "u", "unit": "°C"},
            "power": {"metric": "active_power", "unit": "W"},
        },
    },
}
METERS = {
    "id": "meters",
    "format": "ndjson",
    "domain": "energy",
    "entity": "pdl",
    "mapping": {
        "entity_type": "ElectricityMeter",
        "time": {"field": "debut", "format": "epoch_s"},
        "step": {"seconds": 600},
        "on_implausible": "refuse",
        "measures": {"wh": {"metric": "active_energy_import", "unit": "Wh", "kind": "interval"}},
    },
}

BIKES = {
    "id": "bikes",
    "format": "json",
    "domain": "mobility",
    "entity": "number",
    "mapping": {
        "entity_type": "BikeHireDockingStation",
        "time": {"field": "last_update", "format": "iso8601"},
        "measures": {
            "available_bikes": {"metric": "bike_hire_available_bikes", "unit": "count"},
            "stands": {"metric": "bike_hire_free_slots", "unit": "count"},
        },
        "position": {"lat": "lat", "lon": "lng"},
    },
}
STAMPS = [
    "2025-01-13 08:00:00",
    "2025-01-13 08:10:00",
    "2025-03-30 02:30:00",  # the missing hour
    "2025-10-26 02:30:00",  # the repeated hour
    "2025-01-13 8h",
    "1999-01-01 00:00:00",  # before the plausible bounds
]
ISO = ["2025-01-13T08:00:00+01:00", "2025-01-13T07:10:00Z", "2025-01-13T08:20:00", "soon"]
EPOCHS = [1_736_751_600, 1_736_752_200, 1_736_752_800, 10]
PARIS = ZoneInfo("Europe/Paris")
ENTITIES = [f"e{k}" for k in range(6)]
# the reading published before the batch, per entity (0: none): earlier, then (in a
# bad case) at a time of the batch or after it
HISTORY_TIMES = [0, 1_736_700_000, 1_736_751_600, 1_736_800_000]


def _cities() -> Normaliser:
    tmp = Path(tempfile.mkdtemp(prefix="citeplus-fastpath-"))
    return normaliser(city_file(tmp, "testville", [CURVES, WEATHER, METERS, BIKES]))


NORMALISER = _cities()
PICK = st.sampled_from


def number(*, bad: bool) -> st.SearchStrategy[Any]:
    good = st.floats(-5, 1e4, allow_nan=False) | PICK([0.1234567, 2.5, 0.0005, -0.5, 0.0])
    return good | PICK([None, math.nan, 1e300, -1e300]) if bad else good


@st.composite
def curves_member(draw: st.DrawFn, entity: str, bad: bool) -> dict[str, Any]:
    return {
        "horodate": (draw(PICK(STAMPS if bad else STAMPS[:2])), "string"),
        "pas": (draw(PICK(["PT10M", "PT30M"] + (["PTxM", None] if bad else []))), "string"),
        "iris": (draw(PICK(["751010203", "751010204", None, ""])), "string"),
        "secteur": (
            draw(PICK(["residentiel", "residential"] + (["martien"] if bad else []))),
            "string",
        ),
        "kwh": (draw(number(bad=bad)), "double"),
        "unite": (draw(PICK(["kWh", "Wh", None] + (["furlong", "°C"] if bad else []))), "string"),
        "kw": (draw(number(bad=bad)), "double"),
    }


@st.composite
def weather_member(draw: st.DrawFn, entity: str, bad: bool) -> dict[str, Any]:
    return {
        "ts": (draw(PICK(ISO if bad else ISO[:3])), "string"),
        "temp": (draw(number(bad=bad) | PICK([-95.0, 80.0, 40.123456, 120.0])), "double"),
        "u": (draw(PICK(["°C", "K", "°F"] + (["kWh"] if bad else []))), "string"),
        "power": (draw(st.integers(-(10**6), 10**6) | PICK([10**12] if bad else [7])), "long"),
    }


@st.composite
def meters_member(draw: st.DrawFn, entity: str, bad: bool) -> dict[str, Any]:
    return {
        "debut": (draw(PICK(EPOCHS if bad else EPOCHS[:3])), "long"),
        "wh": (draw(number(bad=bad) | PICK([3e12, -1.0] if bad else [-1.0])), "double"),
    }


@st.composite
def bikes_member(draw: st.DrawFn, entity: str, bad: bool) -> dict[str, Any]:
    lat = draw(st.floats(45.7, 45.8) | PICK([95.0, None] if bad else [45.75]))
    return {
        "last_update": (draw(PICK(ISO if bad else ISO[:3])), "string"),
        "available_bikes": (draw(st.integers(0, 40)), "long"),
        "stands": (draw(st.integers(0, 40) | PICK([-3])), "long"),
        "lat": (lat, "double"),
        "lng": (draw(st.floats(4.8, 4.9)), "double"),
    }


MEMBERS = {
    "curves": curves_member,
    "weather": weather_member,
    "meters": meters_member,
    "bikes": bikes_member,
}


def member_record(source: str, entity: str, fields: dict[str, Any], attributes: dict) -> dict:
    return {
        "city": "testville",
        "source": source,
        "dataset": "test-dataset",
        "format": "csv",
        "entity_pseudonym": entity,
        "entity_type": None,
        "key_epoch": "2025-01",
        "policy_version": "test",
        "lineage_id": "batch-1",
        "received_at": 1_767_225_600_000_000,
        "row_count": 1,
        "event_times": [],
        "columns": [column(name, [value], kind) for name, (value, kind) in fields.items()],
        "attributes": attributes,
    }


@st.composite
def cases(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """(batch, state before it) for one source."""
    source = draw(PICK(sorted(MEMBERS)))
    entities = draw(st.lists(PICK(ENTITIES), min_size=1, max_size=6, unique=True))
    bad = draw(st.integers(0, 2)) == 0
    if bad and draw(st.booleans()):
        entities.append(entities[0])  # an entity twice in one batch
    attributes = {"zone": draw(PICK(["z1", "z2"]))} if source == "weather" else {}
    members = [
        member_record(source, e, draw(MEMBERS[source](e, bad)), attributes) for e in entities
    ]
    times = HISTORY_TIMES if bad else HISTORY_TIMES[:2]
    state = history(source, entities, [draw(PICK(times)) for _ in entities])
    (batch,) = batching("AnonymisedRecord").implode(members)
    if draw(st.integers(0, 3)) == 0:  # the batch again (a replay, a feed polled again)
        state = per_record(batch, state)["state"]
    return batch, state


def history(source: str, entities: list[str], seconds: list[int]) -> dict[str, Any]:
    """The state after one earlier reading per entity (none where 0), per record."""
    from datetime import UTC, datetime

    state: dict[str, Any] = {}
    for entity, t in zip(entities, seconds, strict=True):
        if not t:
            continue
        local = datetime.fromtimestamp(t, UTC)
        fields = {
            "curves": {
                "horodate": (local.astimezone(PARIS).strftime("%Y-%m-%d %H:%M:%S"), "string"),
                "pas": ("PT10M", "string"),
                "kwh": (0.2, "double"),
                "kw": (1.0, "double"),
            },
            "weather": {
                "ts": (local.isoformat(), "string"),
                "temp": (20.0, "double"),
                "power": (5, "long"),
            },
            "meters": {"debut": (t, "long"), "wh": (10.0, "double")},
            "bikes": {
                "last_update": (local.isoformat(), "string"),
                "available_bikes": (3, "long"),
                "stands": (4, "long"),
            },
        }[source]
        outcome = NORMALISER.normalise(member_record(source, entity, fields, {}), state.get)
        state.update(outcome.states)
    return state


def per_record(batch: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """Every member through the per-record path as the stage runs it: states read
    as the previous members left them, a rejected member leaving none."""
    state = dict(state)
    observations, unusual, dropped = [], [], Counter()
    for record in batching("AnonymisedRecord").explode(batch):
        try:
            outcome = NORMALISER.normalise(record, state.get)
        except RejectedInput as exc:
            unusual.append(("dead letter", exc.reason))
            continue
        state.update(outcome.states)
        observations.extend(outcome.observations)
        dropped.update(outcome.dropped)
        unusual += [*outcome.letters, *outcome.rejected]
        unusual += [*outcome.position_drops.items(), *outcome.dropped_attributes]
    return {"observations": observations, "state": state, "unusual": unusual, "dropped": dropped}


def through_batch(observations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    carrier = batching("Observation")
    return [o for batch in carrier.implode(observations) for o in carrier.explode(batch)]


covered: list[bool] = []


@settings(max_examples=100, deadline=None)
@given(cases())
def test_the_fast_path_is_the_per_record_path(case: tuple[dict, dict]) -> None:
    batch, before = case
    expected = per_record(batch, before)
    got = BatchNormaliser(NORMALISER).normalise_batch(batch, dict(before).get)
    covered.append(got is not None)
    if got is None:
        return
    assert expected["unusual"] == []
    assert got.dropped == expected["dropped"]
    exploded = batching("Observation").explode(got.rows.batch(np.arange(len(got.rows))))
    assert exploded == through_batch(expected["observations"])
    assert {**before, **got.states} == expected["state"]
    for key, state in got.states.items():  # the changelog's text too (key order, types)
        assert json.dumps(state) == json.dumps(expected["state"][key])
    assert got.readings == len(expected["observations"])


def test_the_property_test_sees_both_paths() -> None:
    """Guards the test above against declining everything (or nothing)."""
    if len(covered) < 50:
        pytest.skip("run with the property test")
    assert 0.2 < sum(covered) / len(covered) < 0.95


def clean_batch(entities: int = 50) -> dict[str, Any]:
    members = [
        member_record(
            "curves",
            f"prm-{k}",
            {
                "horodate": ("2025-01-13 08:00:00", "string"),
                "pas": ("PT10M", "string"),
                "iris": (f"75101020{k % 3}", "string"),
                "secteur": ("residentiel", "string"),
                "kwh": (0.1 + k / 1000, "double"),
                "unite": ("Wh" if k % 2 else "kWh", "string"),
                "kw": (1.5, "double"),
            },
            {},
        )
        for k in range(entities)
    ]
    (batch,) = batching("AnonymisedRecord").implode(members)
    return batch


def test_a_clean_batch_of_single_readings_takes_the_fast_path() -> None:
    batch = clean_batch()
    got = BatchNormaliser(NORMALISER).normalise_batch(batch, {}.get)
    assert got is not None and got.readings == 100
    expected = per_record(batch, {})
    exploded = batching("Observation").explode(got.rows.batch(np.arange(100)))
    assert exploded == through_batch(expected["observations"])
    assert got.states == expected["state"]


@pytest.mark.parametrize(
    "change",
    [
        "unmapped source",
        "two rows",
        "published already",
        "unknown sector",
        "missing value",
    ],
)
def test_what_the_fast_path_does_not_cover_is_left_to_the_per_record_path(change: str) -> None:
    batch = clean_batch(3)
    state: dict[str, Any] = {}
    if change == "unmapped source":
        batch["source"] = "nobody"
    elif change == "two rows":
        batch["row_count"] = [2, 1, 0]
    elif change == "published already":
        state = history("curves", ["prm-1"], [1_736_751_600])
    elif change == "unknown sector":
        batch["columns"][3]["strings"][1] = "martien"
    elif change == "missing value":
        batch["columns"][4]["missing"] = [2]
    assert BatchNormaliser(NORMALISER).normalise_batch(batch, state.get) is None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=20)
    | st.lists(st.integers(-(10**9), 10**9).map(lambda k: k / 2000 + 0.0005), max_size=20),
    st.integers(0, 12),
)
def test_exact_round_is_python_round(values: list[float], decimals: int) -> None:
    got = exact_round(np.asarray(values, dtype=np.float64), decimals).tolist()
    assert got == [round(v, decimals) for v in values]


def test_distinct_values_of_a_column_spread_back_over_its_rows() -> None:
    codes, values = distinct(column("z", ["a", None, "b", "a", ""], "string"))
    assert [values[c] for c in codes] == ["a", None, "b", "a", ""]
    codes, values = distinct(column("t", [3, 1, None, 3], "long"))
    assert [values[c] for c in codes] == [3, 1, None, 3]
    assert numeric(column("v", ["1.5", " 2", "1e3"], "string")).tolist() == [1.5, 2.0, 1000.0]
    assert numeric(column("v", ["1.5", "x"], "string")) is None


def test_distinct_keeps_every_value_apart() -> None:
    codes, values = distinct(column("z", [0.0, -0.0, 0.0, 1.5], "double"))
    assert [math.copysign(1, values[c]) for c in codes] == [1, -1, 1, 1]
    codes, values = distinct(column("b", [True, False, True], "boolean"))
    assert [values[c] for c in codes] == [True, False, True]


def test_a_batch_received_again_is_dropped_as_duplicates_on_the_fast_path() -> None:
    batch = clean_batch()
    first = BatchNormaliser(NORMALISER).normalise_batch(batch, {}.get)
    assert first is not None
    again = BatchNormaliser(NORMALISER).normalise_batch(batch, first.states.get)
    assert again is not None
    assert (again.readings, again.states, again.dropped) == (0, {}, {"duplicate": 100})


def test_the_fast_path_messages_name_their_city_and_source_in_their_headers() -> None:
    """publish's republisher passes over a message of an internal source from its
    headers, undecoded: every message the fast path writes names them."""
    batch = clean_batch()
    got = BatchNormaliser(NORMALISER).normalise_batch(batch, {}.get)
    assert got is not None
    emits = observation_batches(got.rows, "observations.v2", 6)
    assert len(emits) > 1
    for emit in emits:
        assert source_of(emit.headers) == (emit.value["city"], emit.value["source"])
        assert emit.value["source"] == batch["source"]
