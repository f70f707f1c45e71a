"""Statistical secrecy: which cells of an energy table are published, which withheld.

Pure functions, no I/O. The table of one city x carrier x UTC day holds cells
``(zone, sector)``, the city total of each sector ``("*", sector)`` and the city
total ``("*", "*")``, in every window of the day (quarters, hours, the day).

Primary rule (per cell and window, from the city's policy): a cell with at least
one delivery point but fewer than ``min_meters`` of them, or whose largest
delivery point holds more than ``dominance_share`` of its energy, is withheld
(French energy-data publication: at least 10 delivery points; dominance 85%).

A withheld value must not come back by arithmetic on what is published:

- across space: a sector's city total is the sum of its zones, the city total
  the sum of its sectors. Secondary suppression works on these equations until
  none has exactly one withheld member: then the smallest published zone of the
  sector is withheld too (or, when none is left, the total).
- across time: an hour is the sum of its quarters, the day the sum of its
  hours. A cell withheld in one window of the day is withheld in every window of
  that day (reason ``temporal`` where its own window passed the rule).

So the withheld cells form one pattern, the same in every window of the day.
Why that is enough: take any withheld cell c. Because no equation of the spatial
table has exactly one withheld member (and totals nest), there is a change of
the withheld values, zero on published ones, that keeps every spatial equation
and moves c; applying it to every window scaled by the window's length in
quarters (x1 a quarter, x4 an hour, x96 the day) keeps every time equation too.
So the published figures fit more than one value of c: it cannot be recovered.
``tests/unit/test_energy_secrecy.py`` checks this by linear algebra on random
tables. Meter counts add up the same way and are withheld with the energy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from services.runtime.errors import ConfigError

TOTAL = "*"
MIN_METERS = "min-meters"
DOMINANCE = "dominance"
SECONDARY = "secondary"
TEMPORAL = "temporal"

Cell = tuple[str, str]  # (zone, sector); a total has zone "*" (and sector "*" for the city)
# (withheld cells with their day-level reason, (window, cell) that failed the rule themselves)
Plan = tuple[dict[Cell, str], dict[tuple[Any, Cell], str]]


@dataclass(frozen=True)
class SecrecyPolicy:
    """A city's rule: at least ``min_meters`` delivery points, none above ``dominance_share``."""

    min_meters: int = 10
    dominance_share: float = 0.85

    @classmethod
    def from_config(cls, raw: Any, *, source: str | None, key: str = "secrecy") -> SecrecyPolicy:
        """Validate a city file's ``secrecy:`` block; missing keys take the defaults."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise ConfigError(
                "expected a mapping with min_meters and dominance_share", source=source, key=key
            )
        unknown = set(raw) - {"min_meters", "dominance_share"}
        if unknown:
            raise ConfigError(
                f"unknown keys {sorted(unknown)} (allowed: dominance_share, min_meters)",
                source=source,
                key=key,
            )
        defaults = cls()
        minimum = raw.get("min_meters", defaults.min_meters)
        if not isinstance(minimum, int) or isinstance(minimum, bool) or minimum < 1:
            raise ConfigError(
                f"expected a whole number of delivery points >= 1, got {minimum!r}",
                source=source,
                key=f"{key}.min_meters",
            )
        share = raw.get("dominance_share", defaults.dominance_share)
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
            raise ConfigError(
                f"expected a share in (0, 1], such as 0.85, got {share!r}",
                source=source,
                key=f"{key}.dominance_share",
            )
        return cls(minimum, float(share))


class Figures(NamedTuple):
    """What the rule looks at in one cell and window."""

    meters: int
    energy: float
    largest: float  # energy of the largest single delivery point


def primary_reason(figures: Figures, policy: SecrecyPolicy) -> str | None:
    """Why this cell must be withheld on its own, or None. No meter: nothing to protect."""
    if figures.meters == 0:
        return None
    if figures.meters < policy.min_meters:
        return MIN_METERS
    if figures.energy > 0 and figures.largest > policy.dominance_share * figures.energy:
        return DOMINANCE
    return None


def equations(cells: Iterable[Cell]) -> list[tuple[Cell, list[Cell]]]:
    """(total, parts) of the table: each sector total over its zones, the city over sectors."""
    by_sector: dict[str, list[Cell]] = {}
    for zone, sector in cells:
        if zone != TOTAL:
            by_sector.setdefault(sector, []).append((zone, sector))
    out: list[tuple[Cell, list[Cell]]] = [
        ((TOTAL, sector), sorted(parts)) for sector, parts in sorted(by_sector.items())
    ]
    if by_sector:
        out.append(((TOTAL, TOTAL), [(TOTAL, sector) for sector in sorted(by_sector)]))
    return out


def secondary(withheld: Mapping[Cell, str], sizes: Mapping[Cell, float]) -> dict[Cell, str]:
    """Add complementary suppressions until no equation has exactly one withheld member.

    ``sizes`` lists every cell of the table (zones and totals) with the energy
    that ranks complements: the smallest published part goes first (least
    information lost); the total only when no part is left. Ties break on names,
    so the result does not depend on the order of the input.
    """
    out = dict(withheld)
    system = equations(sizes)
    changed = True
    while changed:
        changed = False
        for total, parts in system:
            members = [total, *parts]
            hidden = sum(1 for m in members if m in out)
            if hidden != 1:
                continue
            published = [p for p in parts if p not in out]
            if published:
                pick = min(published, key=lambda c: (sizes.get(c, 0.0), c))
                out[pick] = SECONDARY
            else:
                out[total] = SECONDARY
            changed = True
    return out


def plan(
    windows: Mapping[Any, Mapping[Cell, Figures]],
    policy: SecrecyPolicy,
    sizes: Mapping[Cell, float] | None = None,
) -> Plan:
    """The withheld pattern of one day's table.

    Returns ``(cells, own)``: every withheld cell with its day-level reason, and
    the windows where a cell failed the rule itself (their reason is that rule).
    Use :func:`reason` to read the reason of one cell in one window.
    """
    own: dict[tuple[Any, Cell], str] = {}
    first: dict[Cell, str] = {}
    every: set[Cell] = set()
    for window in sorted(windows, key=repr):
        for cell, figures in windows[window].items():
            every.add(cell)
            why = primary_reason(figures, policy)
            if why is not None:
                own[(window, cell)] = why
                if first.get(cell) != MIN_METERS:
                    first[cell] = why
    if sizes is None:
        sizes = {}
        for cells in windows.values():
            for cell, figures in cells.items():
                sizes[cell] = max(sizes.get(cell, 0.0), figures.energy)
    ranked = {cell: sizes.get(cell, 0.0) for cell in every}
    withheld = secondary({cell: TEMPORAL for cell in first}, ranked)
    return withheld, own


def reason(
    cells: Mapping[Cell, str], own: Mapping[tuple[Any, Cell], str], window: Any, cell: Cell
) -> str | None:
    """Why ``cell`` is withheld in ``window`` (None: published)."""
    if cell not in cells:
        return None
    return own.get((window, cell), cells[cell])
