"""The key epoch of each row, from the reading's own time, and a record split by epoch.

Why not the time a batch was received: meter data is re-sent (provisional, then
corrected) and late, so one day of one meter can arrive in two months. Keyed by
``received_at``, the two deliveries got two pseudonyms, and energy-analytics —
which counts delivery points per cell and day by pseudonym — counted each meter
twice: 5 real delivery points were released as 10, defeating the threshold of 10.
Keyed by the reading's own time, one meter in one day always has one pseudonym,
whenever its readings arrive.

The time of a row is the one the rest of the pipeline will use for it:

- a coarsened source (no consent): the middle of the row's coarsening bucket, so
  every row of a bucket (a local day) shares one epoch and a day is never summed
  under two pseudonyms; the bucket's rows are found from the record's event
  times, else the coarsening's ``time`` field — as coarsening finds them;
- otherwise: the mapping's ``time`` field as normalise reads it (through its
  bucket when the policy generalises it), else the record's event times;
- a row with no readable time: the epoch of ``received_at`` (such a row gets no
  time in normalise either, so it joins no day of energy-analytics; the SDM
  forms normalise dates by reception fall back the same way).

Epochs are months of the city's calendar (:func:`services.privacy.keys.epoch_of`,
in the policy's city time zone) because energy-analytics' days are the city's
local days: a local month is a whole number of local days, so no day of a cell
ever sees a meter under two epochs. (UTC months split the first local day of
every month: in Paris it starts at 22:00 or 23:00 UTC of the previous month, and
a meter's readings of that day carried two pseudonyms, counted as two meters.)
A coarsened bucket (a local day) takes the epoch of its middle, the same month
as its start.

A record whose rows span epochs is split column-wise into one record per epoch
(rows keep their order); the common case — every row in one epoch — costs one
pass to find the earliest and latest time and copies nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.anonymise import columns
from services.anonymise.generalise import bucket_starts
from services.anonymise.policy import Bucket, Policy
from services.privacy.keys import epoch_of
from services.runtime.timeparse import TimeSpec, parse_time_column

US = 1_000_000


def _parsed(record: dict[str, Any], spec: TimeSpec) -> list[int | None] | None:
    """The field's times, or None if the record lacks the field."""
    column = next((c for c in record["columns"] if c["name"] == spec.field), None)
    if column is None:
        return None
    times, _ = parse_time_column(columns.cells(column), spec)
    return times


def _event_times(record: dict[str, Any]) -> list[int | None] | None:
    """The record's event times if it has one per row (the record's own list: read only)."""
    times = record.get("event_times") or []
    return times if len(times) == record["row_count"] and times else None


Times = list[int | None]
ToTime = Callable[[Times], Times]  # raw times -> the times that decide (never decreasing)


def _same(times: Times) -> Times:
    return times


def _bucketed(seconds: int, timezone: str, offset_us: int) -> ToTime:
    def to_time(times: Times) -> Times:
        starts = bucket_starts(times, seconds, timezone)
        return [None if s is None else s + offset_us for s in starts]

    return to_time


def _sources(record: dict[str, Any], policy: Policy) -> tuple[Times, ToTime]:
    """Each row's raw time, and how it becomes the time that decides its epoch."""
    rows = record["row_count"]
    coarsening = policy.coarsening
    if coarsening is not None:  # as coarsening finds its rows; the bucket's middle decides
        times = _event_times(record)
        if times is None and coarsening.time is not None:
            times = _parsed(record, coarsening.time)
        half = coarsening.seconds * US // 2
        to_time = _bucketed(coarsening.seconds, policy.timezone, half)
        return (times if times is not None else [None] * rows), to_time
    spec = policy.reading_time
    events = _event_times(record)
    if spec is None:
        return (events if events is not None else [None] * rows), _same  # no copy
    parsed = _parsed(record, spec)
    if parsed is None:
        return (events if events is not None else [None] * rows), _same
    rule = policy.fields.get(spec.field)
    bucket = rule.generalisation if rule is not None else None
    if isinstance(bucket, Bucket):  # normalise reads the bucket's start
        parsed = bucket_starts(parsed, bucket.seconds, bucket.time.timezone)
    if events is not None and None in parsed:
        parsed = [e if t is None else t for t, e in zip(parsed, events, strict=True)]
    return parsed, _same


def reading_times(record: dict[str, Any], policy: Policy) -> Times:
    """The time (UTC µs) that decides each row's key epoch; None where there is none."""
    times, to_time = _sources(record, policy)
    return to_time(times)


def row_epochs(
    times: Times, received_at: int, to_time: ToTime = _same, *, timezone: str
) -> list[str] | str:
    """Each row's epoch (its month in the city's ``timezone``), or one epoch for
    every row (the usual case, found cheaply: ``to_time`` never decreases, so the
    earliest and latest rows decide)."""
    if None not in times:  # the usual case: one pass for each of min and max
        if not times:
            return epoch_of(received_at, timezone)
        low, high = to_time([min(times), max(times)])  # type: ignore[type-var]
        first = epoch_of(low, timezone)  # type: ignore[arg-type]
        if first == epoch_of(high, timezone):  # type: ignore[arg-type]
            return first
    fallback = epoch_of(received_at, timezone)
    decided = to_time(times)
    present = [t for t in decided if t is not None]
    if not present:
        return fallback
    first, last = epoch_of(min(present), timezone), epoch_of(max(present), timezone)
    if first == last and first == fallback:
        return first
    # epoch_of caches per quarter hour: one calendar look-up per quarter, not per row
    return [fallback if t is None else epoch_of(t, timezone) for t in decided]


def take_rows(record: dict[str, Any], rows: list[int]) -> dict[str, Any]:
    """The record restricted to ``rows``, column by column (a RawRecord still)."""
    events = record.get("event_times") or []
    return {
        **record,
        "row_count": len(rows),
        "event_times": [events[i] for i in rows] if len(events) == record["row_count"] else [],
        "columns": [columns.take(column, rows) for column in record["columns"]],
    }


def split_by_epoch(record: dict[str, Any], policy: Policy) -> list[tuple[str, dict[str, Any]]]:
    """``(epoch, record)`` per key epoch of the record's rows, in epoch order.

    A record with no rows keeps the epoch of its reception.
    """
    times, to_time = _sources(record, policy)
    epochs = row_epochs(times, record["received_at"], to_time, timezone=policy.timezone)
    if isinstance(epochs, str):
        return [(epochs, record)]
    rows_of: dict[str, list[int]] = {}
    for i, epoch in enumerate(epochs):
        rows_of.setdefault(epoch, []).append(i)
    if len(rows_of) == 1:
        return [(epochs[0], record)]
    return [(epoch, take_rows(record, rows_of[epoch])) for epoch in sorted(rows_of)]
