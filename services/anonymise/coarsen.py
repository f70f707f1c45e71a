"""Load curves to a coarser step when the source does not declare consent.

A load curve finer than a day is personal data (it shows when people are at
home); without consent the policy sums (energy) or averages (power) its rows per
bucket of the declared step, column-wise:

- ``sum`` fields: sum of the bucket's present values (missing if none);
- ``mean`` fields: mean of the present values;
- ``set`` fields: a constant (the new interval length, ``PT1H`` or ``60``);
- every other kept field: the bucket's first present value (zone, sector, the
  pseudonym, a cumulative index at the start of the bucket, the time text);
- a ``coarsened_rows`` column says how many input rows each bucket holds, and
  the record's ``event_times`` become the bucket starts (UTC).

Buckets are local days of the city for ``P1D``, UTC-aligned divisors of an hour
otherwise (equal to local alignment in whole-hour zones). Coarsening works on
one message: a bucket whose rows arrive in two messages yields two partial
rows, each with its ``coarsened_rows``, which summing downstream combines.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from services.anonymise import columns
from services.anonymise.generalise import bucket_starts
from services.anonymise.policy import COARSENED_ROWS, Coarsening

Column = dict[str, Any]


class CoarseningError(ValueError):
    """A record that cannot be coarsened (no time for a row, a non-numeric sum)."""


def groups_of(starts: list[int]) -> tuple[list[int], list[list[int]]]:
    """Bucket starts in time order, and the row positions of each bucket."""
    ordered = all(a <= b for a, b in pairwise(starts))
    keys: list[int] = []
    members: list[list[int]] = []
    if ordered:
        previous = None
        for i, start in enumerate(starts):
            if start != previous:
                keys.append(start)
                members.append([])
                previous = start
            members[-1].append(i)
        return keys, members
    by_start: dict[int, list[int]] = {}
    for i, start in enumerate(starts):
        by_start.setdefault(start, []).append(i)
    keys = sorted(by_start)
    return keys, [by_start[k] for k in keys]


def _aggregate(column: Column, members: list[list[int]], mean: bool) -> Column:
    kind = column["kind"]
    if len(column["missing"]) == len(columns.typed(column)):  # no value at all: any kind
        return columns.make(column["name"], "double", [0.0] * len(members), range(len(members)))
    if kind not in ("double", "long"):
        raise CoarseningError(
            f"field {column['name']!r} is not numeric ({kind}): it cannot be aggregated"
        )
    values = columns.typed(column)
    absent = set(column["missing"])
    out: list[Any] = []
    gone: list[int] = []
    for g, rows in enumerate(members):
        present = (
            [values[i] for i in rows if i not in absent] if absent else [values[i] for i in rows]
        )
        if not present:
            out.append(0.0 if mean or kind == "double" else 0)
            gone.append(g)
        elif mean:
            out.append(sum(present) / len(present))
        else:
            out.append(sum(present))
    return columns.make(column["name"], "double" if mean else kind, out, gone)


def _first(column: Column, members: list[list[int]]) -> Column:
    kind = column["kind"]
    values = columns.typed(column)
    absent = set(column["missing"])
    out: list[Any] = []
    gone: list[int] = []
    for g, rows in enumerate(members):
        position = next((i for i in rows if i not in absent), None) if absent else rows[0]
        if position is None:
            out.append(columns.PLACEHOLDER[kind])
            gone.append(g)
        else:
            out.append(values[position])
    return columns.make(column["name"], kind, out, gone)


def _constant(name: str, value: str | int | float, count: int) -> Column:
    if isinstance(value, str):
        return columns.make(name, "string", [value] * count)
    if isinstance(value, int):
        return columns.make(name, "long", [value] * count)
    return columns.make(name, "double", [float(value)] * count)


def coarsen(
    output: list[Column], times_us: list[int | None], coarsening: Coarsening, timezone: str
) -> tuple[list[Column], list[int], int]:
    """(columns, bucket starts, bucket count) of an anonymised record's columns."""
    if any(t is None for t in times_us):
        missing = sum(t is None for t in times_us)
        raise CoarseningError(f"{missing} of {len(times_us)} rows have no readable time")
    starts = bucket_starts(times_us, coarsening.seconds, timezone)
    keys, members = groups_of(starts)  # type: ignore[arg-type]
    summed, averaged = set(coarsening.sum), set(coarsening.mean)
    result: list[Column] = []
    for column in output:
        name = column["name"]
        if len(columns.typed(column)) != len(times_us):
            raise CoarseningError(f"field {name!r} does not have one value per row")
        if name in coarsening.set:
            result.append(_constant(name, coarsening.set[name], len(keys)))
        elif name in summed or name in averaged:
            result.append(_aggregate(column, members, mean=name in averaged))
        else:
            result.append(_first(column, members))
    result.append(columns.make(COARSENED_ROWS, "long", [len(rows) for rows in members]))
    return result, keys, len(keys)
