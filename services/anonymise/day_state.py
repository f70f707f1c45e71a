"""The open days of daily-coarsened sources, in a changelog-backed store.

anonymise keeps, per entity and local day, the document of
:mod:`services.anonymise.daily` (policy already applied: no identifier in clear)
in a :class:`~services.runtime.state.ChangelogStore` on ``anonymise.state.v1``,
whose changes commit in the batch's transaction with its outputs and offsets:
a restarted or moved instance restores exactly the days that match its offsets
(``on_assign``), so every entity-day leaves exactly once.

When a day is released (one AnonymisedRecord per entity-day):

- by event time: per source and raw partition, a watermark follows the latest
  reading (never beyond the time the message was written plus
  ``FUTURE_TOLERANCE_US``, so one wrong clock cannot close every day); a day
  closes once the watermark passes its end plus the source's ``lateness``;
- by the wall clock, for a source that went quiet: once nothing has arrived from
  the source in the partition for ``quiet``, every day that ended ``lateness``
  ago closes (run from the stage's idle hook as well as at each batch's end). A
  backfill that keeps flowing is never closed this way, so its days are not cut
  by batch boundaries.

A reading for a day already released is not added to anything: a second record,
or a corrected one, would differ from the first by exactly the late readings
(their sub-daily values, recovered by subtraction). It goes to the dead letters
(``day-released``) without values.

Keys: ``d|<partition>|<city>|<source>|<pseudonym>|<day start>`` for a day and
``w|<partition>|<city>|<source>`` for a source's marks in a partition
(``w``: watermark, ``c``: days ending at or before it are closed, ``a``: wall
clock of the last arrival, µs).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from services.anonymise import daily
from services.anonymise.policy import Coarsening, Policy, PolicySet
from services.anonymise.transform import TransformError, coarsening_times
from services.runtime.processor import Emit
from services.runtime.state import BatchState, ChangelogStore

log = logging.getLogger(__name__)

STORE = "anonymise-days"
FUTURE_TOLERANCE_US = 3_600_000_000  # a reading may be an hour ahead of its message
_US = 1_000_000

Group = tuple[int, str, str]  # (partition, city, source)


def row_times(record: dict[str, Any], policy: Policy) -> list[int]:
    """Every row's time (UTC µs): the event times, else the coarsening's time field.

    A row without a readable time cannot be put in a day: the record is refused
    (a row dropped would change a day's sum without anyone knowing)."""
    parsed = coarsening_times(record, policy)
    missing = sum(t is None for t in parsed)
    if missing:
        field = policy.coarsen.time.field if policy.coarsen and policy.coarsen.time else "time"
        raise TransformError(
            "cannot-coarsen",
            f"{missing} of {record['row_count']} rows have no readable time ({field!r})",
        )
    return parsed  # type: ignore[return-value]


@dataclass(frozen=True)
class Part:
    """One message's rows of one local day (policy applied)."""

    day_start: int
    head: dict[str, Any]
    columns: list[dict[str, Any]]
    times: list[int]


class DayStore:
    """Open entity-days and per-source marks; outputs daily records when days close."""

    def __init__(
        self,
        topic: str,
        policies: PolicySet,
        *,
        anonymised_topic: str,
        clock_us: Callable[[], int],
    ):
        self.store = ChangelogStore(STORE, topic)
        self.state = BatchState(self.store)
        self.policies = policies
        self.anonymised_topic = anonymised_topic
        self.clock_us = clock_us
        # committed open days: group -> day start -> day keys (closing scans days, not keys)
        self._open: dict[Group, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
        self._flushed: list[str] = []
        self.released = 0

    # -- one record -------------------------------------------------------------------
    def begin_record(self) -> None:
        self.state.begin_record()

    def rollback_record(self) -> None:
        self.state.rollback_record()

    def closed_before(self, group: Group) -> int | None:
        """Days ending at or before this time are closed for the source in the partition."""
        marks = self.state.get(_marks_key(group))
        return marks["c"] if marks else None

    def add(self, group: Group, policy: Policy, parts: list[Part], written_us: int) -> None:
        """Merge a record's open-day parts and move the source's watermark."""
        coarsening = policy.coarsening
        assert coarsening is not None and coarsening.daily
        newest = None
        for part in parts:
            key = _day_key(group, part.head["e"], part.day_start)
            doc = daily.merge(self.state.get(key), part.head, part.columns, part.times, coarsening)
            self.state.set(key, doc, group[0])
            latest = max(part.times)
            newest = latest if newest is None else max(newest, latest)
        marks = dict(self.state.get(_marks_key(group)) or {"w": None, "c": None, "a": 0})
        if newest is not None:
            if written_us > 0:
                newest = min(newest, written_us + FUTURE_TOLERANCE_US)
            marks["w"] = newest if marks["w"] is None else max(marks["w"], newest)
        marks["a"] = self.clock_us()
        self.state.set(_marks_key(group), marks, group[0])

    # -- closing ------------------------------------------------------------------------
    def close(self, *, idle: bool = False) -> list[Emit]:
        """Release the days that closed (by watermark, or by wall clock for quiet
        sources); returns the daily records and the batch's state changes."""
        now = self.clock_us()
        emits: list[Emit] = []
        for group in sorted(self._groups()):
            marks = self.state.get(_marks_key(group))
            policy = self.policies.get(group[1], group[2])
            if marks is None or policy is None or policy.coarsening is None:
                continue
            limit = _release_limit(marks, policy.coarsening, now)
            if limit is None:
                continue
            released = self._release(group, limit, policy)
            if released:
                self._mark_released(group, marks, limit, len(released), idle)
            emits.extend(released)
        self.released += len(emits)
        self._flushed = [k for k in self.state.changes if k.startswith("d|")]
        self.state.flush()
        return emits

    def _release(self, group: Group, limit: int, policy: Policy) -> list[Emit]:
        """One daily record per stored day of the group ending by ``limit``, whose
        state is deleted in the same transaction."""
        assert policy.coarsening is not None
        emits: list[Emit] = []
        for day_start, key in self._closing_days(group, limit, policy.timezone):
            doc = self.state.get(key)
            if doc is None:
                continue
            record = daily.released(
                doc,
                city=group[1],
                source=group[2],
                day_start_us=day_start,
                coarsening=policy.coarsening,
            )
            emits.append(
                Emit(
                    self.anonymised_topic,
                    f"{group[1]}|{record['entity_pseudonym']}",
                    record,
                    readings=1,
                )
            )
            self.state.delete(key, group[0])
        return emits

    def _mark_released(
        self, group: Group, marks: dict[str, Any], limit: int, days: int, idle: bool
    ) -> None:
        """Every day of the group ending by ``limit`` is released now: a reading for one
        of them from here on is late. Written only with a release, so that an idle
        node does not write its marks at every poll."""
        self.state.set(_marks_key(group), {**marks, "c": limit}, group[0])
        log.info(
            "coarsened days released",
            extra={
                "city": group[1],
                "source": group[2],
                "partition": group[0],
                "days": days,
                "idle": idle,
            },
        )

    def _groups(self) -> set[Group]:
        groups = set(self._open)
        for key in self.state.changes:
            if key.startswith("w|"):
                groups.add(_group_of(key))
        return groups

    def _closing_days(self, group: Group, limit: int, timezone: str) -> list[tuple[int, str]]:
        """(day start, key) of the group's days (committed or of this batch) ending by
        ``limit``, in day then key order."""
        committed = self._open.get(group, {})
        batch: dict[int, set[str]] = defaultdict(set)
        prefix = "d|{}|{}|{}|".format(*group)
        for key in self.state.changes:
            if key.startswith(prefix):
                batch[int(key.rsplit("|", 1)[1])].add(key)
        out = []
        for day_start in sorted(set(committed) | set(batch)):
            if daily.day_end(day_start, timezone) > limit:
                break
            keys = committed.get(day_start, set()) | batch.get(day_start, set())
            out += [(day_start, key) for key in sorted(keys)]
        return out

    # -- transaction outcome ----------------------------------------------------------
    def commit(self) -> None:
        self.store.commit()
        for key in self._flushed:
            group, day_start = _group_of(key), int(key.rsplit("|", 1)[1])
            if self.store.get(key) is not None:
                self._open[group][day_start].add(key)
                continue
            days = self._open.get(group)
            if days is not None and day_start in days:
                days[day_start].discard(key)
                if not days[day_start]:
                    del days[day_start]
        self._flushed = []

    def abort(self) -> None:
        self.store.abort()
        self.state.clear()
        self._flushed = []
        self.reindex()

    # -- assignment -------------------------------------------------------------------
    def forget(self, partitions: Iterable[int]) -> None:
        self.store.forget(partitions)
        self.reindex()

    def reindex(self) -> None:
        self._open.clear()
        for key in self.store.live_keys():
            if key.startswith("d|"):
                self._open[_group_of(key)][int(key.rsplit("|", 1)[1])].add(key)

    def open_days(self) -> Iterator[tuple[Group, int]]:
        """Committed open days (for tests and operators)."""
        for group, days in self._open.items():
            for day_start, keys in days.items():
                for _ in keys:
                    yield group, day_start


def _day_key(group: Group, pseudonym: str, day_start: int) -> str:
    return f"d|{group[0]}|{group[1]}|{group[2]}|{pseudonym}|{day_start}"


def _marks_key(group: Group) -> str:
    return f"w|{group[0]}|{group[1]}|{group[2]}"


def _group_of(key: str) -> Group:
    _, partition, city, source, *_ = key.split("|")
    return int(partition), city, source


def _release_limit(marks: Mapping[str, Any], coarsening: Coarsening, now: int) -> int | None:
    """The time by which a group's days are closed now, or None if no day closes:
    its watermark minus the lateness, or (a source quiet for long enough) the wall
    clock minus the lateness, whichever is later; never back before the last release."""
    lateness = coarsening.lateness_s * _US
    threshold = marks["c"]
    candidates = []
    if marks["w"] is not None:
        candidates.append(marks["w"] - lateness)
    if now - marks["a"] >= coarsening.quiet_s * _US:
        candidates.append(now - lateness)
    if not candidates:
        return None
    limit = max(candidates)
    if threshold is not None and limit <= threshold:
        return None
    return limit
