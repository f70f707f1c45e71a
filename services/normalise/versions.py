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
the horizon as segments ``[[start_us, step_us, [value...]], ...]``, and ``vver``
``{"µs": version}`` for the corrected times only. Cumulative registers are not versioned (a register
read again earlier is stale: see ``Normaliser._differences``).
"""

from __future__ import annotations

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
    segments = state.get("vals")
    if not segments:
        return {}
    corrected = state.get("vver") or {}
    out = {}
    for begin, step, values in segments:
        for k, value in enumerate(values):
            t = begin + k * step
            out[t] = (value, corrected.get(str(t), 0))
    return out


def remember(
    state: dict[str, Any],
    times: list[int],
    values: list[float],
    *,
    horizon_us: int,
    corrected: dict[int, int] | None = None,
) -> dict[str, Any]:
    """``state`` (already updated by :func:`memory.remember`) keeping these values
    (sorted times), with the versions of ``corrected`` times; values older than the
    horizon before the state's latest time are forgotten.

    Kept as segments ``[start_us, step_us, [values]]`` of evenly spaced times (a
    day of 10-minute readings is one segment): the state is rewritten to the
    changelog with every batch, so it holds no time it can compute."""
    if "hwm" not in state:
        return state
    segments = _with_values(state, times, values, corrected)
    limit = state["hwm"] - horizon_us
    if segments and segments[0][0] < limit:  # (else nothing is older: no call)
        segments = _within(segments, limit)
    new = {**state, "vals": segments}
    versions = dict(state.get("vver") or {})
    for t, version in (corrected or {}).items():
        versions[str(t)] = version
    first = segments[0][0] if segments else None
    versions = {t: n for t, n in versions.items() if first is not None and int(t) >= first}
    if versions:
        new["vver"] = versions
    else:
        new.pop("vver", None)
    return new


def remember_next(
    state: dict[str, Any], t: int, value: float, *, horizon_us: int
) -> dict[str, Any] | None:
    """``remember(state, [t], [value])`` for the usual reading of a stream: one time
    after every kept value, none corrected. Appends to the last segment without
    rebuilding the others (a day of single readings rewrites the state with each
    reading, so its per-reading price matters). None when the state is not the usual
    one: the caller uses :func:`remember`, which decides every case."""
    hwm = state.get("hwm")
    segments = state.get("vals")
    if hwm is None or not segments or "vver" in state:
        return None
    begin, step, kept = segments[-1]
    if not kept or t <= begin + step * (len(kept) - 1):
        return None
    if len(kept) == 1:
        step = t - begin
    out = [list(segment) for segment in segments[:-1]]
    if step and t == begin + step * len(kept):
        out.append([begin, step, [*kept, value]])
    else:
        out += [[begin, step, list(kept)], [t, 0, [value]]]
    limit = hwm - horizon_us
    if out[0][0] < limit:
        out = _within(out, limit)
    return {**state, "vals": out}


def _with_values(
    state: dict[str, Any], times: list[int], values: list[float], corrected: dict[int, int] | None
) -> list[list]:
    """The state's segments (copies) with these values: appended when they all come
    after them (the usual case), else merged in time order (a correction or a gap)."""
    segments = [list(segment) for segment in state.get("vals") or []]
    last = segments[-1] if segments else None
    if times and last is not None and times[0] > _end(last) and not corrected:
        segments[-1] = last = [last[0], last[1], list(last[2])]
        _extend(segments, times, values)
    elif times:
        merged = _kept(state)
        for t, v in zip(times, values, strict=True):
            merged[t] = (v, 0)
        segments = []
        _extend(segments, sorted(merged), [merged[t][0] for t in sorted(merged)])
    return segments


def _within(segments: list[list], limit: int) -> list[list]:
    """The segments without the values older than ``limit`` (the first one cut)."""
    while segments and _end(segments[0]) < limit:
        segments.pop(0)
    if segments and segments[0][0] < limit:
        begin, step, kept = segments[0]
        skip = -(-(limit - begin) // step)
        segments[0] = [begin + skip * step, step, kept[skip:]]
    return segments


def _end(segment: list) -> int:
    begin, step, values = segment
    return begin + step * (len(values) - 1)


def _extend(segments: list[list], times: list[int], values: list[float]) -> None:
    """Append sorted readings to the segments, continuing the last where evenly
    spaced (a regular run is appended at once: the usual case)."""
    i, n = 0, len(times)
    while i < n:
        t = times[i]
        last = segments[-1] if segments else None
        if last is not None:
            begin, step, kept = last
            if len(kept) == 1 and t > begin:
                step = last[1] = t - begin
            if step and t == begin + step * len(kept):
                j = _run_end(times, i, step)
                kept.extend(values[i:j])
                i = j
                continue
        segments.append([t, 0, [values[i]]])
        i += 1


def _run_end(times: list[int], i: int, step: int) -> int:
    """End (exclusive) of the run of ``times`` from ``i`` spaced by ``step``."""
    n = len(times)
    if times[-1] - times[i] == step * (n - 1 - i) and times[i:] == list(
        range(times[i], times[-1] + 1, step)
    ):
        return n
    j = i + 1
    while j < n and times[j] == times[j - 1] + step:
        j += 1
    return j
