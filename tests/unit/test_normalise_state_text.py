"""An entity-metric state's changelog text, built from the previous state's text
(state_text.py), is exactly json's, whatever the history (regular, gapped, late,
corrected, coarsened; values forgotten past the horizon, runs past the window),
whatever the values (NaN, infinities, -0.0, large integers), and through the
store's savepoints, aborts, commits, forgets and restores: a write that did not
commit leaves no memo that a later state's text is made of."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.normalise import memory, state_text
from services.normalise.fastpath import _remembered
from services.normalise.stage import _state_text
from services.runtime.state import ChangelogStore
from testkit.normalise_histories import STEP, T0, unusual
from testkit.normalise_histories import histories as random_histories

JSON = json.JSONEncoder(separators=(",", ":"))

odd_values = st.sampled_from(
    [float("nan"), float("inf"), float("-inf"), -0.0, 0.0, 10**30, -(10**20), 1e16, 5e-324]
)
values = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(-(10**25), 10**25)
    | odd_values
    | st.just(0.1)
)
gaps = st.sampled_from([STEP] * 6 + [2 * STEP, 7 * STEP, 1, 3 * STEP + 5, 50 * STEP])


def histories() -> st.SearchStrategy[tuple[Any, list[tuple[str, int, Any]]]]:
    return random_histories(values, gaps, longest=60, nexts=8)


def following(state: dict[str, Any] | None, kind: str, t: int, value: Any, rules: Any) -> Any:
    """The state after one step, as normalise computes it (None: nothing to do)."""
    if kind == "next":
        if state is not None and "hwm" in state and t <= state["hwm"]:
            return None
        norm = SimpleNamespace(window_us=rules.window_us, max_runs=rules.max_runs)
        return _remembered(state, t, value, norm, rules.horizon_us)  # type: ignore[arg-type]
    if state is None or "hwm" not in state:
        return None
    return unusual(state, kind, t, value, rules)


@settings(max_examples=300, deadline=None)
@given(histories())
def test_each_state_text_is_json_text(case: Any) -> None:
    rules, steps = case
    state, memo = None, None
    for kind, t, value in steps:
        new = following(state, kind, t, value, rules)
        if new is None:
            continue
        text, memo = state_text.encode(new, memo)
        assert text == JSON.encode(new)
        state = new


@settings(max_examples=200, deadline=None)
@given(histories(), st.lists(st.sampled_from(["commit", "rollback", "abort", "keep"]), min_size=1))
def test_texts_through_the_store_savepoints_and_transactions_are_json_text(
    case: Any, outcomes: list[str]
) -> None:
    """Steps through a ChangelogStore as the stage writes them (the memo of the
    value get returns), each record kept, rolled back, or its batch aborted or
    committed: every text written is json's, and after a rollback or an abort the
    memo is the one of the value the store went back to."""
    rules, steps = case
    store = ChangelogStore("normalise", "normalise.state.v1")
    key = "paris|e1|active_energy_import"
    committed: tuple[Any, Any] = (None, None)  # (state, memo) as the test expects them
    for k, (kind, t, value) in enumerate(steps):
        before = (store.get(key), store.memo(key))
        store.begin_record()
        new = following(before[0], kind, t, value, rules)
        if new is None:
            continue
        text, memo = state_text.encode(new, store.memo(key))
        store.put(key, new, 0, text=text, memo=memo)
        (emit,) = store.changelog_emits()  # per-key records: this key's, with its text
        assert emit.value["value"] == JSON.encode(new)
        outcome = outcomes[k % len(outcomes)]
        expected = (new, memo)
        if outcome == "rollback":
            store.rollback_record()
            expected = before
        elif outcome == "abort":
            store.abort()
            expected = committed
        elif outcome == "commit":
            store.commit()
            committed = expected
        assert store.get(key) is expected[0] and store.memo(key) is expected[1]


def steady(n: int, horizon: int = 10 * STEP) -> tuple[dict[str, Any], Any]:
    """A sensor's state after ``n`` readings, and the memo kept beside it."""
    state, memo = None, None
    norm = SimpleNamespace(window_us=memory.WINDOW_US, max_runs=memory.MAX_RUNS)
    for k in range(n):
        state = _remembered(state, T0 + k * STEP, 1.0 + k / 8, norm, horizon)  # type: ignore[arg-type]
        _, memo = state_text.encode(state, memo)
    return state, memo  # type: ignore[return-value]


def test_the_next_reading_reuses_the_previous_text() -> None:
    """The kept values' text is the memo's (a wrong text planted in it shows up),
    cut by the value the horizon dropped, the new value appended."""
    state, memo = steady(30)
    (segment,) = memo
    planted = ",".join(f"{k}" for k in range(segment.count))  # not the values' text
    fake = (
        state_text.SegmentText(segment.begin, segment.step, segment.values, segment.count, planted),
    )
    norm = SimpleNamespace(window_us=memory.WINDOW_US, max_runs=memory.MAX_RUNS)
    new = _remembered(state, T0 + 30 * STEP, 2.5, norm, 10 * STEP)  # type: ignore[arg-type]
    text, _ = state_text.encode(new, fake)
    assert f'"vals":[[{T0 + 20 * STEP},{STEP},[1,2,3,4,5,6,7,8,9,10,2.5]]]' in text
    assert state_text.encode(new, memo)[0] == JSON.encode(new)


def test_a_rolled_back_or_aborted_write_leaves_no_memo_for_the_next_text() -> None:
    store = ChangelogStore("normalise", "normalise.state.v1")
    state, memo = steady(30)
    store.put("k", state, 3, text=JSON.encode(state), memo=memo)
    store.commit()
    norm = SimpleNamespace(window_us=memory.WINDOW_US, max_runs=memory.MAX_RUNS)
    for undo in (store.rollback_record, store.abort):
        store.begin_record()
        written = _remembered(state, T0 + 30 * STEP, 7.0, norm, 10 * STEP)  # type: ignore[arg-type]
        text, wrote = state_text.encode(written, store.memo("k"))
        store.put("k", written, 3, text=text, memo=wrote)
        assert store.memo("k") is wrote
        undo()
        assert store.get("k") is state and store.memo("k") is memo
        again = _remembered(state, T0 + 30 * STEP, 8.0, norm, 10 * STEP)  # type: ignore[arg-type]
        assert state_text.encode(again, store.memo("k"))[0] == JSON.encode(again)


def test_a_memo_goes_with_its_key_deleted_forgotten_or_restored() -> None:
    store = ChangelogStore("normalise", "normalise.state.v1")
    state, memo = steady(5)
    for key, partition in (("a", 0), ("b", 1), ("c", 1)):
        store.put(key, state, partition, text=JSON.encode(state), memo=memo)
    store.commit()
    store.delete("a", 0)
    assert store.memo("a") is None
    store.commit()
    store.forget([1])
    assert store.memo("b") is None and store.get("b") is None
    store.put("b", state, 0, text=JSON.encode(state), memo=memo)
    store.commit()
    store.apply({"store": "normalise", "key": "b", "value": JSON.encode(state)}, 0)
    assert store.memo("b") is None and store.get("b") == state  # restored: no memo
    text, _ = state_text.encode(store.get("b"), store.memo("b"))
    assert text == JSON.encode(state)


def test_a_put_without_text_writes_json_text() -> None:
    store = ChangelogStore("s", "s.state.v1")
    store.put("k", {"x": [1.5, float("nan")]}, 0)
    (emit,) = store.changelog_emits()
    assert emit.value["value"] == '{"x":[1.5,NaN]}' and store.memo("k") is None


def test_any_other_shape_is_json_text() -> None:
    nan = float("nan")
    for state in (
        {"vals": [[1, 2, [nan, -0.0, float("inf"), 10**40]]]},
        {"vals": [[1.0, 2, [1.5]], (3, 4, [5]), [1, 2, "x"], [1, 2, [True, "a,b", None]]]},
        {"runs": [], "vals": None},
        {"vals": [], "tail": [1, ['"vals":0']], "x": {"vals": 0.5}},
        {1: 2, "vals": []},
        [1, 2],
        {"vals": [[True, False, [1]]]},
    ):
        text, memo = state_text.encode(state, None)
        assert text == JSON.encode(state)
        assert state_text.encode(state, memo)[0] == JSON.encode(state)
        assert state_text.encode(state, "not a memo")[0] == JSON.encode(state)


def test_a_state_carried_forward_by_a_delta_is_its_json_text_made_from_its_memo() -> None:
    """A delta carries a kept state forward (changelog_deltas.py) with the text its
    memo makes: json's text of the state, and the memo's (a planted text shows)."""
    state, memo = steady(30)
    (segment,) = memo
    planted = ",".join(f"{k}" for k in range(segment.count))
    fake = (
        state_text.SegmentText(segment.begin, segment.step, segment.values, segment.count, planted),
    )
    for kept, expected in ((memo, '"k":' + JSON.encode(state)), (fake, planted)):
        store = ChangelogStore("normalise", "normalise.state.v1", deltas=True, text_of=_state_text)
        store.put("k", state, 0, text=JSON.encode(state), memo=kept)
        store.changelog_emits()
        store.commit()
        store.put("other", {"reg": [1, 2.0]}, 0)  # the next batch carries "k" forward
        delta, tombstone = store.changelog_emits()  # k carried: the first delta may go
        assert expected in delta.value["value"] and tombstone.value is None


ints = st.integers(-(10**20), 10**20) | st.sampled_from([0, 1, -1, T0])


@settings(max_examples=300, deadline=None)
@given(ints, ints, ints, values | st.booleans())
def test_an_entitys_first_state_written_straight_is_json_text(
    t: int, step: int, count: int, value: Any
) -> None:
    """The text of a first state (one reading), written without json, is json's,
    whatever the time, the value (NaN, infinities, -0.0, large integers, a bool)
    and the run; no memo goes with it, and the next state's text is json's too."""
    first = {"runs": [[t, step, count]], "hwm": t, "vals": [[t, step, [value]]]}
    text, memo = state_text.encode(first, None)
    assert text == JSON.encode(first) and memo is None
    following = {"runs": [[t, 1, 2]], "hwm": t + 1, "vals": [[t, 1, [value, 2.5]]]}
    assert state_text.encode(following, memo)[0] == JSON.encode(following)


def test_a_state_close_to_a_first_one_is_json_text() -> None:
    """Shapes the straight writer must leave to json: other key orders or keys, a
    tuple, a bool or float where an int goes, two values, a value of another type."""
    t = T0
    for state in (
        {"hwm": t, "runs": [[t, 0, 1]], "vals": [[t, 0, [1.5]]]},
        {"runs": [[t, 0, 1]], "hwm": t, "vals": [[t, 0, [1.5]]], "floor": 3},
        {"runs": [[t, 0, 1]], "hwm": t},
        {"runs": [(t, 0, 1)], "hwm": t, "vals": [[t, 0, [1.5]]]},
        {"runs": [[t, 0, 1]], "hwm": t, "vals": [(t, 0, [1.5])]},
        {"runs": [[t, 0, 1]], "hwm": t, "vals": [[t, 0, (1.5,)]]},
        {"runs": [[t, False, 1]], "hwm": t, "vals": [[t, 0, [1.5]]]},
        {"runs": [[t, 0, 1]], "hwm": float(t), "vals": [[t, 0, [1.5]]]},
        {"runs": [[t, 0, 1]], "hwm": t, "vals": [[t, True, [1.5]]]},
        {"runs": [[t, 0, 1]], "hwm": t, "vals": [[t, 0, [1.5, 2.5]]]},
        {"runs": [[t, 0, 1]], "hwm": t, "vals": [[t, 0, []]]},
        {"runs": [[t, 0, 1]], "hwm": t, "vals": [[t, 0, ["1.5"]]]},
        {"runs": [[t, 0, 1]], "hwm": t, "vals": [[t, 0, [None]]]},
        {"runs": [[t, 0, 1], [t, 0, 1]], "hwm": t, "vals": [[t, 0, [1.5]]]},
        {"runs": [[t, 0]], "hwm": t, "vals": [[t, 0, [1.5]]]},
        {"runs": [[t, 0, 1]], "hwm": t, "vals": [[t, 0, [1.5]], [t, 0, [1.5]]]},
        {"runs": [[t, 0, 1]], "hwm": t, "vals": [[t, 0, [{"a": 1}]]]},
    ):
        text, memo = state_text.encode(state, None)
        assert text == JSON.encode(state)
        assert state_text.encode(state, memo)[0] == JSON.encode(state)
