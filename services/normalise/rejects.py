"""One bad attribute costs only itself.

An entity with one attribute in a unit that cannot be converted (a pollutant in
ppb where the metric is in µg/m3: that needs a molar mass and a temperature) keeps
its good metrics; the bad attribute alone goes to the dead letters, one letter per
attribute, with its reason. The letter's original is the input record without
the entity's other measured attributes, so sending it again to ``anonymised.v1``
once the mapping is fixed publishes only what was missing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from services.normalise.mapping import MeasureSpec
from services.normalise.units import IncompatibleUnit, UnknownUnit

# What rejects one attribute and not its entity: its unit.
ATTRIBUTE_ERRORS = (UnknownUnit, IncompatibleUnit)


@dataclass(frozen=True)
class AttributeReject:
    """An attribute set aside: why, and which columns its letter leaves out."""

    attribute: str
    reason: str
    message: str
    readings: int
    others: frozenset[str] = frozenset()  # the entity's other measured columns


def own_columns(spec: MeasureSpec) -> set[str]:
    """The columns that belong to one measured attribute: itself and its unit field
    (:func:`other_columns` adds its NGSI sub-attributes, such as ``no2@observedAt``)."""
    return {spec.column, spec.unit_field or spec.column}


def other_columns(
    bad: MeasureSpec, measures: Iterable[MeasureSpec], columns: Iterable[str]
) -> frozenset[str]:
    """The columns of the other measured attributes, which the letter leaves out."""
    mine = own_columns(bad)
    names = set(columns)
    out: set[str] = set()
    for spec in measures:
        if spec.column == bad.column:
            continue
        out |= own_columns(spec)
        prefix = f"{spec.column}@"
        out |= {name for name in names if name.startswith(prefix)}
    return frozenset(out - mine)


def attribute_record(record: dict[str, Any], reject: AttributeReject) -> dict[str, Any]:
    """The input record with only the rejected attribute among its measures."""
    kept = [c for c in record["columns"] if c["name"] not in reject.others]
    return {**record, "columns": kept}
