"""Parameters of the temporal routes: ``timerel`` / ``timeAt`` / ``endTimeAt``,
``lastN``, ``aggrMethods`` / ``aggrPeriodDuration`` and the temporal ``options``.

Times are ISO 8601 with an explicit zone (``Z`` or an offset): a local time without
one would be read differently by every city, so it is refused. Durations are ISO 8601
of fixed length (weeks, days, hours, minutes, seconds); years and months have no fixed
length and are refused. ``PT0S`` (NGSI-LD: the whole range) needs both bounds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from multidict import MultiMapping

from services.api.ngsi.names import Names
from services.api.ngsi.params import (
    ENTITY_PARAMS,
    Page,
    Selection,
    page,
    representation,
    selection,
    single,
)
from services.api.ngsi.problems import bad_data, shown

TEMPORAL_PARAMS = ENTITY_PARAMS | frozenset(
    {"timerel", "timeAt", "endTimeAt", "lastN", "aggrMethods", "aggrPeriodDuration", "timeproperty"}
)
ONE_TEMPORAL_PARAMS = TEMPORAL_PARAMS - {
    "type",
    "id",
    "idPattern",
    "q",
    "georel",
    "geometry",
    "coordinates",
    "geoproperty",
    "limit",
    "offset",
    "count",
}
METHODS = ("sum", "avg", "min", "max")
OTHER_METHODS = ("totalCount", "distinctCount", "stddev", "sumsq")
MAX_LAST_N = 10_000
MAX_BUCKETS = 10_000
MAX_TEMPORAL_LIMIT = 100  # temporal entities per page (each carries its series)
DURATION = re.compile(
    r"P(?:(?P<weeks>\d{1,6})W|(?:(?P<days>\d{1,6})D)?"
    r"(?:T(?:(?P<hours>\d{1,7})H)?(?:(?P<minutes>\d{1,9})M)?(?:(?P<seconds>\d{1,10})S)?)?)"
)


@dataclass(frozen=True)
class TemporalParams:
    selection: Selection
    page: Page
    format: str = "normalized"
    mode: str = "instances"  # instances | temporalValues | aggregatedValues
    start: datetime | None = None
    end: datetime | None = None
    last_n: int = 0
    period_s: int = 0
    methods: tuple[str, ...] = ()


def temporal_params(
    query: MultiMapping[str], names: Names, allowed: frozenset[str] = TEMPORAL_PARAMS
) -> TemporalParams:
    values = single(query, allowed)
    options, fmt = representation(values, temporal=True)
    mode = _mode(options)
    start, end = time_range(values)
    methods, period = _aggregation(values, mode, start, end)
    return TemporalParams(
        selection(values, names) if "type" in allowed else Selection(),
        page(values, MAX_TEMPORAL_LIMIT) if "limit" in allowed else Page(),
        fmt,
        mode,
        start,
        end,
        _last_n(values),
        period,
        methods,
    )


def _mode(options: frozenset[str]) -> str:
    modes = options & {"temporalValues", "aggregatedValues"}
    if len(modes) > 1:
        raise bad_data("options: temporalValues and aggregatedValues exclude each other")
    return next(iter(modes), "instances")


def time_range(values: Mapping[str, str]) -> tuple[datetime | None, datetime | None]:
    if values.get("timeproperty", "observedAt") != "observedAt":
        raise bad_data("timeproperty: only observedAt is kept for readings")
    timerel = values.get("timerel")
    if timerel is None:
        if "timeAt" in values or "endTimeAt" in values:
            raise bad_data("timeAt and endTimeAt need timerel (before, after or between)")
        return None, None
    if timerel not in ("before", "after", "between"):
        raise bad_data(f"timerel is before, after or between, got {shown(timerel)}")
    if "timeAt" not in values:
        raise bad_data(f"timerel={timerel} needs timeAt")
    at = parse_time(values["timeAt"], "timeAt")
    if timerel != "between":
        if "endTimeAt" in values:
            raise bad_data("endTimeAt goes with timerel=between only")
        return (None, at) if timerel == "before" else (at, None)
    if "endTimeAt" not in values:
        raise bad_data("timerel=between needs endTimeAt")
    end = parse_time(values["endTimeAt"], "endTimeAt")
    if end <= at:
        raise bad_data("endTimeAt must be after timeAt")
    return at, end


def parse_time(raw: str, name: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw) if len(raw) <= 40 else None
    except ValueError:
        value = None
    if value is None or not re.match(r"\d{4}-\d{2}-\d{2}T", raw):
        raise bad_data(f"{name} is an ISO 8601 date-time such as 2026-01-31T12:00:00Z")
    if value.tzinfo is None:
        raise bad_data(f"{name} needs a zone (Z or +01:00): {shown(raw)} is ambiguous")
    try:  # its offset can move it out of the calendar (0001-01-01T00:00+01:00)
        value.astimezone(UTC)
    except OverflowError:
        raise bad_data(f"{name} {shown(raw)} falls outside years 1 to 9999 in UTC") from None
    return value


def _last_n(values: Mapping[str, str]) -> int:
    raw = values.get("lastN")
    if raw is None:
        return 0
    if not re.fullmatch(r"\d{1,6}", raw) or not 1 <= int(raw) <= MAX_LAST_N:
        raise bad_data(f"lastN is a whole number from 1 to {MAX_LAST_N}, got {shown(raw)}")
    return int(raw)


def _aggregation(
    values: Mapping[str, str], mode: str, start: datetime | None, end: datetime | None
) -> tuple[tuple[str, ...], int]:
    if mode != "aggregatedValues":
        if "aggrMethods" in values or "aggrPeriodDuration" in values:
            raise bad_data("aggrMethods and aggrPeriodDuration go with options=aggregatedValues")
        return (), 0
    if "lastN" in values:
        raise bad_data("lastN selects raw readings; leave it out with options=aggregatedValues")
    return _methods(values), _period(values.get("aggrPeriodDuration", "PT0S"), start, end)


def _methods(values: Mapping[str, str]) -> tuple[str, ...]:
    if "aggrMethods" not in values:
        raise bad_data(f"options=aggregatedValues needs aggrMethods ({', '.join(METHODS)})")
    methods = tuple(dict.fromkeys(m.strip() for m in values["aggrMethods"].split(",")))
    for method in methods:
        if method not in METHODS:
            known = "not supported" if method in OTHER_METHODS else "unknown"
            raise bad_data(f"aggrMethods: {shown(method)} is {known}; use {', '.join(METHODS)}")
    return methods


def _period(raw: str, start: datetime | None, end: datetime | None) -> int:
    """Seconds per bucket; PT0S is the whole ``between`` range."""
    period = parse_duration(raw)
    if period == 0:
        if start is None or end is None:
            raise bad_data(
                "aggrPeriodDuration PT0S (the default: the whole range) needs "
                "timerel=between with timeAt and endTimeAt"
            )
        return max(1, int((end - start).total_seconds()))
    if start and end and (end - start).total_seconds() / period > MAX_BUCKETS:
        raise bad_data(f"more than {MAX_BUCKETS} periods; take a longer aggrPeriodDuration")
    return period


def parse_duration(raw: str) -> int:
    """Seconds of an ISO 8601 duration of fixed length; 400 for years, months or a typo."""
    match = DURATION.fullmatch(raw)
    if not match or raw in ("P", "PT") or raw.endswith("T"):
        hint = (
            " (years and months have no fixed length)"
            if re.search(r"\d[YM]", raw.split("T")[0])
            else ""
        )
        raise bad_data(
            f"aggrPeriodDuration {shown(raw)} is not an ISO 8601 duration such as PT1H or P1D{hint}"
        )
    parts = {k: int(v) for k, v in match.groupdict().items() if v}
    return (
        parts.get("weeks", 0) * 604_800
        + parts.get("days", 0) * 86_400
        + parts.get("hours", 0) * 3600
        + parts.get("minutes", 0) * 60
        + parts.get("seconds", 0)
    )
