"""Daily coarsening across messages: the pure state of one entity's local day.

A load curve finer than a day is personal data; without consent a source's rows
are folded per entity and local day, whatever the message boundaries: one
message per reading, one per hour, a day split over two batches, or a whole
month in one message all give the same one row per entity-day. This module is
the pure part (no Kafka): split a record's rows by local day, merge a day's
rows (policy already applied) into a small JSON document, and turn that
document into the daily AnonymisedRecord once the day is closed.

The document of an entity-day (JSON, kept in a changelog-backed store)::

    {"h": {...record header: pseudonym, type, dataset, format, lineage, epoch...},
     "o": [column names in first-seen order],
     "t": [distinct reading times, sorted],            # coarsened_rows = len(t)
     "a": {name: {"k": kind, "v": {time: value}}},     # sum and mean fields
     "f": {name: [time, kind, value]},                 # every other kept field
     "s": [set fields seen]}

Readings are keyed by their time: a reading sent twice (an HTTP retry, a
replayed batch) or corrected within the open day replaces the first, it is
never added twice. ``sum`` fields add the present values of the day, ``mean``
fields average them, ``set`` fields become their constant, and every other kept
field keeps its earliest present value of the day: for a cumulative register
(``registers``) that is the index at the start of the day, so the difference of
two days' values is the day's consumption and nothing finer (a last index of
the day too would let anyone subtract it from the next day's first and get the
last interval of the day: it is never kept).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from services.anonymise import columns
from services.anonymise.generalise import bucket_starts
from services.anonymise.policy import COARSENED_ATTRIBUTE, COARSENED_ROWS, Coarsening
from services.privacy.keys import epoch_of

Column = dict[str, Any]
DAY_S = 86_400
_US = 1_000_000
_NUMERIC = ("double", "long")


class DayCoarseningError(ValueError):
    """Rows that cannot be folded into a day (a text in a summed field). Messages
    name fields, never values."""


def rows_by_day(times_us: list[int], timezone: str) -> dict[int, list[int]]:
    """Row positions of each local day (keyed by the day's start, UTC µs), in time order."""
    if not times_us:
        return {}
    low, high = bucket_starts([min(times_us), max(times_us)], DAY_S, timezone)
    if low == high:  # the usual case, a message within one day: no per-row work
        return {low: list(range(len(times_us)))}  # type: ignore[dict-item]
    out: dict[int, list[int]] = {}
    for i, start in enumerate(bucket_starts(times_us, DAY_S, timezone)):  # type: ignore[arg-type]
        out.setdefault(start, []).append(i)  # type: ignore[arg-type]
    return dict(sorted(out.items()))


@lru_cache(maxsize=4096)
def day_end(day_start_us: int, timezone: str) -> int:
    """The end of the local day that starts at ``day_start_us`` (23, 24 or 25 hours later)."""
    zone = ZoneInfo(timezone)
    local = datetime.fromtimestamp(day_start_us / _US, UTC).astimezone(zone).date()
    midnight = datetime.combine(local + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    return int(midnight.timestamp()) * _US


def epoch_of_day(day_start_us: int, timezone: str) -> str:
    """The key epoch of a daily record: the local month of the day's middle, as
    epochs.py picks for a coarsened bucket on the per-message path (the month of
    the local day itself, whatever month its start is in UTC)."""
    return epoch_of(day_start_us + 12 * 3600 * _US, timezone)


def subset(record: Mapping[str, Any], rows: list[int]) -> dict[str, Any]:
    """The RawRecord restricted to ``rows`` (positions in order), column-wise."""
    if len(rows) == record["row_count"]:
        return dict(record)
    position = {old: new for new, old in enumerate(rows)}
    out_columns = []
    for column in record["columns"]:
        values = columns.typed(column)
        picked = [values[i] for i in rows]
        missing = [position[i] for i in column["missing"] if i in position]
        out_columns.append(columns.make(column["name"], column["kind"], picked, missing))
    times = record.get("event_times") or []
    return {
        **record,
        "row_count": len(rows),
        "event_times": [times[i] for i in rows] if times else [],
        "columns": out_columns,
    }


def header(
    *,
    pseudonym: str,
    entity_type: str | None,
    record: Mapping[str, Any],
    epoch: str,
    policy_version: str,
    attributes: Mapping[str, str],
) -> dict[str, Any]:
    """What the daily record takes from the messages besides the columns."""
    return {
        "e": pseudonym,
        "ty": entity_type,
        "ds": record["dataset"],
        "fm": record["format"],
        "ln": record["lineage_id"],
        "ra": record["received_at"],
        "ep": epoch,
        "pv": policy_version,
        "at": dict(attributes),
    }


def merge(
    state: dict[str, Any] | None,
    head: dict[str, Any],
    out_columns: list[Column],
    times_us: list[int],
    coarsening: Coarsening,
) -> dict[str, Any]:
    """A new document with the day's rows ``out_columns`` (policy applied, one value per
    time in ``times_us``) merged in; ``state`` is not modified."""
    doc = _opened(state, head)
    aggregated = set(coarsening.sum) | set(coarsening.mean)
    keys = [str(t) for t in times_us]
    earliest = _earliest_row(times_us)
    for column in out_columns:
        name = column["name"]
        if len(columns.typed(column)) != len(times_us):
            raise DayCoarseningError(f"field {name!r} does not have one value per row")
        if name not in doc["o"]:
            doc["o"].append(name)
        if name in coarsening.set:
            if name not in doc["s"]:
                doc["s"].append(name)
        elif name in aggregated:
            doc["a"][name] = _merge_values(doc["a"].get(name), column, keys)
        else:
            doc["f"][name] = _merge_first(doc["f"].get(name), column, times_us, earliest)
    if times_us:
        known = doc["t"]
        doc["t"] = sorted(set(known).union(times_us)) if known else sorted(set(times_us))
    return doc


def _opened(state: dict[str, Any] | None, head: dict[str, Any]) -> dict[str, Any]:
    """The day's document to merge into: a new one, or a copy of ``state`` whose
    header keeps the first message's fields but the latest receipt time, the first
    entity type known and the first value of each attribute."""
    if state is None:
        return {"h": head, "o": [], "t": [], "a": {}, "f": {}, "s": []}
    doc: dict[str, Any] = {
        "h": {**state["h"], "ra": max(state["h"]["ra"], head["ra"])},
        "o": list(state["o"]),
        "t": state["t"],
        "a": dict(state["a"]),
        "f": dict(state["f"]),
        "s": list(state["s"]),
    }
    if not doc["h"]["ty"] and head["ty"]:
        doc["h"]["ty"] = head["ty"]
    doc["h"]["at"] = {**head["at"], **state["h"]["at"]}
    return doc


def _earliest_row(times_us: list[int]) -> int | None:
    """The row that holds the day's first value (of equal times, the last: a correction)."""
    if not times_us:
        return None
    first = min(times_us)
    return len(times_us) - 1 - times_us[::-1].index(first)


def _merge_values(old: dict[str, Any] | None, column: Column, keys: list[str]) -> dict[str, Any]:
    kind = column["kind"]
    absent = set(column["missing"])
    values = columns.typed(column)
    if kind not in _NUMERIC and len(absent) < len(values):
        raise DayCoarseningError(
            f"field {column['name']!r} is not numeric ({kind}): it cannot be aggregated"
        )
    merged = dict(old["v"]) if old else {}
    old_kind = old["k"] if old else None
    for i, key in enumerate(keys):
        if i in absent:
            merged.pop(key, None)  # the reading now says: no value at this time
        else:
            merged[key] = values[i]
    if kind not in _NUMERIC:
        new_kind = old_kind or "long"
    elif old_kind == "double" or kind == "double":
        new_kind = "double"
    else:
        new_kind = "long"
    return {"k": new_kind, "v": merged}


def _merge_first(
    old: list[Any] | None, column: Column, times_us: list[int], earliest: int | None
) -> list[Any]:
    absent = set(column["missing"])
    values = columns.typed(column)
    best = old if old is not None else [None, column["kind"], None]
    if not absent and earliest is not None:  # every row has a value: the earliest row's
        t = times_us[earliest]
        return [t, column["kind"], values[earliest]] if best[0] is None or t <= best[0] else best
    for i, t in enumerate(times_us):
        if i in absent:
            continue
        if best[0] is None or t <= best[0]:
            best = [t, column["kind"], values[i]]
    return best


def released(
    doc: Mapping[str, Any],
    *,
    city: str,
    source: str,
    day_start_us: int,
    coarsening: Coarsening,
) -> dict[str, Any]:
    """The day's AnonymisedRecord (avro/AnonymisedRecord.avsc): one row, the same
    columns as per-message coarsening gives (plus ``coarsened_rows``)."""
    head = doc["h"]
    out: list[Column] = []
    means = set(coarsening.mean)
    for name in doc["o"]:
        if name in coarsening.set:
            out.append(_constant(name, coarsening.set[name]))
        elif name in doc["a"]:
            out.append(_aggregate(name, doc["a"][name], mean=name in means))
        else:
            t, kind, value = doc["f"][name]
            if t is None:
                out.append(columns.make(name, kind, [columns.PLACEHOLDER[kind]], [0]))
            else:
                out.append(columns.make(name, kind, [value]))
    out.append(columns.make(COARSENED_ROWS, "long", [len(doc["t"])]))
    return {
        "city": city,
        "source": source,
        "dataset": head["ds"],
        "format": head["fm"],
        "entity_pseudonym": head["e"],
        "entity_type": head["ty"],
        "key_epoch": head["ep"],
        "policy_version": head["pv"],
        "lineage_id": head["ln"],
        "received_at": head["ra"],
        "row_count": 1,
        "event_times": [day_start_us],
        "columns": out,
        "attributes": {**head["at"], COARSENED_ATTRIBUTE: coarsening.step},
    }


def _aggregate(name: str, entry: Mapping[str, Any], *, mean: bool) -> Column:
    present = list(entry["v"].values())
    if not present:
        return columns.make(name, "double", [0.0], [0])
    if mean:
        return columns.make(name, "double", [math.fsum(present) / len(present)])
    if entry["k"] == "long":
        return columns.make(name, "long", [sum(int(v) for v in present)])
    return columns.make(name, "double", [math.fsum(present)])


def _constant(name: str, value: str | int | float) -> Column:
    if isinstance(value, str):
        return columns.make(name, "string", [value])
    if isinstance(value, int):
        return columns.make(name, "long", [value])
    return columns.make(name, "double", [float(value)])
