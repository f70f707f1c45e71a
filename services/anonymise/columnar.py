"""The fast path of anonymise: a whole RawBatch (raw.v2, many entities) through its
source's policy at once, giving what the per-record path gives member by member.

A batch of 1,000 single readings from 1,000 sensors is 1,000 RawRecords to the
per-record path: 1,000 dicts built, 1,000 policy passes over one-row columns,
1,000 outputs imploded again. Here the batch's concatenated columns go through the
policy once. That is exact by construction, not by a second implementation: the
per-record transform works column by column and a value's fate depends only on the
value and its column's rule (:func:`transform.apply_columns`), so the members'
columns concatenated give the members' outputs concatenated, with the same code. What
belongs to a member is done per member, or per distinct value:

- the entity pseudonym: one HMAC per distinct entity id;
- the entity type: the safety net once per distinct type, counted once per member;
- attributes: shared by the batch's members, applied once, counted once per member;
- the output is grouped by the partition of each member's output key
  (``city|pseudonym``), as the runner groups the per-record outputs.

Whatever it cannot do exactly, it leaves to the per-record path (it returns None),
privacy first: a coarsened source (per-message buckets; daily state across
messages), a batch whose rows fall in two key epochs, times read as local wall
clock within two hours of a clock change (the repeated autumn hour is placed by the
order of the column, hence by message boundaries), and any batch not shaped exactly
as the per-record path would accept every member (counts, kinds, missing positions).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from services.anonymise import columns
from services.anonymise.policy import QUASI, Bucket, Policy
from services.anonymise.transform import (
    PSEUDONYMISED,
    RecordAudit,
    apply_attributes,
    apply_columns,
    kept_entity_type,
)
from services.privacy.keys import epoch_of
from services.privacy.pseudonym import Pseudonymiser
from services.runtime.batches import entity_partition
from services.runtime.timeparse import TimeSpec, parse_time_column

Column = dict[str, Any]
_EPOCH_FORMATS = ("epoch_s", "epoch_ms")  # no wall clock: no clock change to place
_HOUR_US = 3600 * 1_000_000
_SHARED = ("city", "source", "dataset", "format", "lineage_id", "received_at")


@dataclass(frozen=True)
class Shape:
    """A RawBatch's members as the per-record path would see them, checked."""

    members: int
    rows: np.ndarray  # row count per member
    events: np.ndarray  # event times per member (0 or its row count)
    columns: list[Column]  # the batch's columns, each with its own array only

    @property
    def total(self) -> int:
        return int(self.rows.sum())


@dataclass(frozen=True)
class BatchResult:
    """The AnonymisedBatches of one RawBatch, per output partition, and what was decided."""

    epoch: str
    batches: list[tuple[int, dict[str, Any]]]  # (partition, AnonymisedBatch), member order kept
    audit: RecordAudit  # the sum of the members' audits
    members: int


def anonymise_batch(
    batch: dict[str, Any],
    policy: Policy,
    pseudonymiser_of: Callable[[str], Pseudonymiser],
    partitions: int,
) -> BatchResult | None:
    """The batch through ``policy`` under one epoch's key, or None when only the
    per-record path can say (see the module docstring)."""
    if policy.coarsening is not None:
        return None
    shape = batch_shape(batch)
    if shape is None or not _clear_of_clock_changes(shape.columns, policy):
        return None
    epoch = batch_epoch(batch, shape, policy)
    if epoch is None:
        return None
    keyed = pseudonymiser_of(epoch)
    audit = RecordAudit(rows=shape.total)
    ids = batch["entity_id"]
    entities = list(dict.fromkeys(ids))
    distinct = dict(zip(entities, keyed.many(entities), strict=True))
    pseudonyms = [distinct[entity] for entity in ids]
    pseudonymise: Any = Remembered(keyed, dict(distinct))  # identifier columns hit it
    audit.add(PSEUDONYMISED, shape.members)
    out_columns = apply_columns(shape.columns, policy, pseudonymise, audit)
    once = RecordAudit()
    attributes = apply_attributes(dict(batch.get("attributes") or {}), policy, pseudonymise, once)
    _add_times(audit, once, shape.members)
    types, words = _entity_types(batch, policy, audit)
    whole = {
        **{name: batch[name] for name in _SHARED},
        "entity_pseudonym": pseudonyms,
        "entity_type": types,
        "key_epoch": epoch,
        "policy_version": policy.version,
        "row_count": shape.rows.tolist(),
        "event_times": list(batch.get("event_times") or []),
        "event_times_counts": shape.events.tolist(),
        "columns": out_columns,
        "attributes": attributes,
        "dictionary": words,
    }
    where = _partitions_of(batch["city"], distinct, pseudonyms, partitions)
    return BatchResult(epoch, split_by_partition(whole, shape, where), audit, shape.members)


class Remembered:
    """A pseudonymiser that remembers the batch's pseudonyms: an identifier column
    usually repeats the entity id (a meter's delivery point), hashed once for both."""

    __slots__ = ("_keyed", "_known", "epoch")

    def __init__(self, keyed: Pseudonymiser, known: dict[str, str]):
        self._keyed, self._known, self.epoch = keyed, known, keyed.epoch

    def __call__(self, value: str) -> str:
        found = self._known.get(value)
        if found is None:
            found = self._known[value] = self._keyed(value)
        return found


# -- the batch's shape -------------------------------------------------------------------
def batch_shape(batch: dict[str, Any]) -> Shape | None:
    """The members' counts and clean columns, or None if some member would not be
    accepted as it is (the per-record path then rejects it alone)."""
    members = len(batch.get("entity_id") or [])
    rows = np.asarray(batch.get("row_count") or [], dtype=np.int64)
    events = np.asarray(batch.get("event_times_counts") or [], dtype=np.int64)
    if not members or not _counts_agree(batch, members, rows, events):
        return None
    total = int(rows.sum())
    clean = [_clean_column(column, total) for column in batch.get("columns") or []]
    if any(column is None for column in clean):
        return None
    return Shape(members, rows, events, clean)  # type: ignore[arg-type]


def _counts_agree(
    batch: dict[str, Any], members: int, rows: np.ndarray, events: np.ndarray
) -> bool:
    """One count per member everywhere, no negative row count, every member's event
    times none or one per row, entity types within the dictionary."""
    types = np.asarray(batch.get("entity_type") or [], dtype=np.int64)
    words = batch.get("dictionary") or []
    if not len(rows) == len(events) == len(types) == members:
        return False
    if (rows < 0).any() or not ((events == 0) | (events == rows)).all():
        return False
    if int(events.sum()) != len(batch.get("event_times") or []):
        return False
    return not ((types < -1) | (types >= len(words))).any()


def _clean_column(column: Column, total: int) -> Column | None:
    """The column with only its kind's array (as a member exploded from it), if it has
    one value per row and strictly increasing missing positions within the rows."""
    array = columns.ARRAY_OF.get(column.get("kind"))  # type: ignore[arg-type]
    if array is None:
        return None
    values = column.get(array) or []
    missing = np.asarray(column.get("missing") or [], dtype=np.int64)
    if len(values) != total:
        return None
    if len(missing) and (missing[0] < 0 or missing[-1] >= total or (np.diff(missing) <= 0).any()):
        return None
    return columns.make(column["name"], column["kind"], list(values), missing.tolist())


# -- the key epoch -------------------------------------------------------------------------
def batch_epoch(batch: dict[str, Any], shape: Shape, policy: Policy) -> str | None:
    """The one key epoch of every row of the batch (epochs.py, row by row), or None
    when its rows fall in more than one or their times cannot be read exactly."""
    timezone = policy.timezone
    fallback = epoch_of(batch["received_at"], timezone)
    read = _row_times(batch, shape, policy)
    if read is None:
        return None
    times, present = read
    epochs: set[str] = set()
    if not present.all() or (shape.rows == 0).any():
        epochs.add(fallback)  # a row without a time, a member without rows: reception
    if present.any():
        known = times[present]
        epochs.add(epoch_of(int(known.min()), timezone))
        epochs.add(epoch_of(int(known.max()), timezone))
    return epochs.pop() if len(epochs) == 1 else None


def _row_times(
    batch: dict[str, Any], shape: Shape, policy: Policy
) -> tuple[np.ndarray, np.ndarray] | None:
    """Each row's deciding time (epochs._sources without coarsening) and whether it has one."""
    has_events = np.repeat(shape.events > 0, shape.rows)
    times = np.zeros(shape.total, dtype=np.int64)
    times[has_events] = np.asarray(batch.get("event_times") or [], dtype=np.int64)
    spec = policy.reading_time
    column = None
    if spec is not None:
        column = next((c for c in shape.columns if c["name"] == spec.field), None)
    if spec is None or column is None:
        return times, has_events
    parsed, _ = parse_time_column(columns.cells(column), spec)
    if not _times_clear(parsed, spec):
        return None
    rule = policy.fields.get(spec.field)
    bucket = rule.generalisation if rule is not None else None
    if isinstance(bucket, Bucket):  # normalise reads the bucket's start
        parsed = _bucket_starts(parsed, bucket)
    known = np.fromiter((t is not None for t in parsed), dtype=bool, count=shape.total)
    values = np.fromiter((0 if t is None else t for t in parsed), np.int64, shape.total)
    return np.where(known, values, times), known | has_events


def _bucket_starts(times: list[int | None], bucket: Bucket) -> list[int | None]:
    from services.anonymise.generalise import bucket_starts

    return bucket_starts(times, bucket.seconds, bucket.time.timezone)


def _clear_of_clock_changes(batch_columns: Sequence[Column], policy: Policy) -> bool:
    """Whether every time a bucket reads is placed whatever the message boundaries."""
    for column in batch_columns:
        rule = policy.fields.get(column["name"])
        if rule is None or rule.cls != QUASI or not isinstance(rule.generalisation, Bucket):
            continue
        spec = rule.generalisation.time
        if spec.format in _EPOCH_FORMATS:
            continue
        parsed, _ = parse_time_column(columns.cells(column), spec)
        if not _times_clear(parsed, spec):
            return False
    return True


def _times_clear(times: list[int | None], spec: TimeSpec) -> bool:
    """No time within two hours of a change of the zone's offset (where a local wall
    time is placed by its neighbours in the column, see timeparse)."""
    if spec.format in _EPOCH_FORMATS:
        return True
    known = [t for t in times if t is not None]
    if not known:
        return True
    hours = np.unique(np.asarray(known, dtype=np.int64) // _HOUR_US)
    return all(_steady(spec.timezone, int(hour)) for hour in hours)


@lru_cache(maxsize=8192)
def _steady(timezone: str, hour: int) -> bool:
    zone = ZoneInfo(timezone)

    def offset(h: int) -> Any:
        return datetime.fromtimestamp(h * 3600, UTC).astimezone(zone).utcoffset()

    return offset(hour - 2) == offset(hour + 2)


# -- per member ----------------------------------------------------------------------------
def _add_times(audit: RecordAudit, once: RecordAudit, times: int) -> None:
    """Count ``once`` (one member's decisions) ``times`` times into ``audit``."""
    for name, count in once.decisions.items():
        audit.add(name, count * times)
    audit.incident({name: count * times for name, count in once.incidents.items()})


def _entity_types(
    batch: dict[str, Any], policy: Policy, audit: RecordAudit
) -> tuple[list[int], list[str]]:
    """Each member's kept entity type as an index into a new dictionary (words no
    member keeps never leave), the safety net once per distinct type."""
    types = np.asarray(batch.get("entity_type") or [], dtype=np.int64)
    words = batch.get("dictionary") or []
    used, counts = np.unique(types[types >= 0], return_counts=True)
    remap = np.full(len(words) + 1, -1, dtype=np.int64)  # index + 1 -> new index
    kept_words: list[str] = []
    for index, count in zip(used.tolist(), counts.tolist(), strict=True):
        once = RecordAudit()
        kept = kept_entity_type(words[index], policy, once)
        _add_times(audit, once, count)
        if kept is not None:
            remap[index + 1] = len(kept_words)
            kept_words.append(kept)
    return remap[types + 1].tolist(), kept_words


def _partitions_of(
    city: str, distinct: dict[str, str], pseudonyms: list[str], partitions: int
) -> np.ndarray:
    """Each member's output partition: that of its per-record key ``city|pseudonym``."""
    of = {p: entity_partition(f"{city}|{p}", partitions) for p in distinct.values()}
    return np.fromiter((of[p] for p in pseudonyms), dtype=np.int64, count=len(pseudonyms))


# -- one batch per partition ----------------------------------------------------------------
def split_by_partition(
    whole: dict[str, Any], shape: Shape, where: np.ndarray
) -> list[tuple[int, dict[str, Any]]]:
    """``(partition, batch)`` for each partition some member goes to, in partition order."""
    found = np.unique(where)
    if len(found) == 1:
        return [(int(found[0]), whole)]
    prepared = Prepared.of(whole, shape)
    return [
        (int(p), take_members(whole, shape, np.flatnonzero(where == p), prepared))
        for p in found.tolist()
    ]


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The positions ``starts[i] .. starts[i] + lengths[i]`` of every i, in order."""
    total = int(lengths.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    begin = np.cumsum(lengths) - lengths  # where each range begins in the output
    return np.repeat(starts - begin, lengths) + np.arange(total, dtype=np.int64)


def _objects(values: Sequence[Any]) -> np.ndarray:
    """``values`` as a numpy array of the very Python objects (exact, any kind)."""
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


@dataclass(frozen=True)
class Prepared:
    """A batch's arrays, built once however many partitions take from them."""

    pseudonyms: np.ndarray
    types: np.ndarray
    event_times: np.ndarray
    values: list[np.ndarray]  # per column
    missing: list[np.ndarray]  # per column
    row_starts: np.ndarray
    event_starts: np.ndarray

    @classmethod
    def of(cls, batch: dict[str, Any], shape: Shape) -> Prepared:
        return cls(
            _objects(batch["entity_pseudonym"]),
            np.asarray(batch["entity_type"], dtype=np.int64),
            np.asarray(batch["event_times"], dtype=np.int64),
            [_objects(columns.typed(c)) for c in batch["columns"]],
            [np.asarray(c["missing"], dtype=np.int64) for c in batch["columns"]],
            np.cumsum(shape.rows) - shape.rows,
            np.cumsum(shape.events) - shape.events,
        )


def take_members(
    batch: dict[str, Any], shape: Shape, chosen: np.ndarray, prepared: Prepared | None = None
) -> dict[str, Any]:
    """The batch restricted to the members at ``chosen`` (increasing), column-wise."""
    ready = prepared or Prepared.of(batch, shape)
    rows = _ranges(ready.row_starts[chosen], shape.rows[chosen])
    events = _ranges(ready.event_starts[chosen], shape.events[chosen])
    kept = np.zeros(shape.total, dtype=bool)
    kept[rows] = True
    renumbered = np.cumsum(kept) - 1
    out_columns = []
    for column, values, missing in zip(batch["columns"], ready.values, ready.missing, strict=True):
        still = missing[kept[missing]] if len(missing) else missing
        out_columns.append(
            columns.make(
                column["name"], column["kind"], values[rows].tolist(), renumbered[still].tolist()
            )
        )
    return {
        **batch,
        "entity_pseudonym": ready.pseudonyms[chosen].tolist(),
        "entity_type": ready.types[chosen].tolist(),
        "row_count": shape.rows[chosen].tolist(),
        "event_times": ready.event_times[events].tolist(),
        "event_times_counts": shape.events[chosen].tolist(),
        "columns": out_columns,
    }
