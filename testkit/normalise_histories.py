"""Random histories of one entity-metric state for normalise's property tests: the
retention rules drawn from the edges (nothing kept, a few steps, the defaults) and a
sequence of steps, mostly the next reading of the stream, sometimes a correction, a
coarsened bucket or late data filling a gap."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from hypothesis import strategies as st

from services.normalise import memory, versions

STEP = 600_000_000  # 10 minutes, µs
T0 = 1_736_751_600_000_000


def histories(
    values: st.SearchStrategy[Any], gaps: st.SearchStrategy[int], *, longest: int, nexts: int
) -> st.SearchStrategy[tuple[Any, list[tuple[str, int, Any]]]]:
    """(rules, steps): up to ``longest`` steps, ``nexts`` next readings for each one of
    the other three kinds; a next reading comes ``gaps`` after the previous one."""

    @st.composite
    def draw_history(draw: st.DrawFn) -> tuple[Any, list[tuple[str, int, Any]]]:
        rules = SimpleNamespace(
            window_us=draw(st.sampled_from([0, 3 * STEP, 20 * STEP, memory.WINDOW_US])),
            max_runs=draw(st.sampled_from([1, 2, 3, memory.MAX_RUNS])),
            horizon_us=draw(st.sampled_from([0, 2 * STEP, 10 * STEP, 288 * STEP])),
        )
        t = T0
        steps = []
        for _ in range(draw(st.integers(1, longest))):
            kind = draw(st.sampled_from(["next"] * nexts + ["correct", "coarse", "late"]))
            if kind == "next":
                t += draw(gaps)
                steps.append(("next", t, draw(values)))
            else:
                back = draw(st.sampled_from([0, STEP, 3 * STEP]))
                steps.append((kind, t - back, draw(values)))
        return rules, steps

    return draw_history()


def unusual(state: dict[str, Any], kind: str, t: int, value: Any, rules: Any) -> dict[str, Any]:
    """The state after a correction, a coarsened bucket or late data filling a gap, by
    the general rules (the states a next-reading shortcut must decline or keep)."""
    if kind == "correct":
        return versions.remember(state, [t], [value], horizon_us=rules.horizon_us, corrected={t: 1})
    if kind == "coarse":
        return memory.remember(state, [state["hwm"]], lineage="batch-2")
    late = memory.remember(state, [t - 1], window_us=rules.window_us, max_runs=rules.max_runs)
    return versions.remember(late, [t - 1], [value], horizon_us=rules.horizon_us)
