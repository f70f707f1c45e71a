"""publish lands an observations.v2 message from its columns (services/publish/
batch_rows.py): the rows must be exactly those its exploded members give through the
v1 rows, whatever the members carry (times or a start and step, quality, corrections,
positions, missing words), for any split of the same members into messages."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.publish.batch_rows import check_observation_batch, observation_batches_table
from services.publish.rows import Landed, observations_table
from services.runtime.batches import batching

OBSERVATION = batching("Observation")
ZONES = {"lyon": "Europe/Paris", "noumea": "Pacific/Noumea"}
T0 = 1_736_722_800_000_000  # 2025-01-13T00:00+01:00, µs


@st.composite
def member(draw, city: str) -> dict:
    n = draw(st.integers(0, 5))  # a member may hold no reading: it makes no row
    start = T0 + draw(st.integers(-3, 3)) * 3_600_000_000
    step = draw(st.sampled_from([600, 900, 3600]))
    times = draw(st.sampled_from(["none", "own"]))
    corrected = draw(st.booleans())
    words = st.one_of(st.none(), st.sampled_from(["a", "b", "zone-1", ""]))
    return {
        "city": city,
        "domain": draw(st.sampled_from(["energy", "air"])),
        "metric": draw(st.sampled_from(["active_energy_import", "no2"])),
        "unit": draw(st.sampled_from(["kWh", "ug/m3"])),
        "entity_pseudonym": draw(st.sampled_from(["e1", "e2", "e3", "e4"])),
        "entity_type": draw(words),
        "zone": draw(words),
        "position": draw(
            st.one_of(
                st.none(),
                st.builds(
                    lambda a, b: {"lat": a, "lon": b}, st.floats(-90, 90), st.floats(-180, 180)
                ),
            )
        ),
        "start": start,
        "step_seconds": step,
        "times": [start + k * 1_000_000 * draw(st.integers(1, 900)) for k in range(n)]
        if times == "own"
        else [],
        "values": draw(st.lists(st.floats(-1e6, 1e6), min_size=n, max_size=n)),
        "quality": draw(st.sampled_from([[], [0] * n, [4] * n])),
        "source": "s",
        "dataset": "d",
        "lineage_id": "L",
        "key_epoch": draw(words),
        "sector": draw(words),
        "carrier": draw(words),
        "versions": [1] * n if corrected else [],
        "replaced": [0.5] * n if corrected else [],
    }


SHARED = st.fixed_dictionaries(  # what a message's members share (services/runtime/batches.py)
    {
        "city": st.sampled_from(["lyon", "noumea"]),
        "source": st.sampled_from(["s", "t"]),
        "dataset": st.sampled_from(["d", "e"]),
        "lineage_id": st.sampled_from(["L", "M", ""]),
    }
)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), cuts=st.lists(st.integers(1, 4), min_size=1, max_size=4))
def test_a_batch_lands_as_the_rows_of_its_members(data, cuts: list[int]) -> None:
    """One insert of several messages, each with its own dictionary (its own words in
    its own order), city and time zone, source, partition and offset."""
    members = data.draw(st.lists(member("lyon"), min_size=1, max_size=12))
    batches, at, offset = [], 0, 0
    for size in cuts * 12:  # any split of the same members
        if at >= len(members):
            break
        shared = data.draw(SHARED)
        part = [{**m, **shared} for m in members[at : at + size]]
        partition = data.draw(st.integers(0, 3))
        offset += data.draw(st.integers(1, 3))
        batches.append(Landed(OBSERVATION.batch_of(part), "observations.v2", partition, offset))
        at += size
    exploded = [
        Landed(m, landed.topic, landed.partition, landed.offset)
        for landed in batches
        for m in OBSERVATION.explode(landed.record)
    ]
    for landed in batches:
        check_observation_batch(landed.record)  # a well-formed batch passes
    ours = observation_batches_table(batches, ZONES)
    theirs = observations_table(exploded, ZONES)
    assert ours.schema == theirs.schema
    assert ours.to_pylist() == theirs.to_pylist()


def test_a_correction_in_a_batch_supersedes_the_first_value_in_the_warehouse(tmp_path) -> None:
    """The v2 route's follow-up (versions.supersede_in_batches) on a real chDB: the
    correction a batch carries replaces the value an earlier batch landed."""
    from services.publish.versions import supersede_in_batches
    from services.warehouse.chdb_embedded import ChdbWarehouse
    from services.warehouse.migrations import migrate

    def reading(entity: str, value: float, version: int = 0) -> dict:
        return {
            "city": "lyon", "domain": "energy", "metric": "active_energy_import",
            "unit": "kWh", "entity_pseudonym": entity, "entity_type": "ElectricityMeter",
            "zone": "z", "position": None, "start": T0, "step_seconds": 600, "times": [],
            "values": [value], "quality": [], "source": "s", "dataset": "d",
            "lineage_id": "L", "key_epoch": None, "sector": None, "carrier": "electricity",
            "versions": [version] if version else [], "replaced": [1.0] if version else [],
        }  # fmt: skip

    first = Landed(OBSERVATION.batch_of([reading("a", 1.0), reading("b", 2.0)]), "t", 0, 0)
    fix = Landed(OBSERVATION.batch_of([reading("a", 1.5, 1), reading("c", 3.0)]), "t", 0, 1)
    warehouse = ChdbWarehouse(tmp_path / "warehouse")
    try:
        migrate(warehouse)
        warehouse.insert_arrow("observations", observation_batches_table([first]))
        assert supersede_in_batches(warehouse, [first]) == 0
        warehouse.insert_arrow("observations", observation_batches_table([fix]))
        assert supersede_in_batches(warehouse, [fix]) == 1
        found = warehouse.query_arrow(
            "SELECT entity, value, version FROM observations ORDER BY entity"
        ).to_pylist()
    finally:
        warehouse.close()
    assert found == [
        {"entity": "a", "value": 1.5, "version": 1},
        {"entity": "b", "value": 2.0, "version": 0},
        {"entity": "c", "value": 3.0, "version": 0},
    ]


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"quality": [5]}, "'quality'"),  # one code for three values
        ({"times": [T0, T0 + 1]}, "'times'"),
        ({"versions": [1, 1, 1], "replaced": []}, "'replaced'"),
        ({"versions": [], "replaced": [0.5, 0.5, 0.5]}, "'replaced'"),  # no version
    ],
)
def test_a_batch_that_cannot_become_rows_is_refused_as_it_is_decoded(change, says) -> None:
    """The sink calls the check as it decodes (an undecodable message, its dead letter):
    such a batch must never reach the insert, which would fail at every restart."""
    good = {
        "city": "lyon", "domain": "air", "metric": "no2", "unit": "ug/m3",
        "entity_pseudonym": "e", "entity_type": None, "zone": None, "position": None,
        "start": T0, "step_seconds": 600, "times": [], "values": [1.0, 2.0, 3.0],
        "quality": [], "source": "s", "dataset": "d", "lineage_id": "L", "key_epoch": None,
        "sector": None, "carrier": None, "versions": [], "replaced": [],
    }  # fmt: skip
    check_observation_batch(OBSERVATION.batch_of([good]))
    with pytest.raises(ValueError, match=says):
        check_observation_batch(OBSERVATION.batch_of([good, {**good, **change}]))


def _reading(entity: str, metric: str) -> dict:
    return {
        "city": "lyon", "domain": "air", "metric": metric, "unit": "ug/m3",
        "entity_pseudonym": entity, "entity_type": None, "zone": None, "position": None,
        "start": T0, "step_seconds": 600, "times": [], "values": [1.0], "quality": [],
        "source": "s", "dataset": "d", "lineage_id": "L", "key_epoch": None,
        "sector": None, "carrier": None, "versions": [], "replaced": [],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("field", "says"),
    [("entity_pseudonym", "one item per member"), ("values", "items its counts say")],
)
def test_a_message_short_of_an_item_never_shifts_its_neighbours_rows(field, says) -> None:
    """An insert's messages are laid end to end: one item too few in a message and one
    too many in the next must be refused (the sink checked each as it was decoded; the
    rows do not take it on trust), not give the first's member the second's item."""
    first = OBSERVATION.batch_of([_reading("a", "no2"), _reading("b", "no2")])
    second = OBSERVATION.batch_of([_reading("c", "o3")])
    moved = first[field].pop()
    second[field].append(moved)
    batch = [Landed(first, "t", 0, 0), Landed(second, "t", 0, 1)]
    with pytest.raises(ValueError, match=says):
        observation_batches_table(batch, ZONES)


def test_a_code_past_its_own_dictionary_is_refused_not_read_in_the_next() -> None:
    """Every message's words are in one array: a code past its message's dictionary
    would otherwise name a word of the message after it."""
    first = OBSERVATION.batch_of([_reading("a", "no2")])
    second = OBSERVATION.batch_of([_reading("b", "o3")])
    first["metric"] = [len(first["dictionary"])]  # "o3"'s place, were it read on
    batch = [Landed(first, "t", 0, 0), Landed(second, "t", 0, 1)]
    with pytest.raises(ValueError, match="'metric' points past"):
        observation_batches_table(batch, ZONES)
