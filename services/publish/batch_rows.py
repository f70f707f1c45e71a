"""observations.v2 batches to warehouse rows without building their members.

A batch message carries the rows of many entities as columns (services/runtime/
batches.py): per-member scalars, dictionary codes, concatenated arrays with their
counts. Exploding it into v1 records only to gather those records' fields back into
columns was the largest part of publish's sink on single readings (every member a
dict of some twenty fields). Here the batches' own arrays become the table's columns;
the rows are exactly those :func:`services.publish.rows.observations_table` makes of
the exploded members (a property test compares the two on random batches).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import chain
from typing import Any

import numpy as np
import pyarrow as pa

from services.publish.rows import TS, Landed, local_day_column
from services.runtime.batches import DICTIONARY

_STRINGS = ("domain", "metric", "unit", "entity_type", "zone", "sector", "carrier")


def observation_batches_table(
    batch: Sequence[Landed], timezones: Mapping[str, str] | None = None
) -> pa.Table:
    """The rows of ``batch``, whose records are whole ObservationBatch messages
    (checked as decoded: their arrays agree), in message then member order.

    The messages' own arrays are laid end to end first and every column is built once
    per insert, not once per message: at single readings a message holds a few dozen
    members, and a table per message (a few dozen pyarrow calls, a time zone look-up)
    cost more than its rows, up to 15 µs a reading against about 1 now
    (bench/publish_batches.py)."""
    cut = _Cut([landed.record for landed in batch])
    index_array = pa.array(cut.reading_member)
    coded = _dictionary(cut)
    times = _times(cut)
    lat, lon = _positions(cut, index_array)
    shared = _shared(batch, pa.array(cut.reading_message))
    return pa.table(
        {
            "city": shared["city"],
            "domain": coded("domain"),
            "metric": coded("metric"),
            "unit": coded("unit"),
            "entity": _filled(
                pa.array(cut.items("entity_pseudonym"), pa.string()).take(index_array)
            ),
            "entity_type": coded("entity_type"),
            "zone": coded("zone"),
            "lat": lat,
            "lon": lon,
            "sector": coded("sector"),
            "carrier": coded("carrier"),
            "ts": pa.array(times // 1000, pa.int64()).cast(TS),
            "local_day": local_day_column(
                [r["city"] for r in cut.records], cut.reading_message, times, timezones or {}
            ),
            "value": pa.array(cut.readings("values", np.float64)),
            "quality": pa.array(_per_reading(cut, "quality", 0, np.uint16)),
            "step_seconds": pa.array(cut.steps[cut.reading_member], pa.uint32()),
            "version": pa.array(_per_reading(cut, "versions", 0, np.uint32)),
            "replaced": pa.array(  # where the member has versions (one per version)
                _per_reading(cut, "replaced", np.nan, np.float64),
                from_pandas=True,  # NaN -> null
            ),
            **shared,  # city again, keeping its place: the table's columns in order
        }
    )


def _positions(cut: _Cut, index: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Each member's position (a GeoPoint or null) as nullable lat and lon per reading."""
    points = cut.items("position")
    lat = [None if p is None else float(p["lat"]) for p in points]
    lon = [None if p is None else float(p["lon"]) for p in points]
    return pa.array(lat, pa.float64()).take(index), pa.array(lon, pa.float64()).take(index)


def _shared(batch: Sequence[Landed], message: pa.Array) -> dict[str, pa.Array]:
    """The columns of what a message's members share, and its Kafka coordinates, per
    reading (``message``: each reading's message); city first, the rest last."""

    def spread(values: list[Any], kind: pa.DataType) -> pa.Array:
        return pa.array(values, kind).take(message)

    records = [landed.record for landed in batch]
    return {
        "city": spread([r["city"] or "" for r in records], pa.string()),
        "source": spread([r["source"] or "" for r in records], pa.string()),
        "dataset": spread([r["dataset"] or "" for r in records], pa.string()),
        "lineage_id": spread([r["lineage_id"] or "" for r in records], pa.string()),
        "_topic": spread([x.topic for x in batch], pa.string()),
        "_partition": spread([x.partition for x in batch], pa.uint16()),
        "_offset": spread([x.offset for x in batch], pa.uint64()),
    }


def check_observation_batch(record: dict[str, Any]) -> None:
    """Refuse (ValueError) a batch whose members cannot become rows: a member's times,
    quality or versions neither empty nor one per value, or its replaced values not
    one per version. The sink calls it as it decodes, so such a message is reported
    as undecodable and never lands, instead of failing the insert at every restart
    (the v1 rows stretched a one-item array over every value, or failed the insert)."""
    counts = None
    for name in ("times", "quality", "versions"):
        if any(record[name + "_counts"]):  # most messages: no member has its own
            if counts is None:
                counts = np.asarray(record["values_counts"], dtype=np.int64)
            _given(record, name, counts)
    if list(record["replaced_counts"]) != list(record["versions_counts"]):
        raise ValueError("an observation's 'replaced' values are not one per version")


class _Cut:
    """An insert's messages laid end to end: their members one after another, and which
    member and message each reading belongs to. A per-member array of the insert is the
    concatenation of its messages' own, each checked to hold one item per member of its
    message, so that a short message can never shift its neighbours' rows."""

    def __init__(self, records: Sequence[dict[str, Any]]):
        self.records = records
        self.members = [len(r["values_counts"]) for r in records]  # per message
        self.counts = self.per_member("values_counts", np.int64)  # values per member
        self.member_message = np.repeat(np.arange(len(records)), self.members)
        self.reading_member = np.repeat(np.arange(len(self.counts)), self.counts)
        self.reading_message = self.member_message[self.reading_member]
        self.steps = self.per_member("step_seconds", np.int64)

    def items(self, name: str) -> list[Any]:
        """Field ``name`` of every member, in order, as a list."""
        lists = [r[name] for r in self.records]
        if [len(x) for x in lists] != self.members:
            raise ValueError(f"batch field {name!r} does not have one item per member")
        return list(chain.from_iterable(lists))

    def per_member(self, name: str, kind: type) -> np.ndarray:
        """Field ``name`` of every member, in order, as an array."""
        return np.asarray(self.items(name), dtype=kind)

    def readings(self, name: str, kind: type) -> np.ndarray:
        """The concatenated items of array field ``name``: ``<name>_counts`` per member,
        checked against each message's own items."""
        own = self.per_member(name + "_counts", np.int64)
        said = np.bincount(self.member_message, weights=own, minlength=len(self.records))
        lists = [r[name] for r in self.records]
        if not np.array_equal(said, [len(x) for x in lists]):
            raise ValueError(f"batch field {name!r} does not have the items its counts say")
        return np.fromiter(chain.from_iterable(lists), dtype=kind, count=int(own.sum()))

    def given(self, name: str) -> np.ndarray:
        """Per member: does it carry its own ``name`` array (one item per value)?"""
        return _given_counts(self.per_member(name + "_counts", np.int64), self.counts, name)


def _dictionary(cut: _Cut) -> Callable[[str], pa.Array]:
    """The string column of a dictionary field: every message's words in one array
    (its own dictionary's codes moved past the words of the messages before it, -1
    to a last empty word, "" as in v1), taken once per column for the whole insert."""
    words: list[str | None] = []
    starts, sizes = [], []
    for record in cut.records:
        own = record.get(DICTIONARY) or []
        starts.append(len(words))
        sizes.append(len(own))
        words += own
    empty = len(words)
    word_array = _filled(pa.array([*words, ""], pa.string()))
    start = np.asarray(starts, dtype=np.int64)[cut.member_message]
    size = np.asarray(sizes, dtype=np.int64)[cut.member_message]

    def coded(name: str) -> pa.Array:
        codes = cut.per_member(name, np.int64)
        if (codes >= size).any():
            raise ValueError(f"batch field {name!r} points past its message's dictionary")
        codes = np.where(codes < 0, empty, codes + start)
        return word_array.take(pa.array(codes[cut.reading_member]))

    return coded


def _filled(strings: pa.Array) -> pa.Array:
    """Null strings as "" (the v1 rows' ``value or ""``)."""
    return strings.fill_null("") if strings.null_count else strings


def _given(record: dict[str, Any], name: str, counts: np.ndarray) -> np.ndarray:
    """Per member of one message: does it carry its own ``name`` array?"""
    return _given_counts(np.asarray(record[name + "_counts"], dtype=np.int64), counts, name)


def _given_counts(own: np.ndarray, counts: np.ndarray, name: str) -> np.ndarray:
    """Per member: does it carry its own ``name`` array (one item per value)? A member
    whose array is neither empty nor one per value is refused, as the v1 rows refuse it."""
    given = own > 0
    if (own[given] != counts[given]).any():
        raise ValueError(f"an observation's {name!r} does not have one item per value")
    return given


def _per_reading(cut: _Cut, name: str, default: float, kind: type) -> np.ndarray:
    """A per-reading array: each member's own items where it has them, else ``default``."""
    out = np.full(len(cut.reading_member), default, dtype=kind)
    given = cut.given(name)
    if given.any():
        out[given[cut.reading_member]] = cut.readings(name, kind)
    return out


def _times(cut: _Cut) -> np.ndarray:
    """µs of each reading: the member's ``times`` where it has them, else its start
    plus its step per reading."""
    counts, index = cut.counts, cut.reading_member
    starts = cut.per_member("start", np.int64)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    k = np.arange(len(index), dtype=np.int64) - first
    out = starts[index] + k * (cut.steps * 1_000_000)[index]
    given = cut.given("times")
    if given.any():
        out[given[index]] = cut.readings("times", np.int64)
    return out
