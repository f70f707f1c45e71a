"""Which values of an energy Observation are readings at all.

A value flagged ``counter-reset`` (bit 5 of ``Observation.quality``, see
``deploy/vocabulary.yaml``) is the interval across a register that went down
(a meter replaced or reset), which normalise versions before register
plausibility published as 0 kWh: its consumption is unknown, and an unknown
interval is not a measured zero. It must neither add energy nor make the meter
count as having reported in that window. (Normalise now publishes nothing for
such an interval.) The constant is repeated here because services meet only on
topics; a test checks it against the vocabulary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.runtime.errors import RejectedInput

US = 1_000_000
UNKNOWN_INTERVAL = 1 << 5  # quality flag counter-reset


def known_parts(record: Mapping[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """The record as series holding only known values, and how many were unknown."""
    quality = record.get("quality") or []
    if quality and len(quality) != len(record["values"]):
        raise RejectedInput("energy-series", "quality must be empty or one flag set per value")
    if not any(q & UNKNOWN_INTERVAL for q in quality):
        return [dict(record)], 0
    keep = [i for i, q in enumerate(quality) if not q & UNKNOWN_INTERVAL]
    unknown = len(quality) - len(keep)
    step = record["step_seconds"]
    if not step or step <= 0:
        return _irregular_part(record, keep), unknown
    return _regular_parts(record, keep, step), unknown


def _irregular_part(record: Mapping[str, Any], keep: list[int]) -> list[dict[str, Any]]:
    """An irregular series (``times``) keeps its known values as one series (none
    when every value is unknown)."""
    if not keep:
        return []
    times, values, quality = record["times"], record["values"], record["quality"]
    part = {
        **record,
        "start": times[keep[0]],
        "times": [times[i] for i in keep],
        "values": [values[i] for i in keep],
        "quality": [quality[i] for i in keep],
    }
    return [part]


def _regular_parts(record: Mapping[str, Any], keep: list[int], step: int) -> list[dict[str, Any]]:
    """A regular series splits into one series per run of consecutive known values,
    each starting at its first value's time: an unknown interval is a gap."""
    values, quality = record["values"], record["quality"]
    parts = []
    k = 0
    while k < len(keep):
        j = k + 1
        while j < len(keep) and keep[j] == keep[j - 1] + 1:
            j += 1
        first, last = keep[k], keep[j - 1] + 1
        parts.append(
            {
                **record,
                "start": record["start"] + first * step * US,
                "values": list(values[first:last]),
                "quality": list(quality[first:last]),
            }
        )
        k = j
    return parts
