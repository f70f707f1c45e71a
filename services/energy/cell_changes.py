"""A batch's meter changes to cell days, kept until the batch ends and then applied
together (:func:`services.energy.columns.apply_meter_changes`).

Why: a cell's day is a few arrays of 92 to 100 quarters; updating them for every
meter that changed cost the same quarter-by-quarter bookkeeping for one single
reading as for a whole day. Nothing reads a cell's day before the batch ends
(publication, release and expiry all happen in ``end_batch``), so the changes of a
batch are applied once per cell day, in the order they came: the state is the one
the per-record order gives. A record sent to the dead letters takes its changes
back with it (the record savepoint), an aborted batch all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.energy.columns import MeterChange
from services.runtime.stage import StageStore


@dataclass
class CellDayChanges:
    """One cell day's changes in the batch: where its state lives, its size, and the
    meter changes in arrival order."""

    partition: int
    quarters: int
    changes: list[MeterChange] = field(default_factory=list)


class PendingCellChanges(StageStore):
    """The open batch's meter changes, per cell-day key (see the module)."""

    def __init__(self) -> None:
        self._log: list[tuple[str, int, int, MeterChange]] = []
        self._mark = 0

    def add(self, key: str, partition: int, quarters: int, change: MeterChange) -> None:
        self._log.append((key, partition, quarters, change))

    def drain(self) -> dict[str, CellDayChanges]:
        """Every cell day the batch changed (first changed first), its changes in
        order; the log is empty afterwards."""
        out: dict[str, CellDayChanges] = {}
        for key, partition, quarters, change in self._log:
            day = out.setdefault(key, CellDayChanges(partition, quarters))
            day.partition = partition  # the latest record's, as a per-record write gives
            day.changes.append(change)
        self.abort()
        return out

    def __len__(self) -> int:
        return len(self._log)

    def begin_record(self) -> None:
        self._mark = len(self._log)

    def rollback_record(self) -> None:
        del self._log[self._mark :]

    def commit(self) -> None:
        self.abort()

    def abort(self) -> None:
        self._log.clear()
        self._mark = 0
