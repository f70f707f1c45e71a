"""Versioned readings: a later value for a published time replaces the first one.

Meter data is corrected after the fact (a provisional value, then a validated
one). Within the source's lateness horizon (``lateness:``, 48 h by default,
counted back from the entity's latest reading: event time, so a replay gives
the same answer), a reading whose time was already published is:

- a *duplicate* when its value is the one published (a retry, a replay): dropped
  and counted, as before;
- a *correction* when its value differs: published again with ``versions`` (1 for
  the first correction, 2 for the next...) and ``replaced`` (the value it
  replaces, kept for audit). Downstream it replaces, never adds:
  energy-analytics keeps one value per meter and time (a correction of a closed
  day is its ``too-late`` dead letter), the warehouse keeps the latest version
  and its rollups count it once (``deploy/clickhouse/015_versioned_readings.sql``).

Beyond the horizon a repeated time is *too late*: not applied, counted, and told
in one ``too-late`` dead letter per record (if it only repeats what was sent,
nothing is lost). Coarsened records (anonymise summed rows per bucket) keep the
bucket rule of :mod:`services.normalise.memory`.

What is kept: ``vals`` in the entity-metric state, the values published within
the horizon, ``{"t": [µs...], "v": [value...], "c": {"µs": version}}`` (``c``
only for corrected times). Cumulative registers are not versioned (a register
read again earlier is stale: see ``Normaliser._differences``).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

from services.normalise import memory


@dataclass
class Verdict:
    """What each reading of a sorted, de-duplicated run is (positions into it)."""

    new: list[int] | None = None  # None: every reading is new (the usual case)
    corrections: list[int] = field(default_factory=list)
    replaced: list[float] = field(default_factory=list)  # per correction
    versions: list[int] = field(default_factory=list)  # per correction
    duplicates: int = 0
    too_late: list[int] = field(default_factory=list)


def sort_out(
    state: dict[str, Any] | None,
    times: list[int],
    values: list[float],
    *,
    horizon_us: int,
    lineage: str | None = None,
) -> Verdict:
    """New readings, corrections, duplicates and late repeats of ``times`` (sorted)."""
    seen, _ = memory.seen(state, times, lineage=lineage)
    if True not in seen:
        return Verdict()
    assert state is not None  # seen something: there is a state
    verdict = Verdict(new=[])
    kept = _kept(state)
    floor = state.get("floor")
    limit = state["hwm"] - horizon_us
    for k, (t, was) in enumerate(zip(times, seen, strict=True)):
        if not was:
            verdict.new.append(k)  # type: ignore[union-attr]
            continue
        if lineage is not None:  # a coarsened bucket: memory's rule
            verdict.duplicates += 1
            continue
        found = kept.get(t)
        if found is not None and found[0] == values[k]:
            verdict.duplicates += 1
        elif t < limit or (floor is not None and t < floor):
            verdict.too_late.append(k)
        elif found is None:  # published by an older state that kept no values
            verdict.duplicates += 1
        else:
            verdict.corrections.append(k)
            verdict.replaced.append(found[0])
            verdict.versions.append(found[1] + 1)
    return verdict


def _kept(state: dict[str, Any]) -> dict[int, tuple[float, int]]:
    vals = state.get("vals")
    if not vals:
        return {}
    corrected = vals.get("c") or {}
    return {t: (v, corrected.get(str(t), 0)) for t, v in zip(vals["t"], vals["v"], strict=True)}


def remember(
    state: dict[str, Any],
    times: list[int],
    values: list[float],
    *,
    horizon_us: int,
    corrected: dict[int, int] | None = None,
) -> dict[str, Any]:
    """``state`` (already updated by :func:`memory.remember`) keeping these values
    (sorted times), with the versions of ``corrected`` times; older than the
    horizon before the state's latest time are forgotten."""
    if "hwm" not in state:
        return state
    vals = state.get("vals") or {"t": [], "v": []}
    old_t, old_v = vals["t"], vals["v"]
    versions = dict(vals.get("c") or {})
    if times and (not old_t or times[0] > old_t[-1]):
        new_t, new_v = old_t + times, old_v + values
    else:
        merged = dict(zip(old_t, old_v, strict=True))
        merged.update(zip(times, values, strict=True))
        new_t = sorted(merged)
        new_v = [merged[t] for t in new_t]
    for t, version in (corrected or {}).items():
        versions[str(t)] = version
    cut = bisect_left(new_t, state["hwm"] - horizon_us)
    if cut:
        new_t, new_v = new_t[cut:], new_v[cut:]
        if versions:
            first = new_t[0] if new_t else None
            versions = {t: n for t, n in versions.items() if first is not None and int(t) >= first}
    kept: dict[str, Any] = {"t": new_t, "v": new_v}
    if versions:
        kept["c"] = versions
    return {**state, "vals": kept}
