"""Magnitudes no meter or sensor can produce (``implausible:`` in the vocabulary).

A metric's ``min``/``max`` is a plausible range: a value outside is flagged and
published, because real weather and real meters do leave it. These limits are
orders of magnitude wider: a reading past them (1e308 Wh, 10,000 °C) is a fault of
the sender, and one such value makes a city's daily total meaningless. Per
source, it is flagged (``out-of-range``, still published: the default) or refused
(not published, counted as dropped ``implausible``).

Interval metrics are bounded per hour of the reading's interval so that one
limit fits 10-minute and daily readings alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ACTIONS = ("flag", "refuse")
UNKNOWN_STEP_S = 31 * 86400  # an interval of unknown length: bounded as a month


@dataclass(frozen=True)
class Limit:
    max_per_hour: float | None = None  # interval metrics
    min: float | None = None  # instant metrics
    max: float | None = None


@dataclass(frozen=True)
class Plausibility:
    on_implausible: str = "flag"
    limits: dict[str, Limit] = field(default_factory=dict)


def load_plausibility(raw: Any, metrics: dict[str, Any], fail) -> Plausibility:
    """The ``implausible`` section; ``fail(key, message)`` returns the ConfigError."""
    if raw is None:
        return Plausibility()
    if not isinstance(raw, dict) or set(raw) - {"on_implausible", "limits"}:
        raise fail("implausible", "expected {on_implausible: flag|refuse, limits: {...}}")
    action = raw.get("on_implausible", "flag")
    if action not in ACTIONS:
        raise fail("implausible.on_implausible", f"expected one of {', '.join(ACTIONS)}")
    limits = {
        name: _limit(f"implausible.limits.{name}", metrics.get(name), spec, fail)
        for name, spec in (raw.get("limits") or {}).items()
    }
    return Plausibility(action, limits)


def _limit(key: str, metric: Any, spec: Any, fail) -> Limit:
    """One metric's limit: ``max_per_hour`` for an interval metric, ``min``/``max``
    for an instant one, numbers."""
    if metric is None:
        raise fail(key, "not a metric of the vocabulary")
    allowed = {"max_per_hour"} if metric.temporal == "interval" else {"min", "max"}
    if not isinstance(spec, dict) or not spec or set(spec) - allowed:
        raise fail(key, f"{metric.temporal} metric: expected {{{', '.join(sorted(allowed))}}}")
    for bound, value in spec.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail(f"{key}.{bound}", "expected a number")
    if spec.get("max_per_hour", 1) <= 0:
        raise fail(f"{key}.max_per_hour", "expected a positive number")
    return Limit(**{bound: float(value) for bound, value in spec.items()})


def implausible(
    limit: Limit, values: list[float], steps: list[int | None] | None, interval: bool
) -> list[int]:
    """Positions of the values past ``limit`` (checked whole first: the common case
    is none, decided by two comparisons)."""
    if interval:
        return _past_rate(limit, values, steps)
    low = limit.min if limit.min is not None else float("-inf")
    high = limit.max if limit.max is not None else float("inf")
    if low <= min(values) and max(values) <= high:
        return []
    return [k for k, v in enumerate(values) if not low <= v <= high]


def _past_rate(limit: Limit, values: list[float], steps: list[int | None] | None) -> list[int]:
    """Interval values past ``max_per_hour`` times their interval's hours (an
    unknown step counts as a month)."""
    if limit.max_per_hour is None:
        return []
    per_second = limit.max_per_hour / 3600
    known = bool(steps) and None not in steps and 0 not in steps  # type: ignore[operator]
    if known and max(map(abs, values)) <= per_second * min(steps):  # type: ignore[type-var]
        return []
    return [
        k for k, v in enumerate(values) if abs(v) > per_second * _step(steps[k] if steps else None)
    ]


def _step(step: int | None) -> int:
    return step if step else UNKNOWN_STEP_S
