"""Which members of an ObservationBatch (observations.v2) energy-analytics regroups,
decided on the batch's columns (numpy), without building one record per member.

Why: a batch of a city's source mixes energy series with everything else (air
quality, traffic, parking...), and single readings come a thousand to a message.
The per-record path would explode every member and check each value in Python; here
the dictionary-coded columns say in a few array operations which members are energy
series to aggregate, and whether every one of them passes the checks the per-record
path makes (unit, shape, plausible times, finite non-negative values, carrier and
names). When one would not, the screen says so (None) and the stage lets the
per-record path decide, member by member (its dead letters, its reasons).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import numpy as np

US = 1_000_000
_SAFE = float(1 << 62)


def _chosen(batch: Mapping[str, Any], field: str, allowed: Collection[str]) -> np.ndarray:
    """Per member: whether its dictionary-coded ``field`` is one of ``allowed``."""
    words = batch.get("dictionary") or []
    index = np.asarray(batch.get(field) or [], dtype=np.int64)
    hits = np.array([w in allowed for w in words] + [False], dtype=bool)
    return hits[np.where(index < 0, len(words), index)]


def energy_members(
    batch: Mapping[str, Any],
    metric_carriers: Mapping[str, str | None],
    *,
    plausible: tuple[int, int],
    carriers: Collection[str],
    default_carrier: str,
    forbidden: str,
) -> list[int] | None:
    """Indexes of the members to regroup (energy series with readings), in order; None
    when one energy member would be rejected (the per-record path then decides)."""
    energy = _chosen(batch, "domain", {"energy"}) & _chosen(batch, "metric", metric_carriers)
    if not energy.any():
        return []
    units = _chosen(batch, "unit", {"kWh"})
    counts = np.asarray(batch["values_counts"], dtype=np.int64)
    if not units[energy].all():
        return None
    keep = energy & (counts > 0)  # an empty series is skipped before anything else
    if not keep.any():
        return []
    if not _names_ok(batch, keep, forbidden):
        return None
    if not _carriers_ok(batch, keep, metric_carriers, carriers, default_carrier):
        return None
    if not _shapes_ok(batch, keep, counts) or not _times_ok(batch, keep, counts, plausible):
        return None
    values = np.asarray(batch["values"], dtype=np.float64)[np.repeat(keep, counts)]
    if not (np.isfinite(values).all() and (values >= 0).all()):
        return None
    return np.flatnonzero(keep).tolist()


def _names_ok(batch: Mapping[str, Any], energy: np.ndarray, forbidden: str) -> bool:
    """City, zone and sector make aggregate keys: no '|', and not the total's name."""

    def bad(name: str) -> bool:
        return "|" in name or name == forbidden

    if bad(batch["city"]):
        return False
    wrong = {w for w in batch.get("dictionary") or [] if bad(w)}
    return not any((energy & _chosen(batch, f, wrong)).any() for f in ("zone", "sector"))


def _carriers_ok(batch, energy, metric_carriers, carriers, default_carrier) -> bool:
    """Each energy member's carrier (its metric's, else its own, else the default)
    is one the stage knows."""
    forced = {c for c in metric_carriers.values() if c is not None}
    if default_carrier not in carriers or not forced <= set(carriers):
        return False
    own = {m for m, c in metric_carriers.items() if c is None}  # the record says
    index = np.asarray(batch.get("carrier") or [], dtype=np.int64)
    known = _chosen(batch, "carrier", {*carriers, ""}) | (index < 0)
    return not (energy & _chosen(batch, "metric", own) & ~known).any()


def _shapes_ok(batch: Mapping[str, Any], keep: np.ndarray, counts: np.ndarray) -> bool:
    """A positive step, or one time per value; a quality flag per value or none."""
    steps = np.asarray(batch["step_seconds"], dtype=np.int64)[keep]
    times = np.asarray(batch["times_counts"], dtype=np.int64)[keep]
    quality = np.asarray(batch["quality_counts"], dtype=np.int64)[keep]
    n = counts[keep]
    if (steps < 0).any() or ((steps == 0) & (times != n)).any():
        return False
    return bool(((quality == 0) | (quality == n)).all())


def _times_ok(batch, keep: np.ndarray, counts: np.ndarray, plausible: tuple[int, int]) -> bool:
    """Every reading between the plausible bounds (first instant, end of the last
    interval), as the per-record check computes them."""
    steps = np.asarray(batch["step_seconds"], dtype=np.int64)
    start = np.asarray(batch["start"], dtype=np.int64)
    regular = keep & (steps > 0)
    span = steps[regular].astype(np.float64) * US * counts[regular]
    if (np.abs(start[regular]) + span >= _SAFE).any():
        return False  # beyond int64: the per-record path says why
    end = start[regular] + steps[regular] * US * counts[regular]
    if (start[regular] < plausible[0]).any() or (end >= plausible[1]).any():
        return False
    irregular = keep & (steps == 0)
    if not irregular.any():
        return True
    times_counts = np.asarray(batch["times_counts"], dtype=np.int64)
    times = np.asarray(batch["times"], dtype=np.int64)[np.repeat(irregular, times_counts)]
    return bool((times >= plausible[0]).all() and (times < plausible[1]).all())
