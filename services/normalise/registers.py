"""Is a register that went down a rollover, or a meter replaced or reset?

A cumulative register (a meter's index) only grows, except when it wraps at its
declared ``rollover`` (a 9-digit Wh index after 999,999,999) or when the meter is
replaced or reset. A wrap alone cannot tell them apart: a new meter whose index
starts near 0 after an old one above half its range looks exactly like a wrap,
and taking it modulo invents hundreds of MWh in ten minutes. The energy a wrap
implies must also be possible for the meter: at most its largest rate (its
subscribed or cut-off power, or the vocabulary's maximum for the metric) over the
interval, with a margin for overshoot and clock jitter.

Anything else is a replacement or a reset: the consumption of that interval is
unknown (the end of the old register and the start of the new one were never
read), so no value is published for it (an unknown interval is not a measured
zero); it is counted (``register-restarted``) and the first interval of the new
register carries the ``register-restarted`` quality flag.

The largest rate is kept per meter in normalise's state (``rate``, in the metric's
unit per hour: kW for a kWh metric), so a record without the field still has it;
a pending flag (``restarted``) carries the restart over to the next record when
the new register's first reading ended a record.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from services.normalise.quality import COUNTER_ROLLOVER, REGISTER_RESTARTED
from services.normalise.units import INTEGRATES_TO, Unit, find_unit
from services.runtime.errors import ConfigError

# An implied average power up to this many times the meter's largest rate is still
# possible (a meter tolerates overshoot; clocks and index resolution add jitter).
MARGIN = 1.5
HOUR_S = 3600
US = 1_000_000
# Apparent power bounds active and reactive power (|P|, |Q| <= S).
_BOUNDED_BY_APPARENT = ("energy", "reactive_energy", "apparent_energy")


@dataclass(frozen=True)
class RateLimit:
    """Where a measure's largest rate is: a record field, or a fixed value, in ``unit``."""

    unit: Unit
    factor: float  # value in ``unit`` -> the metric's unit per hour
    field: str | None = None
    value: float | None = None


def rate_factor(unit: Unit, metric_unit: Unit) -> float | None:
    """How a rate in ``unit`` becomes the metric's unit per hour (None: it cannot)."""
    rate_of = INTEGRATES_TO.get(unit.dimension)
    if rate_of == metric_unit.dimension or (
        unit.dimension == "apparent_power" and metric_unit.dimension in _BOUNDED_BY_APPARENT
    ):
        return unit.factor / metric_unit.factor
    return None


def parse_rate_limit(raw: Any, metric_unit: Unit, *, where: str, key: str) -> RateLimit:
    """A measure's ``max_rate: {field: PCOUP, unit: kVA}`` or ``{value: 36, unit: kVA}``."""

    def fail(sub: str, message: str) -> ConfigError:
        return ConfigError(message, source=where, key=f"{key}.{sub}" if sub else key)

    if not isinstance(raw, dict) or set(raw) - {"field", "value", "unit"}:
        raise fail("", "expected {field: name, unit: kVA} or {value: number, unit: kVA}")
    if ("field" in raw) == ("value" in raw):
        raise fail("", "give exactly one of field (read per meter) or value (one for all)")
    unit = find_unit(str(raw.get("unit")))
    if unit is None:
        raise fail("unit", f"unknown unit {raw.get('unit')!r} (see services/normalise/units.py)")
    factor = rate_factor(unit, metric_unit)
    if factor is None:
        raise fail(
            "unit",
            f"{unit.symbol} ({unit.dimension}) is not a rate of {metric_unit.symbol} "
            f"({metric_unit.dimension}); a power (kW, kVA) for energy, a flow (m3/h) for volume",
        )
    field, value = raw.get("field"), raw.get("value")
    if field is not None and (not isinstance(field, str) or not field):
        raise fail("field", "expected the name of the field holding the meter's largest rate")
    if value is not None and (not isinstance(value, int | float) or value <= 0):
        raise fail("value", "expected a positive number")
    return RateLimit(unit, factor, field, float(value) if value is not None else None)


def meter_rate(
    limit: RateLimit | None,
    read: float | None,
    state: dict[str, Any] | None,
    default: float | None,
) -> float | None:
    """The meter's largest rate (metric unit per hour): the mapping's value, else the
    one the record carries (``read``, in the limit's unit), else the one remembered
    for the meter, else the vocabulary's for the metric; None when nothing is known."""
    if limit is not None and limit.value is not None:
        return limit.value * limit.factor
    if limit is not None and read is not None and read > 0:
        return read * limit.factor
    remembered = state.get("rate") if state else None
    return remembered if remembered is not None else default


def wrapped(
    previous: float, reading: float, wrap: float | None, seconds: float, rate: float | None
) -> float | None:
    """The consumption between two readings of a register that went down, if it wrapped
    at ``wrap`` (from above half its range to below half, at a possible rate); None
    when it is a replacement or a reset (the consumption is unknown)."""
    if not wrap or previous <= wrap / 2:
        return None
    consumed = reading - previous + wrap
    if consumed >= wrap / 2:
        return None
    if rate is not None and seconds > 0 and consumed > rate * MARGIN * seconds / HOUR_S:
        return None
    return consumed


def remember(state: dict[str, Any], rate: float | None, *, restarted: bool) -> dict[str, Any]:
    """``state`` (a new document, changed in place) with the meter's largest rate read
    from its record, if any, and whether a restart awaits its next interval."""
    if rate is not None:
        state["rate"] = rate
    if restarted:
        state["restarted"] = True
    else:
        state.pop("restarted", None)
    return state


def pending_restart(state: dict[str, Any] | None) -> bool:
    """Whether the meter's register restarted at its last reading (the next interval
    is the new register's first)."""
    return bool(state and state.get("restarted"))


@dataclass
class Intervals:
    """What a run of register readings gives: one interval per pair of readings
    (its start, consumption, quality, step in seconds or None), the register's new
    last reading (None: every reading was stale), and what was not published."""

    times: list[int]
    values: list[float]
    quality: list[int]
    steps: list[int | None]
    register: tuple[int, float] | None
    stale: int = 0
    restarts: int = 0
    pending: bool = False  # the last reading restarted the register: flag the next interval


def intervals(
    ts: list[int],
    readings: list[float],
    qs: list[int],
    prev: tuple[int, float] | None,
    *,
    wrap: float | None,
    rate: float | None,
    decimals: int,
    pending: bool = False,
) -> Intervals:
    """Consumption between consecutive readings (in time order) of one register."""
    if prev is None or ts[0] > prev[0]:
        fast = _growing_run(ts, readings, qs, prev, decimals)
        if fast is not None:
            if pending and fast.times:
                fast.quality[0] |= REGISTER_RESTARTED
            fast.pending = pending and not fast.times
            return fast
    out = Intervals([], [], [], [], None, pending=pending)
    prev_flags = 0
    for t, reading, flags in zip(ts, readings, qs, strict=True):
        if prev is not None:
            prev_t, prev_v = prev
            if t <= prev_t:
                out.stale += 1
                continue
            diff = reading - prev_v
            quality = flags | prev_flags
            if diff < 0:
                consumed = wrapped(prev_v, reading, wrap, (t - prev_t) / US, rate)
                if consumed is None:  # replaced or reset: this interval is unknown
                    out.restarts += 1
                    out.pending = True
                    prev, prev_flags = (t, reading), flags
                    continue
                diff = consumed
                quality |= COUNTER_ROLLOVER
            if out.pending:
                quality |= REGISTER_RESTARTED
                out.pending = False
            step_us = t - prev_t
            out.times.append(prev_t)
            out.values.append(round(diff, decimals))
            out.quality.append(quality)
            out.steps.append(step_us // US if step_us % US == 0 else None)
        prev = (t, reading)
        prev_flags = flags
    out.register = prev if out.stale < len(ts) else None
    return out


def _growing_run(ts, readings, qs, prev, decimals) -> Intervals | None:
    """The common case of :func:`intervals`, column-wise: readings newer than the
    register, never going down, whole-second steps (None when it does not apply)."""
    if prev is None:
        times, values, flags = ts, readings, qs
    else:
        times, values, flags = [prev[0], *ts], [prev[1], *readings], [0, *qs]
    if len(times) < 2:
        return Intervals([], [], [], [], (ts[-1], readings[-1]))
    diffs = [b - a for a, b in pairwise(values)]
    if min(diffs) < 0:
        return None
    steps_us = [b - a for a, b in pairwise(times)]
    if any(step % US for step in steps_us):
        return None
    quality = [a | b for a, b in pairwise(flags)] if any(flags) else [0] * len(diffs)
    return Intervals(
        times[:-1],
        [round(d, decimals) for d in diffs],
        quality,
        [step // US for step in steps_us],
        (ts[-1], readings[-1]),
    )


def describe(spec: Any, max_rates: dict[str, float]) -> str:
    """What decides a drop of a cumulative measure, for ``citeplus normalise check``."""
    if spec.kind != "cumulative":
        return ""
    wrap = f"wraps at {spec.rollover:,.0f}" if spec.rollover else "no rollover: every drop restarts"
    limit: RateLimit | None = spec.max_rate
    default = max_rates.get(spec.metric.name)
    unit = f"{spec.metric.unit.symbol}/h"
    if limit is not None and limit.field:
        rate = f"max rate {limit.field} ({limit.unit.symbol}) per meter"
        rate += f", else {default:g} {unit}" if default else ""
    elif limit is not None:
        rate = f"max rate {limit.value:g} {limit.unit.symbol}"
    elif default:
        rate = f"max rate {default:g} {unit} (vocabulary)"
    else:
        rate = "no max rate: a wrap is judged by half the range only"
    return f"; {wrap}, {rate}"
