"""energy-analytics' state, named: the keys of its changelog and the records under them.

The changelog (``energy.state.v1``, store ``energy``) holds four kinds of record,
each under a key built here and nowhere else:

- :class:`Watermarks` (``wm|city|carrier``): per observations partition, the latest
  reading end seen; the group's earliest reading; the end of the last closed day;
- :class:`MeterDay` (``md|city|carrier|day|zone|sector|meter``): one meter's
  readings of one local day, as (offset from the day's start, length, kWh) pieces;
- the cell day (``cd|city|carrier|day|zone|sector``): a cell's quarters, whose
  shape :mod:`services.energy.windows` owns (a plain dict, read by aggregate.py);
- :class:`GroupDay` (``gd|city|carrier|day``): the day's version (it grows with
  every record that changed the day) and its cells (``zone|sector``).

Stored format: version 2 writes named fields and ``"format": 2``. Records written
before (single-letter fields ``o``/``l``/``v``, ``v``/``cells``, ``p``/``f``/``c``)
are read as they are, so a changelog written by an earlier release restores; they
are rewritten in the new format the next time their day changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.energy.windows import Piece

FORMAT = 2
WATERMARKS = "wm"
METER_DAY = "md"
CELL_DAY = "cd"
GROUP_DAY = "gd"


# -- keys ---------------------------------------------------------------------------
def watermarks_key(city: str, carrier: str) -> str:
    return f"{WATERMARKS}|{city}|{carrier}"


def meter_day_key(city: str, carrier: str, day: int, zone: str, sector: str, meter: str) -> str:
    return "|".join((METER_DAY, city, carrier, str(day), zone, sector, meter))


def cell_day_key(city: str, carrier: str, day: int, cell: str) -> str:
    """``cell`` is ``zone|sector`` (a GroupDay's cell name)."""
    return "|".join((CELL_DAY, city, carrier, str(day), cell))


def group_day_key(city: str, carrier: str, day: int) -> str:
    return "|".join((GROUP_DAY, city, carrier, str(day)))


def cell_name(zone: str, sector: str) -> str:
    return f"{zone}|{sector}"


def meter_day_of(key: str) -> tuple[str, str, int] | None:
    """(city, carrier, day) of a meter-day key; None for any other kind of key."""
    if not key.startswith(METER_DAY + "|"):
        return None
    _, city, carrier, day, _rest = key.split("|", 4)
    return city, carrier, int(day)


# -- records ------------------------------------------------------------------------
@dataclass(slots=True)
class Watermarks:
    """Event time of a city and carrier: what decides which local days are closed."""

    partitions: dict[str, int]  # observations partition -> latest reading end (µs)
    earliest: int  # the group's earliest reading start (µs)
    closed: int = 0  # days ending at or before this (µs) are closed and released

    @classmethod
    def read(cls, stored: dict[str, Any] | None, first: int) -> Watermarks:
        """The stored marks (either format), or fresh ones starting at ``first``."""
        if stored is None:
            return cls({}, first)
        if stored.get("format") == FORMAT:
            return cls(dict(stored["partitions"]), stored["earliest"], stored.get("closed", 0))
        return cls(dict(stored["p"]), stored["f"], stored.get("c", 0))

    def stored(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "partitions": self.partitions,
            "earliest": self.earliest,
            "closed": self.closed,
        }


@dataclass(slots=True)
class MeterDay:
    """One meter's readings of one local day: parallel lists of piece offsets (µs from
    the day's start), lengths (µs, 0 for an instant) and energies (kWh)."""

    offsets: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    @classmethod
    def read(cls, stored: dict[str, Any] | None) -> MeterDay:
        if stored is None:
            return cls()
        if stored.get("format") == FORMAT:
            return cls(stored["offsets"], stored["lengths"], stored["values"])
        return cls(stored["o"], stored["l"], stored["v"])

    @classmethod
    def of(cls, pieces: list[Piece]) -> MeterDay:
        return cls([p[0] for p in pieces], [p[1] for p in pieces], [p[2] for p in pieces])

    def pieces(self) -> list[Piece]:
        return list(zip(self.offsets, self.lengths, self.values, strict=True))

    def stored(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "offsets": self.offsets,
            "lengths": self.lengths,
            "values": self.values,
        }


@dataclass(slots=True)
class GroupDay:
    """A city and carrier's local day: its version and the cells it has."""

    version: int = 0
    cells: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, stored: dict[str, Any] | None) -> GroupDay | None:
        if stored is None:
            return None
        if stored.get("format") == FORMAT:
            return cls(stored["version"], list(stored["cells"]))
        return cls(stored["v"], list(stored["cells"]))

    def changed(self, cell: str) -> GroupDay:
        """The day after a record changed ``cell``: one version more."""
        cells = self.cells if cell in self.cells else [*self.cells, cell]
        return GroupDay(self.version + 1, sorted(cells))

    def stored(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": self.version, "cells": self.cells}
