"""Random v1 records of the types carried many to a message (Observation, RawRecord),
every field drawn, for property tests of the batch contracts and of joining batches."""

from __future__ import annotations

from hypothesis import strategies as st

__all__ = ["column", "observation", "raw"]

words = st.sampled_from(["lyon", "paris", "a", "b", "é", ""])
maybe = st.none() | words
times = st.lists(st.integers(0, 2**50), max_size=4)


@st.composite
def observation(draw: st.DrawFn) -> dict:
    n = draw(st.integers(0, 4))
    values = draw(st.lists(st.floats(allow_nan=False), min_size=n, max_size=n))
    return {
        "city": draw(st.sampled_from(["lyon", "paris"])),
        "domain": draw(words),
        "metric": draw(words),
        "unit": draw(words),
        "entity_pseudonym": draw(words),
        "entity_type": draw(maybe),
        "zone": draw(maybe),
        "position": draw(
            st.none()
            | st.builds(lambda a, b: {"lat": a, "lon": b}, st.floats(-90, 90), st.floats(-180, 180))
        ),
        "start": draw(st.integers(0, 2**50)),
        "step_seconds": draw(st.integers(0, 3600)),
        "times": draw(times),
        "values": values,
        "quality": draw(st.lists(st.integers(0, 7), max_size=3)),
        "source": draw(st.sampled_from(["s1", "s2"])),
        "dataset": "d",
        "lineage_id": draw(st.sampled_from(["L1", "L2"])),
        "key_epoch": draw(maybe),
        "sector": draw(maybe),
        "carrier": draw(maybe),
        "versions": draw(st.lists(st.integers(0, 3), max_size=3)),
        "replaced": draw(st.lists(st.floats(allow_nan=False), max_size=3)),
    }


@st.composite
def column(draw: st.DrawFn, name: str, kind: str, rows: int) -> dict:
    element = {
        "string": words,
        "double": st.floats(allow_nan=False),
        "long": st.integers(-(2**62), 2**62),
        "boolean": st.booleans(),
    }[kind]
    own = {"string": "strings", "double": "doubles", "long": "longs", "boolean": "booleans"}[kind]
    out = {"name": name, "kind": kind, "strings": [], "doubles": [], "longs": [], "booleans": []}
    out[own] = draw(st.lists(element, min_size=rows, max_size=rows))
    out["missing"] = sorted(draw(st.sets(st.integers(0, max(rows - 1, 0)), max_size=rows)))
    return out


@st.composite
def raw(draw: st.DrawFn) -> dict:
    rows = draw(st.integers(1, 4))
    signature = draw(
        st.sampled_from(
            [
                [("v", "double")],
                [("v", "double"), ("who", "string")],
                [("n", "long"), ("ok", "boolean")],
            ]
        )
    )
    return {
        "city": "lyon",
        "source": draw(st.sampled_from(["s1", "s2"])),
        "dataset": "d",
        "format": "csv",
        "entity_id": draw(words),
        "entity_type": draw(maybe),
        "lineage_id": draw(st.sampled_from(["L1", "L2"])),
        "received_at": 5,
        "row_count": rows,
        "event_times": draw(
            st.lists(st.integers(0, 2**50), min_size=rows, max_size=rows) | st.just([])
        ),
        "columns": [draw(column(n, k, rows)) for n, k in signature],
        "attributes": draw(st.sampled_from([{}, {"content-type": "text/csv"}])),
    }
