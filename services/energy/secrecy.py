"""Statistical secrecy: which cells of an energy table are published, which withheld.

Pure functions, no I/O. The table of one city x carrier x local day holds cells
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

Beyond exact recovery, an attacker who knows that energy is never negative bounds
a withheld value; :func:`plan` widens the suppression until no withheld cell's
bounds lie within ``PROTECTION`` of its value (see :func:`_exposed`), and
``tests/unit/test_energy_release_attack.py`` attacks every record released with
``scipy.optimize.linprog``.

Thresholds: ``min_meters`` (at least 10, refused below at load) for every cell
that may hold homes; sectors a city file declares ``non_residential`` may use a
lower one (3 at least).
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
# What a released record says of a withheld cell: that it is withheld, not why.
CONFIDENTIAL = "confidential"
# A withheld cell's interval, as an attacker with non-negativity computes it, must
# not lie within this share of its value (the threat model says 10 %: margin kept).
PROTECTION = 0.15

Cell = tuple[str, str]  # (zone, sector); a total has zone "*" (and sector "*" for the city)
# (withheld cells with their day-level reason, (window, cell) that failed the rule themselves)
Plan = tuple[dict[Cell, str], dict[tuple[Any, Cell], str]]


RESIDENTIAL_MIN_METERS = 10  # Code de l'énergie D.111-52: residential aggregates of >= 10 points
NON_RESIDENTIAL_FLOOR = 3  # the lowest threshold a city may declare for non-residential sectors
# Sectors that can never be declared non-residential: homes, and what may hold homes.
NEVER_NON_RESIDENTIAL = frozenset({"residential", "unknown", TOTAL})


@dataclass(frozen=True)
class SecrecyPolicy:
    """A city's rule: at least ``min_meters`` delivery points, none above ``dominance_share``.

    ``non_residential`` names sectors (industry, public lighting...) where the city
    file allows ``non_residential_min_meters`` instead: a cell of such a sector, or
    its sector total, needs only that many points. Every cell that may hold homes
    (residential, unknown, the city total across sectors) keeps ``min_meters``.
    """

    min_meters: int = RESIDENTIAL_MIN_METERS
    dominance_share: float = 0.85
    non_residential: frozenset[str] = frozenset()
    non_residential_min_meters: int = RESIDENTIAL_MIN_METERS

    def minimum(self, sector: str) -> int:
        """Delivery points a cell of ``sector`` needs (``*``: the city total)."""
        if sector in self.non_residential:
            return self.non_residential_min_meters
        return self.min_meters

    @classmethod
    def from_config(cls, raw: Any, *, source: str | None, key: str = "secrecy") -> SecrecyPolicy:
        """Validate a city file's ``secrecy:`` block; missing keys take the defaults.

        A residential threshold under 10 is refused (it is the law's, not a
        preference); a lower one is allowed only for sectors the file declares
        non-residential, and never under 3.
        """
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise ConfigError(
                "expected a mapping with min_meters and dominance_share", source=source, key=key
            )
        unknown = set(raw) - {"min_meters", "dominance_share", "non_residential"}
        if unknown:
            raise ConfigError(
                f"unknown keys {sorted(unknown)} (allowed: dominance_share, min_meters, "
                "non_residential)",
                source=source,
                key=key,
            )
        defaults = cls()
        minimum = raw.get("min_meters", defaults.min_meters)
        if not _whole(minimum) or minimum < RESIDENTIAL_MIN_METERS:
            raise ConfigError(
                f"expected a whole number of delivery points >= {RESIDENTIAL_MIN_METERS} "
                f"(residential consumption is published only in aggregates of at least "
                f"{RESIDENTIAL_MIN_METERS} delivery points, Code de l'énergie D.111-52), got "
                f"{minimum!r}; a lower threshold may apply only to sectors declared under "
                f"{key}.non_residential",
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
        sectors, lower = _non_residential(raw.get("non_residential"), minimum, source, key)
        return cls(minimum, float(share), sectors, lower)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _non_residential(
    raw: Any, residential: int, source: str | None, key: str
) -> tuple[frozenset[str], int]:
    """``non_residential: {sectors: [...], min_meters: N}`` of a city's secrecy block."""
    where = f"{key}.non_residential"
    if raw is None:
        return frozenset(), RESIDENTIAL_MIN_METERS
    if not isinstance(raw, Mapping) or set(raw) - {"sectors", "min_meters"}:
        raise ConfigError(
            "expected a mapping {sectors: [industry, ...], min_meters: N}", source=source, key=where
        )
    sectors = raw.get("sectors")
    if (
        not isinstance(sectors, list)
        or not sectors
        or not all(isinstance(s, str) and s for s in sectors)
    ):
        raise ConfigError(
            "expected a non-empty list of sector names", source=source, key=f"{where}.sectors"
        )
    homes = sorted(set(sectors) & NEVER_NON_RESIDENTIAL)
    if homes:
        raise ConfigError(
            f"{homes} may hold homes and keep the residential threshold",
            source=source,
            key=f"{where}.sectors",
        )
    lower = raw.get("min_meters", residential)
    if not _whole(lower) or not NON_RESIDENTIAL_FLOOR <= lower <= residential:
        raise ConfigError(
            f"expected a whole number of delivery points from {NON_RESIDENTIAL_FLOOR} to "
            f"{residential} (the residential threshold), got {lower!r}",
            source=source,
            key=f"{where}.min_meters",
        )
    return frozenset(sectors), lower


class Figures(NamedTuple):
    """What the rule looks at in one cell and window."""

    meters: int
    energy: float
    largest: float  # energy of the largest single delivery point


def primary_reason(
    figures: Figures, policy: SecrecyPolicy, sector: str = "residential"
) -> str | None:
    """Why this cell (of ``sector``) must be withheld on its own, or None. No meter:
    nothing to protect."""
    if figures.meters == 0:
        return None
    if figures.meters < policy.minimum(sector):
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
            why = primary_reason(figures, policy, cell[1])
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
    while True:
        exposed = _exposed(windows, withheld)
        if exposed is not None:
            more = _widen(exposed, withheld, ranked)
        else:
            more = _thin_residual(windows, withheld, policy, ranked)
            if more is None:
                return withheld, own
        withheld = secondary({**withheld, more: SECONDARY}, ranked)


def _group(cells: Mapping[Cell, Figures], members: Iterable[Cell]) -> Figures:
    """What an attacker holds of several withheld cells taken together: their sum."""
    meters, energy, largest = 0, 0.0, 0.0
    for cell in members:
        figures = cells.get(cell)
        if figures is not None:
            meters += figures.meters
            energy += figures.energy
            largest = max(largest, figures.largest)
    return Figures(meters, energy, largest)


def _thin_residual(
    windows: Mapping[Any, Mapping[Cell, Figures]],
    withheld: Mapping[Cell, str],
    policy: SecrecyPolicy,
    sizes: Mapping[Cell, float],
) -> Cell | None:
    """A published cell to withhold next because, in some window, what a published
    total minus its published parts leaves (the sum of the withheld parts) is itself
    a group that fails the rule, or None.

    The pattern is chosen for the whole day, but a complement may be empty in some
    windows (a zone whose meters report half the day): there the residual is the
    primary cell alone, exactly. Each residual must pass the rule as a cell of its
    own: a sector total over its withheld zones; the city total over the withheld
    zones of withheld sectors (the attacker subtracts the published sector totals
    and the published zones of the withheld ones). Residential thresholds apply to a
    mix of sectors.
    """
    for window in sorted(windows, key=repr):
        cells = windows[window]
        for residual in _residuals(cells, withheld):
            if not residual.hidden:
                continue
            if primary_reason(_group(cells, residual.hidden), policy, residual.sector) is None:
                continue
            candidates = [c for c in residual.shown if cells[c].meters > 0]
            if candidates:
                return min(candidates, key=lambda c: (sizes.get(c, 0.0), c))
            return residual.total
    return None


class _Residual(NamedTuple):
    """What subtracting a published ``total``'s published parts (``shown``) leaves an
    attacker: the sum of the ``hidden`` parts, judged with ``sector``'s threshold."""

    hidden: list[Cell]
    shown: list[Cell]
    sector: str
    total: Cell


def _residuals(cells: Mapping[Cell, Figures], withheld: Mapping[Cell, str]) -> list[_Residual]:
    """The residual of every published total of one window: the sector totals (in
    sector order), then the city total."""
    zones: dict[str, list[Cell]] = {}
    for cell in cells:
        if cell[0] != TOTAL:
            zones.setdefault(cell[1], []).append(cell)
    out: list[_Residual] = []
    for sector, parts in sorted(zones.items()):
        if (TOTAL, sector) not in withheld:
            hidden = [c for c in parts if c in withheld]
            shown = [c for c in parts if c not in withheld]
            out.append(_Residual(hidden, shown, sector, (TOTAL, sector)))
    if (TOTAL, TOTAL) not in withheld:
        out.append(_city_residual(zones, withheld))
    return out


def _city_residual(zones: Mapping[str, list[Cell]], withheld: Mapping[Cell, str]) -> _Residual:
    """The published city total's residual: the withheld zones of withheld sectors
    (a single sector keeps its own threshold; a mix takes the residential one)."""
    hidden_sectors = [s for s in sorted(zones) if (TOTAL, s) in withheld]
    hidden = [c for s in hidden_sectors for c in zones[s] if c in withheld]
    shown = [c for s in hidden_sectors for c in zones[s] if c not in withheld]
    sector = hidden_sectors[0] if len(hidden_sectors) == 1 else "residential"
    return _Residual(hidden, shown, sector, (TOTAL, TOTAL))


def _exposed(
    windows: Mapping[Any, Mapping[Cell, Figures]], withheld: Mapping[Cell, str]
) -> Cell | None:
    """A withheld sector total whose interval an attacker narrows to within
    ``PROTECTION`` of its value in some window, or None.

    With non-negativity, and no equation left with a single withheld member, the
    bounds of a withheld cell have a closed form on this two-level table: a
    withheld zone lies in [0, ...] (another withheld member can take it all); the
    city total, when withheld, is unbounded above; only a withheld sector total
    ``S`` under a published city total has a lower bound above 0: the sum ``P``
    of its published zones. Its upper bound is ``P`` plus the withheld zones of
    every withheld sector total. Energy and meter counts add up alike. Hour and
    day figures are sums of quarter figures, so checking each window with its
    own figures is checking the bounds the whole day gives.
    """
    if (TOTAL, TOTAL) in withheld:
        return None
    hidden = sorted(c for c in withheld if c[0] == TOTAL)
    if not hidden:
        return None
    for window in sorted(windows, key=repr):
        for measure in (0, 1):  # meter count, energy
            exposed = _narrowed(windows[window], withheld, hidden, measure)
            if exposed is not None:
                return exposed
    return None


def _narrowed(
    cells: Mapping[Cell, Figures], withheld: Mapping[Cell, str], hidden: list[Cell], measure: int
) -> Cell | None:
    """The first of the ``hidden`` sector totals whose bounds on ``measure`` (0: meter
    count, 1: energy) lie within ``PROTECTION`` of its value in this window, or None."""
    published: dict[Cell, float] = {}
    unknown: dict[Cell, float] = {}
    for total in hidden:
        parts = [c for c in cells if c[0] != TOTAL and c[1] == total[1]]
        published[total] = sum(cells[c][measure] for c in parts if c not in withheld)
        unknown[total] = sum(cells[c][measure] for c in parts if c in withheld)
    spread = sum(unknown.values())
    for total in hidden:
        figures = cells.get(total)
        if figures is None or figures.meters == 0:
            continue
        value = published[total] + unknown[total]
        low, high = published[total], published[total] + spread
        if low >= (1 - PROTECTION) * value and high <= (1 + PROTECTION) * value:
            return total
    return None


def _widen(total: Cell, withheld: Mapping[Cell, str], sizes: Mapping[Cell, float]) -> Cell:
    """The cell to withhold next so that ``total`` is no longer exposed: the smallest
    published zone of its sector (its lower bound falls), else the city total."""
    zones = [c for c in sizes if c[0] != TOTAL and c[1] == total[1] and c not in withheld]
    if zones:
        return min(zones, key=lambda c: (sizes.get(c, 0.0), c))
    return (TOTAL, TOTAL)


def reason(
    cells: Mapping[Cell, str], own: Mapping[tuple[Any, Cell], str], window: Any, cell: Cell
) -> str | None:
    """Why ``cell`` is withheld in ``window`` (None: published)."""
    if cell not in cells:
        return None
    return own.get((window, cell), cells[cell])
