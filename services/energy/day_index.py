"""What energy-analytics knows beside its changelog, as one declared store.

The changelog holds the days' readings (:mod:`services.energy.state_records`); this
holds what is derived from it or about the open batch, in typed records instead of
loose dicts reset by hand:

- per process (rebuilt from the changelog on assignment, revocation and abort):
  the open days of each city and carrier with their meter-day keys (for expiry),
  what was last published of each day (to skip unchanged windows; lost on restart:
  the first update of a day then re-emits it whole, with a higher version), the
  withheld pattern and cells each day was last published whole with, and when each
  group was last heard of (wall clock, for closing by idleness);
- per batch (:class:`BatchWork`: dropped when the batch commits or aborts): the
  quarters each day changed, the days it closes, and what it publishes, which joins
  the process's record only once the batch committed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from services.energy.state_records import meter_day_of
from services.runtime.stage import StageStore
from services.runtime.state import ChangelogStore

Group = tuple[str, str]  # (city, carrier)
GroupDayKey = tuple[str, str, int]  # (city, carrier, local day start in UTC µs)
Fingerprints = dict[str, tuple]  # aggregate key -> the published fields that matter
Shape = tuple[dict[str, Any], tuple[str, ...]]  # (withheld pattern, cells)


def _day_sets() -> defaultdict[int, set[str]]:
    return defaultdict(set)


def _discard(sets: dict[Any, set[Any]], key: Any, items: Iterable[Any]) -> None:
    """Take ``items`` out of ``sets[key]`` again, and the key once its set is empty."""
    remaining = sets.get(key)
    if remaining is None:
        return
    remaining.difference_update(items)
    if not remaining:
        del sets[key]


@dataclass(frozen=True)
class Closing:
    """A day the batch closes: its meter-day keys, its state partition, and what
    closed it (``watermark`` or ``idle``)."""

    meter_keys: set[str]
    partition: int
    by: str


@dataclass
class BatchWork:
    """What the open batch did to the days; dropped when it commits or aborts."""

    dirty: defaultdict[GroupDayKey, set[int]] = field(default_factory=lambda: defaultdict(set))
    closing: dict[GroupDayKey, Closing] = field(default_factory=dict)
    published: defaultdict[GroupDayKey, Fingerprints] = field(
        default_factory=lambda: defaultdict(dict)
    )
    shapes: dict[GroupDayKey, Shape] = field(default_factory=dict)


class DayIndex(StageStore):
    """The open days, what was published of them, and the batch's work (see module)."""

    def __init__(self, store: ChangelogStore):
        self.store = store
        self.batch = BatchWork()
        self.days: defaultdict[Group, defaultdict[int, set[str]]] = defaultdict(_day_sets)
        self.published: defaultdict[GroupDayKey, Fingerprints] = defaultdict(dict)
        self.shapes: dict[GroupDayKey, Shape] = {}
        self.heard: dict[Group, int] = {}
        self._undo: list[tuple[Any, ...]] = []  # (kind, *arguments) of each undo step

    # -- one record: what it did to the open days and the batch's work, undone when it
    # is refused (a regrouped message taken whole that a member then refuses is undone
    # whole: the days it closed and the meters it added must be as before it, or a
    # closed day's meter readings outlive its release) ----------------------------------
    def begin_record(self) -> None:
        self._undo.clear()

    def rollback_record(self) -> None:
        for step in reversed(self._undo):
            _UNDO[step[0]](self, *step[1:])
        self._undo.clear()

    def touch(self, day: GroupDayKey, quarters: range, md_key: str) -> None:
        """A meter's day changed: its quarters are due, the day holds its key (called
        once per reading on single readings: undo steps are tuples, not closures)."""
        known = self.batch.dirty[day]
        added = [q for q in quarters if q not in known]
        if added:
            known.update(added)
            self._undo.append(("dirty", day, added))
        keys = self.days[day[:2]][day[2]]
        if md_key not in keys:
            keys.add(md_key)
            self._undo.append(("meter", day, md_key))

    def close(self, day: GroupDayKey, partition: int, by: str) -> None:
        """The day closes with this batch: out of the open days, into its closings."""
        keys = self.days[day[:2]].pop(day[2])
        self._undo.append(("close", day, keys, self.batch.closing.get(day)))
        self.batch.closing[day] = Closing(keys, partition, by)

    def _untouch_quarters(self, day: GroupDayKey, added: list[int]) -> None:
        _discard(self.batch.dirty, day, added)

    def _untouch_meter(self, day: GroupDayKey, md_key: str) -> None:
        _discard(self.days[day[:2]], day[2], (md_key,))

    def _unclose(self, day: GroupDayKey, keys: set[str], before: Closing | None) -> None:
        self.days[day[:2]][day[2]] = keys
        if before is None:
            self.batch.closing.pop(day, None)
        else:
            self.batch.closing[day] = before

    def commit(self) -> None:
        """The batch's publications become the days' record (a closed day has none)."""
        closing = self.batch.closing
        for day, fingerprints in self.batch.published.items():
            if day not in closing:
                self.published[day].update(fingerprints)
        self.shapes.update((k, v) for k, v in self.batch.shapes.items() if k not in closing)
        self._undo.clear()
        self.batch = BatchWork()

    def abort(self) -> None:
        """Nothing of the batch happened: days it closed are open again."""
        self._undo.clear()
        self.batch = BatchWork()
        self.reindex()

    def restored(self, partitions: list[int]) -> None:
        self.reindex()

    def forget(self, partitions: list[int]) -> None:
        self.reindex()  # the changelog store (declared before) dropped their keys

    def drop(self, day: GroupDayKey) -> None:
        """A closed day: nothing of it is remembered any more."""
        self.shapes.pop(day, None)
        self.published.pop(day, None)

    def reindex(self) -> None:
        """The open days, from the changelog's live meter-day keys."""
        self.days.clear()
        self.published.clear()
        self.shapes.clear()
        for key in self.store.live_keys():
            parsed = meter_day_of(key)
            if parsed is not None:
                city, carrier, day = parsed
                self.days[(city, carrier)][day].add(key)


_UNDO: dict[str, Callable[..., None]] = {
    "dirty": DayIndex._untouch_quarters,
    "meter": DayIndex._untouch_meter,
    "close": DayIndex._unclose,
}
