"""Every unit the vocabulary admits: its dimension, its factor to the dimension's
base unit, and the names sources use for it (symbols, UN/CEFACT common codes as
in NGSI ``unitCode``, spellings seen in exports).

A complete table rather than a unit library: the vocabulary is closed, every
entry is checked by a test, and a value in a unit of another dimension is a
dead letter (:class:`IncompatibleUnit`), never a silent conversion. ppm to µg/m3
for instance needs a molar mass and a temperature: refused.

Rates are per hour (W, m3/h), so a rate averaged over a step of ``s`` seconds
integrates into its quantity (Wh, m3) by ``s / 3600`` (:data:`INTEGRATES_TO`).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.runtime.errors import RejectedInput

# The table itself is shared with the common API (unit codes), so it lives in the runtime.
from services.runtime.units import BY_NAME, BY_SYMBOL, UNITS, Unit, find_unit  # noqa: F401


class IncompatibleUnit(RejectedInput):
    def __init__(self, message: str):
        super().__init__("incompatible-unit", message)


class UnknownUnit(RejectedInput):
    def __init__(self, message: str):
        super().__init__("unknown-unit", message)


# A rate averaged over a step integrates into this quantity (same base, per hour).
INTEGRATES_TO = {
    "power": "energy",
    "apparent_power": "apparent_energy",
    "reactive_power": "reactive_energy",
    "volume_flow": "volume",
}


@dataclass(frozen=True)
class Conversion:
    """How values in a source unit become the metric's canonical unit.

    ``canonical = value * scale + offset``; when ``integrate`` the value is a rate
    averaged over the step and is further multiplied by ``step_seconds / 3600``.
    """

    scale: float
    offset: float = 0.0
    integrate: bool = False

    @property
    def identity(self) -> bool:
        return self.scale == 1.0 and self.offset == 0.0 and not self.integrate


def conversion(source: Unit, canonical: Unit, *, integrate: bool = False) -> Conversion:
    """The conversion from ``source`` to ``canonical``, or :class:`IncompatibleUnit`."""
    if integrate:
        if INTEGRATES_TO.get(source.dimension) != canonical.dimension:
            raise IncompatibleUnit(
                f"a {source.dimension} in {source.symbol} averaged over a step does not "
                f"integrate into {canonical.dimension} ({canonical.symbol})"
            )
        return Conversion(source.factor / canonical.factor, 0.0, True)
    if source.dimension != canonical.dimension:
        raise IncompatibleUnit(
            f"{source.symbol} ({source.dimension}) cannot be converted to "
            f"{canonical.symbol} ({canonical.dimension})"
        )
    if source is canonical:
        return Conversion(1.0)
    # value -> base: v * f_s + o_s ; base -> canonical: (b - o_c) / f_c
    scale = source.factor / canonical.factor
    offset = (source.offset - canonical.offset) / canonical.factor
    return Conversion(scale, offset)
