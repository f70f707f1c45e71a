"""The state of the next reading of a stream, computed by the shortcuts
(``memory.remember_next``, ``versions.remember_next``, the fast path's
``_remembered``), is the state the general rules give, down to the changelog's text
(key order, int or float, every run and segment), whatever the history: regular,
irregular or gapped streams, runs and values forgotten past the window, the run
limit or the lateness horizon, corrections and coarsened tails in the state."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.normalise import memory, versions
from services.normalise.fastpath import _remembered
from testkit.normalise_histories import STEP, unusual
from testkit.normalise_histories import histories as random_histories


def general(state: dict[str, Any] | None, t: int, value: float, rules: Any) -> dict[str, Any]:
    new = memory.remember(state, [t], window_us=rules.window_us, max_runs=rules.max_runs)
    return versions.remember(new, [t], [value], horizon_us=rules.horizon_us)


def text(state: dict[str, Any]) -> str:
    return json.dumps(state, separators=(",", ":"))


gaps = st.sampled_from([STEP, STEP, STEP, 2 * STEP, 7 * STEP, 1, 3 * STEP + 5, 50 * STEP])
values = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-5, 5) | st.just(0.1)


def histories() -> st.SearchStrategy[tuple[Any, list[tuple[str, int, Any]]]]:
    return random_histories(values, gaps, longest=40, nexts=6)


@settings(max_examples=300, deadline=None)
@given(histories())
def test_the_next_reading_shortcuts_give_the_general_state(case: Any) -> None:
    rules, steps = case
    state: dict[str, Any] | None = None
    for kind, t, value in steps:
        if kind == "next":
            expected = general(state, t, value, rules)
            norm = SimpleNamespace(window_us=rules.window_us, max_runs=rules.max_runs)
            got = _remembered(state, t, value, norm, rules.horizon_us)  # type: ignore[arg-type]
            assert text(got) == text(expected)
            assert got == expected
            state = got
        elif state is not None and "hwm" in state:  # states the shortcuts must decline
            state = unusual(state, kind, t, value, rules)


def test_the_shortcuts_decline_what_is_not_the_next_reading() -> None:
    state = general(None, 10, 1.0, SimpleNamespace(window_us=100, max_runs=4, horizon_us=100))
    assert memory.remember_next(state, 10) is None  # not after the latest time
    assert memory.remember_next({**state, "tail": [10, ["b"]]}, 20) is None
    assert memory.remember_next({}, 20) is None
    assert versions.remember_next({**state, "vver": {"10": 1}}, 20, 2.0, horizon_us=100) is None
    assert versions.remember_next(state, 10, 2.0, horizon_us=100) is None
    assert versions.remember_next({"hwm": 10}, 20, 2.0, horizon_us=100) is None
