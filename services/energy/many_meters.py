"""The members of a regrouped message read as columns, when each is a short regular
series inside one local day: single readings, the usual case.

Why: taken one by one, each member became a dict, had its watermarks read and
compared, its readings split into days and its open days checked: more than half of
the aggregate's time per single reading, for work that is the same for every member
of the message (one city, carrier and source partition). Here the members' days and
the watermarks they would see in turn are computed once, as arrays; the stage then
merges each meter's day in arrival order as before (:meth:`EnergyStage._aggregate_together`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.energy.columns import day_starts
from services.energy.windows import Piece

US = 1_000_000
_SAFE = float(1 << 62)

Watermark = Callable[[Mapping[str, int], int], int]


@dataclass(frozen=True)
class OneDayMembers:
    """A message's members, each a regular series within one local day."""

    carrier: str
    meters: list[str]
    zones: list[str]
    sectors: list[str]
    starts: np.ndarray  # first instant per member (µs)
    ends: np.ndarray  # end of the last interval per member (µs)
    days: list[int]  # start of the member's local day (µs)
    pieces: list[list[Piece]]  # as windows.pieces_by_day gives the member's one day

    @property
    def readings(self) -> int:
        return sum(len(p) for p in self.pieces)


def one_day_members(batch: Mapping[str, Any], timezone: str, most: int) -> OneDayMembers | None:
    """The members, or None when one is not a regular series of 1 to ``most``
    readings inside one local day, or names no cell or another carrier."""
    steps = np.asarray(batch["step_seconds"], dtype=np.int64)
    counts = np.asarray(batch["values_counts"], dtype=np.int64)
    if not counts.size or (steps <= 0).any() or (counts < 1).any() or (counts > most).any():
        return None
    names = _names(batch)
    if names is None:
        return None
    starts = np.asarray(batch["start"], dtype=np.int64)
    if (np.abs(starts) + steps.astype(np.float64) * US * counts >= _SAFE).any():
        return None
    ends = starts + steps * US * counts
    try:
        bounds = day_starts(int(starts.min()), int(ends.max()) - 1, timezone)
    except (ValueError, OverflowError):  # no calendar date (year past 9999): the record path
        return None
    if bounds is None:
        return None
    first = np.searchsorted(bounds, starts, "right") - 1
    if (np.searchsorted(bounds, ends - 1, "right") - 1 != first).any():
        return None  # across local midnight: the record path shares it out
    days = bounds[first].tolist()
    pieces = _pieces(batch["values"], starts.tolist(), (steps * US).tolist(), counts, days)
    return OneDayMembers(*names, starts, ends, days, pieces)


def _names(batch: Mapping[str, Any]) -> tuple[str, list[str], list[str], list[str]] | None:
    """(carrier, meters, zones, sectors); None when a name is missing or the members
    do not share one carrier (energy-analytics writes one per message)."""
    words = batch.get("dictionary") or []
    coded = [batch.get(field) or [] for field in ("carrier", "zone", "sector")]
    if any(min(codes, default=-1) < 0 for codes in coded) or len(set(coded[0])) != 1:
        return None
    carrier = words[coded[0][0]]
    zones, sectors = ([words[c] for c in codes] for codes in coded[1:])
    return carrier, list(batch["entity_pseudonym"]), zones, sectors


def _pieces(values, starts, steps, counts, days) -> list[list[Piece]]:
    """Each member's (offset from its day's start, length, value) per reading."""
    out, at = [], 0
    for start, step, count, day in zip(starts, steps, counts.tolist(), days, strict=True):
        offset = start - day
        out.append([(offset + k * step, step, values[at + k]) for k in range(count)])
        at += count
    return out


@dataclass(frozen=True)
class WatermarkPath:
    """What the members do to their group's watermarks, taken in turn: the highest
    watermark one of them is checked against or makes, and the marks once all are
    taken."""

    highest: int
    partitions: dict[str, int]
    earliest: int
    changed: bool  # whether the stored marks change


def watermark_path(
    partitions: Mapping[str, int],
    earliest: int,
    source: str,
    members: OneDayMembers,
    watermark: Watermark,
) -> WatermarkPath:
    """The members move the source partition's latest end and the group's earliest
    start, each in turn. Member k is checked (``EnergyStage._aggregate``) against
    the marks the members before it left, with the earliest already lowered by its
    own start (a partition not heard of counts at the earliest: lowering it can
    raise the watermark), then makes the marks with its own end. Each distinct
    (source end, earliest) pair is computed once."""
    prior = partitions.get(source, 0)
    newest = np.maximum(np.maximum.accumulate(members.ends), prior)
    lowest = np.minimum(np.minimum.accumulate(members.starts), earliest)
    checked = np.stack((newest[:-1], lowest[1:]), axis=1)  # members 1.. : before, own start
    made = np.stack((newest, lowest), axis=1)
    pairs = np.unique(np.concatenate((checked, made)), axis=0).tolist()
    seen = [watermark({**partitions, source: end}, low) for end, low in pairs]
    if partitions:  # member 0 is checked against the stored marks
        seen.append(watermark(partitions, int(lowest[0])))
    final = {**partitions, source: int(newest[-1])}
    changed = source not in partitions or int(newest[-1]) > prior or int(lowest[-1]) < earliest
    return WatermarkPath(max(seen), final, int(lowest[-1]), changed)
