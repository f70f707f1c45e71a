"""A regrouped message's changes to its group days, written once when it ends.

Why: a group day (``gd|city|carrier|day``: its version and cells) was read, copied
and rewritten for every member that changed it: a thousand times per message of
single readings, for one day. Its final value depends only on how many changes
came and which cells they touched (the version grows by one per change, the cells
are a sorted set), so a message's changes are counted here and applied at its end:
the state the members one by one give. Nothing reads a group day while a message
is aggregated (publication, release and expiry read it when the batch ends).
"""

from __future__ import annotations

from services.energy.state_records import GroupDay
from services.runtime.state import BatchState


class GroupDayChanges:
    """Changes per group-day key: (how many, cells touched, partition of the latest)."""

    def __init__(self) -> None:
        self._days: dict[str, tuple[int, set[str], int]] = {}

    def changed(self, key: str, cell: str, partition: int) -> None:
        count, cells, _ = self._days.get(key, (0, set(), partition))
        cells.add(cell)
        self._days[key] = (count + 1, cells, partition)

    def write(self, state: BatchState) -> None:
        """Every counted change applied to the stored group days."""
        for key, (count, cells, partition) in self._days.items():
            day = GroupDay.read(state.get(key)) or GroupDay()
            after = GroupDay(day.version + count, sorted({*day.cells, *cells}))
            state.set(key, after.stored(), partition)
        self._days.clear()
