"""What normalise remembers per entity and metric, to difference registers and to
drop duplicates. Pure functions over one small JSON document per key
``city|entity_pseudonym|metric`` (kept in a ChangelogStore, so it survives restarts
and moves with its partition):

``reg``  ``[t_us, value]``: the last cumulative register reading, in the metric's
         canonical unit (cumulative measures only). A reading at or before it is
         stale (a replay, or out of order) and dropped: an interval already
         published is never split or counted twice.
``runs`` ``[[start_us, step_us, count], ...]``: the times already published, as
         runs of evenly spaced points (a day of 10-minute readings is one run).
         A point inside a run is a duplicate and dropped.
``hwm``  the latest published time; ``floor``: times below it can no longer be
         checked (forgotten runs) and are dropped as too late.
``tail`` ``[t_us, [lineage ids]]``: for coarsened records (anonymise summed rows
         per bucket), the batches that already gave the latest bucket: a bucket
         split over two batches is published twice (two partial sums that
         downstream sums add up), a replayed batch is not.

Retention: runs that end more than ``window_us`` (35 days by default) before
``hwm`` are forgotten, and at most ``max_runs`` (64) are kept (the oldest go
first); either raises ``floor``. So duplicates are caught for 35 days back from
the newest reading, late data filling a gap is accepted within that window, and
anything older is dropped and counted (``too-late``), never double counted.
Entities are keyed by pseudonym: a key rotation starts them afresh (the first
reading of a register after rotation gives no interval).
"""

from __future__ import annotations

from bisect import insort
from typing import Any

DAY_US = 86_400_000_000
WINDOW_US = 35 * DAY_US
MAX_RUNS = 64


def register(state: dict[str, Any] | None) -> tuple[int, float] | None:
    reg = state.get("reg") if state else None
    return (reg[0], reg[1]) if reg else None


def seen(
    state: dict[str, Any] | None, times: list[int], *, lineage: str | None = None
) -> tuple[list[bool], int]:
    """Per time: already published (or too late to check)? and how many were too late.

    ``lineage``: the record is coarsened (anonymise summed its rows per bucket), so
    its first bucket may continue the last published one (a bucket whose rows came
    in two batches): that bucket is new unless this batch (lineage) already gave it.
    """
    if not state or "hwm" not in state:
        return [False] * len(times), 0
    hwm, floor = state["hwm"], state.get("floor")
    if times and times[0] > hwm and lineage is None:  # sorted: all new (the usual case)
        return [False] * len(times), 0
    runs = state.get("runs") or []
    tail = state.get("tail")
    out = []
    late = 0
    for t in times:
        if t > hwm:
            out.append(False)
        elif lineage is not None and tail and t == tail[0] == hwm:
            out.append(lineage in tail[1])
        elif floor is not None and t < floor:
            out.append(True)
            late += 1
        else:
            out.append(any(_in_run(run, t) for run in runs))
    return out, late


def _in_run(run: list[int], t: int) -> bool:
    start, step, count = run
    if t < start:
        return False
    if step == 0:
        return t == start
    offset = t - start
    return offset % step == 0 and offset // step < count


def remember(
    state: dict[str, Any] | None,
    times: list[int],
    *,
    register: tuple[int, float] | None = None,
    lineage: str | None = None,
    window_us: int = WINDOW_US,
    max_runs: int = MAX_RUNS,
) -> dict[str, Any]:
    """A new state with ``times`` (sorted, new) published and the register updated;
    ``lineage`` as in :func:`seen` (remembered for the last bucket, at most 16)."""
    new: dict[str, Any] = dict(state) if state else {}
    runs = [list(r) for r in new.get("runs") or []]
    if lineage is not None and times:
        new["tail"] = _tail(new.get("tail"), times, lineage)
    elif times:
        new.pop("tail", None)
    hwm = _publish(runs, new.get("hwm"), times)
    if register is not None:
        new["reg"] = [register[0], register[1]]
    if hwm is None:
        return new
    kept, floor = _retain(runs, new.get("floor"), hwm - window_us, max_runs)
    new["runs"] = kept
    new["hwm"] = hwm
    if floor is not None:
        new["floor"] = floor
    return new


def remember_next(
    state: dict[str, Any], t: int, *, window_us: int = WINDOW_US, max_runs: int = MAX_RUNS
) -> dict[str, Any] | None:
    """``remember(state, [t])`` for the usual reading of a stream, one new time after
    everything published, without the general merge: a state of single readings is
    rewritten with every reading, so its per-reading price matters. None when the
    state is not the usual one (no time published yet, a coarsened tail): the caller
    uses :func:`remember`, which decides every case."""
    hwm = state.get("hwm")
    runs = state.get("runs")
    if hwm is None or not runs or "tail" in state or t <= hwm:
        return None
    copies = [list(run) for run in runs]  # as remember: the stored runs stay as they are
    _add_points(copies, _last_run(copies, hwm), hwm, [t])
    kept, floor = _retain(copies, state.get("floor"), t - window_us, max_runs)
    new = dict(state)
    new["runs"] = kept
    new["hwm"] = t
    if floor is not None:
        new["floor"] = floor
    return new


def _tail(tail: list | None, times: list[int], lineage: str) -> list:
    """The latest bucket and the batches that gave it (the last 16), once ``times``
    (not empty) of a coarsened record are published."""
    if tail and tail[0] == times[-1]:
        return [tail[0], [*tail[1][-15:], lineage]]
    return [times[-1], [lineage]]


def _publish(runs: list[list[int]], hwm: int | None, times: list[int]) -> int | None:
    """Add ``times`` to ``runs`` (remember's own copies, changed in place: a run is
    extended where it is) and return the new latest published time."""
    last = _last_run(runs, hwm)
    if times and (hwm is None or times[0] > hwm) and last is None:
        last = [times[0], 0, 1]
        runs.append(last)
        hwm, times = times[0], times[1:]
    if not times:
        return hwm
    if times[0] > hwm and len(times) > 2 and _extend_regular(last, times):
        return last[0] + last[1] * (last[2] - 1)
    return _add_points(runs, last, hwm, times)


def _extend_regular(last: list[int], times: list[int]) -> bool:
    """The usual case: a regular series continuing the last run, which is extended
    at once (compared in C); False: not one, the points are added one by one."""
    start, step, count = last
    if count == 1:
        step = times[0] - start
    n = len(times)
    if (
        step > 0
        and times[0] == start + step * count
        and times[-1] == times[0] + step * (n - 1)
        and times == list(range(times[0], times[-1] + 1, step))
    ):
        last[1], last[2] = step, count + n
        return True
    return False


def _add_points(
    runs: list[list[int]], last: list[int] | None, hwm: int | None, times: list[int]
) -> int | None:
    """Add the points one by one: a point after ``hwm`` continues the last run or
    starts one; an earlier one (late data filling a gap) is a run of its own."""
    for t in times:
        if hwm is None or t > hwm:
            if last is not None:
                start, step, count = last
                if count == 1:
                    last[1] = t - start
                    last[2] = 2
                    hwm = t
                    continue
                if t == start + step * count:
                    last[2] = count + 1
                    hwm = t
                    continue
            last = [t, 0, 1]
            runs.append(last)
            hwm = t
        elif t != hwm:  # (t == hwm: a coarsened bucket continued, already in a run)
            insort(runs, [t, 0, 1])
    return hwm


def _retain(
    runs: list[list[int]], floor: int | None, horizon: int, max_runs: int
) -> tuple[list[list[int]], int | None]:
    """The runs kept (sorted) and the new floor: runs ending before ``horizon`` are
    forgotten, then the oldest beyond ``max_runs``; either raises the floor."""
    kept = []
    for run in runs:
        end = run[0] + run[1] * (run[2] - 1)  # _end(run), inline: up to 64 runs a call
        if end < horizon:
            floor = max(floor or 0, end + 1)
        else:
            kept.append(run)
    kept.sort()
    while len(kept) > max_runs:
        oldest = min(kept, key=_end)
        kept.remove(oldest)
        floor = max(floor or 0, _end(oldest) + 1)
    return kept, floor


def _end(run: list[int]) -> int:
    return run[0] + run[1] * (run[2] - 1)


def _last_run(runs: list[list[int]], hwm: int | None) -> list[int] | None:
    if hwm is None:
        return None
    for run in reversed(runs):
        if _end(run) == hwm:
            return run
    return None
