"""Each source's ``mapping:`` section of its city file, validated at start.

A mapping says where a record's time is (field, format, zone), how long an
interval lasts, which fields are measures (metric, unit, kind), where the zone
and the sector are, and what the entity is::

    mapping:
      entity_type: ElectricityMeter
      time: {field: horodate, format: "%Y-%m-%d %H:%M:%S", timezone: Europe/Paris}
      step: {field: pas, format: iso8601}          # or {seconds: 600}
      zone: {field: iris}                          # or {attribute: zone} (meter registry)
      sector: {field: secteur, values: {residentiel: residential, tertiaire: tertiary}}
      measures:
        energie_kwh: {metric: active_energy_import, unit: kWh, kind: interval}
      on_implausible: refuse                       # or flag (the vocabulary's default)
      lateness: PT48H                              # corrections replace within (default)
      plausible_time: {not_before: "2000-01-01", ahead: P1D}   # (defaults)
      position: {lat: latitude, lon: longitude}    # or {field: geo_point_2d}, none

Smart Data Models sources (``sdm-keyvalues``, ``ngsi-v2-normalized``, ``ngsi-ld``)
need no ``measures`` nor ``time``: the vocabulary's built-in mapping of the
record's entity type applies (``smart_data_models: true``, the default for those
formats); ``zone``, ``sector`` and extra ``measures`` may still be given. Their
``location`` gives the entity's position unless ``position`` says otherwise; a
personal source never has one (positions.py).

Every error is a :class:`ConfigError` naming the city file and the dotted key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.normalise.plausibility import ACTIONS
from services.normalise.positions import PositionSpec, parse_position
from services.normalise.registers import RateLimit, parse_rate_limit
from services.normalise.timebounds import TimeBounds, bounds_from_config
from services.normalise.units import Unit, find_unit
from services.normalise.vocabulary import KINDS, Metric, Vocabulary, check_kind
from services.runtime.cities import SDM_FORMATS, CityConfig, SourceConfig
from services.runtime.errors import ConfigError
from services.runtime.timeparse import TimeSpec

STEP_FORMATS = ("seconds", "minutes", "iso8601")
DEFAULT_LATENESS_US = 48 * 3_600_000_000
_MAPPING_KEYS = (
    "entity_type",
    "time",
    "step",
    "zone",
    "sector",
    "measures",
    "smart_data_models",
    "on_implausible",
    "lateness",
    "plausible_time",
    "position",
)
_MEASURE_KEYS = ("metric", "unit", "unit_field", "kind", "rollover", "time", "max_rate")
_DURATION = re.compile(
    r"P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?"
)


@dataclass(frozen=True)
class MeasureSpec:
    """A field that is a measure: which metric, in which unit, holding what."""

    column: str
    metric: Metric
    kind: str
    unit: Unit | None  # the unit, or the default when unit_field is empty
    unit_field: str | None = None
    rollover: float | None = None  # register wraps at this value (source unit)
    times: tuple[TimeSpec, ...] = ()  # where this measure's time is (first present wins)
    max_rate: RateLimit | None = None  # a register's largest plausible rate (registers.py)


@dataclass(frozen=True)
class StepSpec:
    seconds: int | None = None
    field: str | None = None
    format: str = "seconds"


@dataclass(frozen=True)
class FieldRef:
    """A record field, or a record attribute (from a registry), optionally translated."""

    field: str | None = None
    attribute: str | None = None
    values: Mapping[str, str] | None = None


@dataclass(frozen=True)
class SourceMapping:
    city: str
    source: str
    format: str
    timezone: str
    where: str  # "<file>" for errors
    times: tuple[TimeSpec, ...] = ()
    step: StepSpec | None = None
    zone: FieldRef | None = None
    sector: FieldRef | None = None
    entity_type: str | None = None
    measures: tuple[MeasureSpec, ...] = ()
    smart_data_models: bool = False
    on_implausible: str | None = None  # flag | refuse; None: the vocabulary's default
    lateness_us: int = DEFAULT_LATENESS_US  # corrections replace within this horizon
    bounds: TimeBounds = field(default_factory=TimeBounds)  # plausible times (timebounds.py)
    position: PositionSpec | None = None  # where the entity's position is (positions.py)
    personal: bool = False  # privacy.personal: never a position


def compile_city(city: CityConfig, vocabulary: Vocabulary) -> dict[str, SourceMapping]:
    """The mappings of a city's sources, by source id (sources without one are absent)."""
    out: dict[str, SourceMapping] = {}
    for index, source in enumerate(city.sources):
        mapping = compile_source(
            city, source, vocabulary, key=f"sources[{index}].mapping", where=city.path or ""
        )
        if mapping is not None:
            out[source.id] = mapping
    return out


def compile_source(
    city: CityConfig, source: SourceConfig, vocabulary: Vocabulary, *, key: str, where: str
) -> SourceMapping | None:
    """A source's mapping checked and compiled (None: a source with none, which only a
    Smart Data Models format may omit); raises a ConfigError naming the dotted key."""
    raw = source.mapping
    sdm_format = source.format in SDM_FORMATS
    if raw is None:
        if not sdm_format:
            return None
        raw = {}

    def fail(sub: str, message: str) -> ConfigError:
        return ConfigError(message, source=where, key=f"{key}.{sub}" if sub else key)

    for name in raw:
        if name not in _MAPPING_KEYS:
            raise fail(name, f"unknown key {name!r}; allowed keys: {', '.join(_MAPPING_KEYS)}")
    sdm = _smart_data_models(raw, source.format, fail)
    timezone = city.timezone
    times = ()
    if "time" in raw:
        times = (_time(raw["time"], timezone, where, f"{key}.time"),)
    measures = tuple(_measures(raw.get("measures"), vocabulary, timezone, where, f"{key}.measures"))
    if not sdm:
        _check_own_mapping(times, measures, source.format, fail)
    entity_type, on_implausible = _entity_options(raw, fail)
    step, zone, sector = _references(raw, vocabulary, fail)
    personal = bool((source.privacy or {}).get("personal"))
    position = parse_position(raw.get("position"), sdm=sdm, personal=personal, fail=fail)
    return SourceMapping(
        city=city.code,
        source=source.id,
        format=source.format,
        timezone=timezone,
        where=where,
        times=times,
        step=step,
        zone=zone,
        sector=sector,
        entity_type=entity_type,
        measures=measures,
        smart_data_models=sdm,
        on_implausible=on_implausible,
        lateness_us=_lateness(raw.get("lateness"), fail),
        bounds=bounds_from_config(
            raw.get("plausible_time"), lambda text: parse_duration(text, "iso8601"), fail
        ),
        position=position,
        personal=personal,
    )


def _smart_data_models(raw: dict[str, Any], source_format: str, fail) -> bool:
    """Whether the vocabulary's built-in mapping applies (the default for the Smart
    Data Models formats, refused for any other)."""
    sdm_format = source_format in SDM_FORMATS
    sdm = raw.get("smart_data_models", sdm_format)
    if not isinstance(sdm, bool):
        raise fail("smart_data_models", "expected true or false")
    if sdm and not sdm_format:
        raise fail(
            "smart_data_models",
            f"only sdm-keyvalues, ngsi-v2-normalized and ngsi-ld sources carry Smart Data "
            f"Models entities, not {source_format}",
        )
    return sdm


def _check_own_mapping(
    times: tuple[TimeSpec, ...], measures: tuple[MeasureSpec, ...], source_format: str, fail
) -> None:
    """A source without the built-in mapping names its measures and where their time
    is (a historique TIC frame has none: its reception time is used)."""
    if not measures:
        raise fail("measures", "required: name at least one field and its metric")
    if not times and any(not m.times for m in measures) and source_format != "linky-tic":
        raise fail("time", "required: which field holds the time (field, format)")


def _entity_options(raw: dict[str, Any], fail) -> tuple[str | None, str | None]:
    """(entity_type, on_implausible), checked."""
    entity_type = raw.get("entity_type")
    if entity_type is not None and (not isinstance(entity_type, str) or not entity_type):
        raise fail("entity_type", "expected a non-empty string")
    on_implausible = raw.get("on_implausible")
    if on_implausible is not None and on_implausible not in ACTIONS:
        raise fail("on_implausible", f"expected one of {', '.join(ACTIONS)}")
    return entity_type, on_implausible


def _references(
    raw: dict[str, Any], vocabulary: Vocabulary, fail
) -> tuple[StepSpec | None, FieldRef | None, FieldRef | None]:
    """(step, zone, sector), each None when the mapping gives none."""
    step = _step(raw["step"], fail) if "step" in raw else None
    zone = _field_ref(raw["zone"], fail, "zone", None) if "zone" in raw else None
    sector = None
    if "sector" in raw:
        sector = _field_ref(raw["sector"], fail, "sector", vocabulary.sectors)
    return step, zone, sector


def _lateness(raw: Any, fail) -> int:
    """The correction horizon (``lateness: PT48H``): a later value for a time published
    less than this before the entity's latest reading replaces the first one."""
    if raw is None:
        return DEFAULT_LATENESS_US
    seconds = parse_duration(str(raw), "iso8601")
    if seconds is None:
        raise fail("lateness", "expected an ISO 8601 duration such as PT48H or P7D")
    return seconds * 1_000_000


def _time(raw: Any, timezone: str, where: str, key: str) -> TimeSpec:
    if isinstance(raw, dict) and "timezone" not in raw:
        raw = {**raw, "timezone": timezone}
    elif isinstance(raw, str):
        raw = {"field": raw, "timezone": timezone}
    return TimeSpec.from_config(raw, source=where, key=key)


def _measures(
    raw: Any, vocabulary: Vocabulary, timezone: str, where: str, key: str
) -> list[MeasureSpec]:
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise ConfigError(
            "expected a mapping of field name to {metric, unit, kind}", source=where, key=key
        )
    out = []
    for column, specs in raw.items():
        entries = specs if isinstance(specs, list) else [specs]
        for i, spec in enumerate(entries):
            sub = f"{key}.{column}" + (f"[{i}]" if isinstance(specs, list) else "")
            out.append(_measure(column, spec, vocabulary, timezone, where, sub))
    return out


def _measure(
    column: str, raw: Any, vocabulary: Vocabulary, timezone: str, where: str, key: str
) -> MeasureSpec:
    """One measure of the mapping checked: its metric, kind, unit (or unit field)
    and, for a register, its rollover and largest plausible rate."""

    def fail(sub: str, message: str) -> ConfigError:
        return ConfigError(message, source=where, key=f"{key}.{sub}" if sub else key)

    if not isinstance(raw, dict):
        raise fail("", "expected {metric, unit, kind}")
    for name in raw:
        if name not in _MEASURE_KEYS:
            raise fail(name, f"unknown key {name!r}; allowed keys: {', '.join(_MEASURE_KEYS)}")
    metric = vocabulary.metric(str(raw.get("metric")), source=where, key=f"{key}.metric")
    default_kind = "interval" if metric.temporal == "interval" else "instantaneous"
    kind = raw.get("kind", default_kind)
    if kind not in KINDS:
        raise fail("kind", f"{kind!r} is not a kind; expected one of {', '.join(KINDS)}")
    unit, unit_field = _measure_unit(raw, fail)
    if unit is not None:
        check_kind(metric, kind, unit, fail=lambda message: fail("unit", message))
    rollover = raw.get("rollover")
    if rollover is not None and (
        kind != "cumulative" or not isinstance(rollover, int | float) or rollover <= 0
    ):
        raise fail("rollover", "a positive number, for cumulative registers only")
    times = (_time(raw["time"], timezone, where, f"{key}.time"),) if "time" in raw else ()
    max_rate = None
    if "max_rate" in raw:
        if kind != "cumulative":
            raise fail("max_rate", "for cumulative registers only")
        max_rate = parse_rate_limit(
            raw["max_rate"], metric.unit, where=where, key=f"{key}.max_rate"
        )
    return MeasureSpec(column, metric, kind, unit, unit_field, rollover, times, max_rate)


def _measure_unit(raw: dict[str, Any], fail) -> tuple[Unit | None, str | None]:
    """(unit, unit_field): the values' unit, or the field that holds it (the unit
    then the default for a row without one); at least one is required."""
    unit = None
    if "unit" in raw:
        unit = find_unit(str(raw["unit"]))
        if unit is None:
            raise fail("unit", f"unknown unit {raw['unit']!r} (see services/normalise/units.py)")
    unit_field = raw.get("unit_field")
    if unit_field is not None and (not isinstance(unit_field, str) or not unit_field):
        raise fail("unit_field", "expected the name of the field that holds the unit")
    if unit is None and unit_field is None:
        raise fail("unit", "required: the unit of the values (or unit_field naming a field)")
    return unit, unit_field


def _step(raw: Any, fail) -> StepSpec:
    if isinstance(raw, int) and raw > 0:
        return StepSpec(seconds=raw)
    if not isinstance(raw, dict):
        raise fail(
            "step", "expected {seconds: N} or {field: name, format: seconds|minutes|iso8601}"
        )
    if "seconds" in raw:
        seconds = raw["seconds"]
        if not isinstance(seconds, int) or seconds <= 0 or set(raw) != {"seconds"}:
            raise fail("step.seconds", "expected a positive whole number of seconds, alone")
        return StepSpec(seconds=seconds)
    field = raw.get("field")
    if not isinstance(field, str) or not field:
        raise fail("step.field", "expected the field holding the interval length")
    fmt = raw.get("format", "seconds")
    if fmt not in STEP_FORMATS or set(raw) - {"field", "format"}:
        raise fail("step.format", f"expected one of {', '.join(STEP_FORMATS)}")
    return StepSpec(field=field, format=fmt)


def _field_ref(raw: Any, fail, name: str, allowed: tuple[str, ...] | None) -> FieldRef:
    if not isinstance(raw, dict):
        raise fail(name, "expected {field: name} or {attribute: name}")
    extra = set(raw) - {"field", "attribute", "values"}
    if extra:
        raise fail(f"{name}.{sorted(extra)[0]}", "unknown key; allowed: field, attribute, values")
    if ("field" in raw) == ("attribute" in raw):
        raise fail(
            name, "give exactly one of field (a record field) or attribute (from a registry)"
        )
    values = raw.get("values")
    if values is not None:
        if not isinstance(values, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in values.items()
        ):
            raise fail(f"{name}.values", "expected a mapping of source value to canonical value")
        if allowed is not None:
            for source_value, canonical in values.items():
                if canonical not in allowed:
                    raise fail(
                        f"{name}.values.{source_value}",
                        f"{canonical!r} is not a sector of the vocabulary ({', '.join(allowed)})",
                    )
    return FieldRef(raw.get("field"), raw.get("attribute"), values)


def parse_duration(text: str, fmt: str) -> int | None:
    """Seconds of a step value (``600``, ``10`` minutes, ``PT10M``); None if unreadable."""
    try:
        if fmt == "seconds":
            seconds = float(text)
        elif fmt == "minutes":
            seconds = float(text) * 60
        else:
            match = _DURATION.fullmatch(str(text).strip())
            if match is None or not any(match.groupdict().values()):
                return None
            parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
            seconds = parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]
    except (TypeError, ValueError):
        return None
    whole = round(seconds)
    return whole if whole > 0 and abs(whole - seconds) < 1e-6 else None
