"""What a parsed batch looks like: rows grouped per entity, column-wise.

A batch becomes one :class:`EntityRows` per entity (in order of first appearance)
rather than one object per reading, because every later stage pays per message:
one RawRecord carrying an entity's 144 readings costs about one decode.
Rejections keep the original bytes so that the restricted raw dead-letter topic
can replay them, and say what was wrong twice: a ``message`` that quotes no value
(what dlq.v1, logs and the sender see) and a ``detail`` with the values (raw zone).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

Cell = str | float | int | bool | None


@dataclass
class EntityRows:
    """One entity's rows of one batch; every column has ``row_count`` values.

    ``event_times_us`` holds one UTC epoch-microsecond time per row when the
    transport gave a machine-readable time for EVERY row of this entity, and is
    empty otherwise (the raw time text stays in its column for normalise).
    """

    entity_id: str
    entity_type: str | None
    columns: dict[str, list[Cell]]
    event_times_us: list[int]

    @property
    def row_count(self) -> int:
        for values in self.columns.values():
            return len(values)
        return len(self.event_times_us)


@dataclass
class Rejection:
    """A part of the input that could not be read, for the dead-letter topic.

    ``position`` locates it for a person ("line 17", "item 3", "frame 2 at byte
    412"); ``reason`` is a short code (``bad-checksum``, ``bad-number``...).
    ``message`` names positions and fields, never a value of the input;
    ``detail``, when given, is the same with the values (raw dead letters only).
    ``fields`` are the field names concerned (filtered against the source's
    declared fields before they leave the raw zone); ``entity`` the entity id
    when the parser could read it (pseudonymised before it leaves).
    """

    position: str
    reason: str
    message: str
    original: bytes
    detail: str | None = None
    fields: tuple[str, ...] = ()
    entity: str | None = None


@dataclass
class ParseResult:
    """Everything read from one payload; ``skipped`` counts partial Linky frames
    at the edges of a raw capture, which are expected and not errors."""

    entities: list[EntityRows]
    rejected: list[Rejection]
    accepted_rows: int
    skipped: int = 0


@dataclass
class _Group:
    entity_type: str | None
    columns: dict[str, list[Cell]] = field(default_factory=dict)
    times: list[int | None] = field(default_factory=list)
    rows: int = 0


class BatchBuilder:
    """Accumulates rows per entity, filling absent fields with ``None``.

    Rows of the same (entity id, entity type) land in one group whatever their
    position in the payload, so a batch yields one EntityRows per entity.
    """

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str | None], _Group] = {}
        self.rejected: list[Rejection] = []
        self.skipped = 0

    def _group(self, entity_id: str, entity_type: str | None) -> _Group:
        key = (entity_id, entity_type)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(entity_type)
        return group

    def add_row(
        self,
        entity_id: str,
        entity_type: str | None,
        values: Mapping[str, Cell],
        event_time_us: int | None = None,
    ) -> None:
        """Append one row whose fields may differ from the previous rows'."""
        group = self._group(entity_id, entity_type)
        columns, before = group.columns, group.rows
        for name, value in values.items():
            column = columns.get(name)
            if column is None:
                column = columns[name] = [None] * before
            column.append(value)
        group.rows = before + 1
        if len(values) != len(columns):
            for column in columns.values():
                if len(column) == before:
                    column.append(None)
        group.times.append(event_time_us)

    def add_columns(
        self,
        entity_id: str,
        entity_type: str | None,
        columns: Mapping[str, Iterable[Cell]],
        rows: int,
        event_times_us: Iterable[int | None] | None = None,
    ) -> None:
        """Append ``rows`` rows given column-wise (every column has ``rows`` values)."""
        group = self._group(entity_id, entity_type)
        before = group.rows
        for name, values in columns.items():
            column = group.columns.get(name)
            if column is None:
                column = group.columns[name] = [None] * before
            column.extend(values)
        group.rows = before + rows
        for column in group.columns.values():
            if len(column) < group.rows:
                column.extend([None] * (group.rows - len(column)))
        if event_times_us is None:
            group.times.extend([None] * rows)
        else:
            group.times.extend(event_times_us)

    def reject(
        self,
        position: str,
        reason: str,
        message: str,
        original: bytes,
        *,
        detail: str | None = None,
        fields: tuple[str, ...] = (),
        entity: str | None = None,
    ) -> None:
        """Set a part of the input aside; ``message`` must quote no value of it."""
        self.rejected.append(Rejection(position, reason, message, original, detail, fields, entity))

    def result(self) -> ParseResult:
        entities = []
        accepted = 0
        for (entity_id, entity_type), group in self._groups.items():
            _unify_numbers(group.columns)
            times = [t for t in group.times if t is not None]
            if len(times) != group.rows:
                times = []  # all or nothing: a partial list could not be matched to rows
            entities.append(EntityRows(entity_id, entity_type, group.columns, times))
            accepted += group.rows
        return ParseResult(entities, self.rejected, accepted, self.skipped)


def _unify_numbers(columns: dict[str, list[Cell]]) -> None:
    """Make a column that mixes int and float all float (``0`` and ``0.64`` in one
    column of wind speeds), so every column has one numeric type downstream."""
    for name, values in columns.items():
        kinds = set(map(type, values))
        if float in kinds and int in kinds:
            columns[name] = [float(v) if type(v) is int else v for v in values]
