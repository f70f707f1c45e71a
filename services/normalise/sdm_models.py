"""Smart Data Models coverage: which attribute of an entity type carries which metric.

Two sources feed one :class:`TypeMap` per entity type: the ``sdm:`` entries of
``deploy/vocabulary.yaml`` (the first types) and one file per type under
``deploy/sdm/`` (``<Type>.yaml``), written from the type's published
``schema.json``. A file names the schema it was read from, the attributes that
carry a metric (with the unit the schema or its examples use when no
``unitCode`` is sent, legacy ``aliases``, a ``values`` table for a state such as
``free``/``occupied``, a ``member`` of a structured value such as
``dayMaximum.temperature``) and the schema's attributes that ``ignore`` (they
describe, they do not measure).

Names match case-insensitively (``NO2`` of older AirQualityObserved examples is
``no2``), an attribute spelled as in the model first. Whatever a record carries
that is neither a metric nor a known descriptive attribute is *dropped*: the
:class:`Plan` lists it so that the stage counts it per source and says so once
in its log; nothing is dropped silently.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.normalise.units import find_unit
from services.normalise.vocabulary import KINDS, Metric, SdmEntry, SdmModel, check_kind
from services.runtime.errors import ConfigError
from services.runtime.paths import REPO_ROOT
from services.runtime.yaml_config import parse_strict

SDM_DIR = REPO_ROOT / "deploy" / "sdm"
# GSMA Commons and Location Commons of every Smart Data Model: they describe.
COMMON_ATTRIBUTES = frozenset(
    name.lower()
    for name in (
        "id",
        "type",
        "name",
        "alternateName",
        "description",
        "dataProvider",
        "dateCreated",
        "dateModified",
        "owner",
        "seeAlso",
        "source",
        "address",
        "areaServed",
        "location",
    )
)
MAX_NAME_SETS = 1024  # distinct column-name sets remembered per type
_FILE_KEYS = ("type", "schema", "time", "period", "attributes", "ignore")
_ATTRIBUTE_KEYS = ("metric", "unit", "kind", "aliases", "values", "when")
_SCHEMA_KEYS = ("repository", "path", "commit")

_ARRAYS = {"string": "strings", "double": "doubles", "long": "longs", "boolean": "booleans"}
Column = dict[str, Any]
Fail = Callable[[str, str], ConfigError]


@dataclass(frozen=True)
class Carrier:
    """One attribute (or one member of a structured attribute) that carries a metric."""

    attribute: str  # the base attribute, as the model spells it
    entry: SdmEntry
    metric: Metric
    member: str | None = None  # dayMaximum.temperature: member "temperature"
    values: Mapping[str, float] | None = None  # a state -> its number (lower-case keys)


@dataclass
class Plan:
    """What one record's columns give: measures, derived columns, dropped names."""

    columns: dict[str, Column]
    measures: list[tuple[str, Carrier]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # attributes not in the vocabulary
    unmapped_values: int = 0  # states outside a carrier's ``values`` table


@dataclass(frozen=True)
class TypeMap:
    """Every way a type's attributes carry metrics, and the names it knows."""

    type: str
    carriers: Mapping[str, tuple[Carrier, ...]]  # base attribute -> carriers, conditional first
    names: Mapping[str, str]  # lower-case name or alias -> base attribute
    known: frozenset[str]  # lower-case names that describe (not a measure, not dropped)
    # column names -> (measured names with their attribute, dropped names); records of
    # one source repeat the same few name sets, so the matching is done once per set
    _resolved: dict[tuple[str, ...], tuple[tuple[tuple[str, str], ...], tuple[str, ...]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def plan(self, columns: dict[str, Column], explicit: set[str]) -> Plan:
        """The measures of a record; ``explicit`` columns are mapped by the city itself."""
        measured, dropped = self._resolve(tuple(name for name in columns if name not in explicit))
        out = Plan(columns, dropped=list(dropped))
        taken: dict[str, str] = {}  # metric -> the column that gives it
        for name, attribute in measured:
            chosen = _choose(self.carriers[attribute], columns)
            if not chosen:
                continue
            if any(carrier.metric.name in taken for carrier in chosen):
                out.dropped.append(name)  # the same metric twice (no2 and NO2): first wins
                continue
            for carrier in chosen:
                column = _derive(name, carrier, out)
                if column is not None:
                    taken[carrier.metric.name] = column
                    out.measures.append((column, carrier))
        return out

    def _resolve(
        self, names: tuple[str, ...]
    ) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
        found = self._resolved.get(names)
        if found is not None:
            return found
        bases = [name for name in names if not _qualifies(name, names)]
        bases.sort(key=lambda name: name not in self.carriers)  # model spelling first
        measured: list[tuple[str, str]] = []
        dropped: list[str] = []
        for name in bases:
            attribute = name if name in self.carriers else self.names.get(name.lower())
            if attribute is not None:
                measured.append((name, attribute))
            elif name.lower() not in self.known:
                dropped.append(name)
        if len(self._resolved) >= MAX_NAME_SETS:  # a source sending ever new names
            self._resolved.clear()
        found = self._resolved[names] = (tuple(measured), tuple(dropped))
        return found


def _qualifies(name: str, names: tuple[str, ...]) -> bool:
    """Whether ``name`` is a column the parser derived from another one
    (``no2@unitCode``, ``status.parkingPermit``), not an attribute such as ``PM2.5``."""
    for separator in ("@", "."):
        base, found, _ = name.partition(separator)
        if found and base in names:
            return True
    return False


def _choose(carriers: tuple[Carrier, ...], columns: dict[str, Column]) -> list[Carrier]:
    """Per member, the first carrier whose ``when`` condition holds."""
    chosen: list[Carrier] = []
    members: set[str | None] = set()
    for carrier in carriers:
        if carrier.member in members:
            continue
        if carrier.entry.when and not all(
            _first_text(columns.get(attribute)) == expected
            for attribute, expected in carrier.entry.when
        ):
            continue
        members.add(carrier.member)
        chosen.append(carrier)
    return chosen


def _derive(name: str, carrier: Carrier, plan: Plan) -> str | None:
    """The column holding the carrier's numbers (derived when a member or a state)."""
    columns = plan.columns
    if carrier.member is not None:
        target = f"{name}.{carrier.member}"
        if target in columns:  # an NGSI-LD sub-property: already a column
            return target
        plan.columns = columns = dict(columns)
        columns[target] = _members(target, columns[name], carrier.member)
        return target
    if carrier.values is not None:
        numbers, unmapped = _states(name, columns[name], carrier.values)
        plan.unmapped_values += unmapped
        plan.columns = columns = dict(columns)
        columns[name] = numbers
    return name


def _values(column: Column) -> list[Any]:
    kind = column["kind"]
    values = list(
        column[{"string": "strings", "double": "doubles", "long": "longs"}.get(kind, "booleans")]
    )
    for i in column.get("missing") or ():
        values[i] = None
    return values


def _first_text(column: Column | None) -> str | None:
    if column is None:
        return None
    for value in _values(column):
        if value is not None:
            return str(value)
    return None


def _double_column(name: str, values: list[float | None]) -> Column:
    return {
        "name": name,
        "kind": "double",
        "strings": [],
        "doubles": [0.0 if v is None else v for v in values],
        "longs": [],
        "booleans": [],
        "missing": [i for i, v in enumerate(values) if v is None],
    }


def _members(name: str, column: Column, member: str) -> Column:
    """``{"temperature": 15, ...}`` (JSON text) -> the member's number, else missing."""
    out: list[float | None] = []
    for value in _values(column):
        number = None
        if isinstance(value, str):
            try:
                found = json.loads(value).get(member)
            except (ValueError, AttributeError):
                found = None
            if isinstance(found, int | float) and not isinstance(found, bool):
                number = float(found)
        out.append(number)
    return _double_column(name, out)


def _states(name: str, column: Column, table: Mapping[str, float]) -> tuple[Column, int]:
    out: list[float | None] = []
    unmapped = 0
    for value in _values(column):
        number = None if value is None else table.get(str(value).lower())
        if value is not None and number is None:
            unmapped += 1
        out.append(number)
    return _double_column(name, out), unmapped


# -- loading ---------------------------------------------------------------------------
def load_type_maps(
    metrics: dict[str, Metric],
    models: dict[str, SdmModel],
    by_attribute: dict[str, list[tuple[str, SdmEntry, Metric]]],
    directory: Path = SDM_DIR,
) -> dict[str, TypeMap]:
    """Read ``deploy/sdm/*.yaml`` into ``models``/``by_attribute`` and build every TypeMap.

    Files extend what ``deploy/vocabulary.yaml`` declares; an attribute mapped in
    both places to two metrics is refused (ConfigError naming the file and key).
    """
    extra: dict[str, list[Carrier]] = {}
    aliases: dict[str, dict[str, str]] = {}
    known: dict[str, set[str]] = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        type_name, carriers, names, ignore = _read_file(path, metrics, models)
        extra.setdefault(type_name, []).extend(carriers)
        aliases.setdefault(type_name, {}).update(names)
        known.setdefault(type_name, set()).update(ignore)
        for carrier in carriers:
            key = f"{type_name}.{carrier.entry.attribute}"
            entries = by_attribute.setdefault(key, [])
            clash = [e for e in entries if not e[1].when and not carrier.entry.when]
            if clash and clash[0][0] != carrier.metric.name:
                raise ConfigError(
                    f"{key} is already mapped to {clash[0][0]} in deploy/vocabulary.yaml",
                    source=str(path),
                    key=f"attributes.{carrier.entry.attribute}",
                )
            if not clash:
                entries.append((carrier.metric.name, carrier.entry, carrier.metric))
    maps = {}
    for type_name, model in models.items():
        maps[type_name] = _type_map(
            model,
            by_attribute,
            extra.get(type_name, []),
            aliases.get(type_name, {}),
            known.get(type_name, set()),
        )
    return maps


def _type_map(model, by_attribute, carriers, aliases, ignore) -> TypeMap:
    """One entity type's coverage: its attributes and the metrics they carry
    (conditional entries first), their names (lowercased, with aliases) and the
    attributes that describe rather than measure."""
    found = _carriers_of(model, by_attribute, carriers)
    names = {base.lower(): base for base in found}
    names.update(aliases)
    described = {n.lower() for n in (*model.time, *(model.period or ()), *ignore)}
    described |= {a.lower() for c in carriers for a, _ in c.entry.when}
    described |= {a.lower() for cs in found.values() for c in cs for a, _ in c.entry.when}
    return TypeMap(
        model.type,
        {base: tuple(cs) for base, cs in found.items()},
        names,
        frozenset(described | COMMON_ATTRIBUTES),
    )


def _carriers_of(model, by_attribute, carriers) -> dict[str, list[Carrier]]:
    """Per attribute of the type, its carriers: the vocabulary's entries, with the
    detail (member, values) the type's file gives them; conditional ones first."""
    prefix = f"{model.type}."
    detailed = {(c.entry.attribute, c.metric.name): c for c in carriers}
    found: dict[str, list[Carrier]] = {}
    for key, entries in by_attribute.items():
        if not key.startswith(prefix):
            continue
        for metric_name, entry, metric in entries:
            carrier = detailed.get((entry.attribute, metric_name)) or Carrier(
                entry.attribute, entry, metric
            )
            found.setdefault(carrier.attribute, []).append(carrier)
    for base in found:
        found[base].sort(key=lambda c: not c.entry.when)  # conditional entries first
    return found


def _read_file(path: Path, metrics, models) -> tuple[str, list[Carrier], dict[str, str], set[str]]:
    """One ``deploy/sdm/<Type>.yaml``: its type (declared or extended in ``models``),
    carriers, alias names and descriptive attributes."""
    where = str(path)

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(message, source=where, key=key or None)

    raw = _read_raw(path, fail)
    type_name = raw["type"]
    _model(raw, type_name, models, fail)
    attributes = raw.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise fail("attributes", "expected attribute name -> {metric, unit, ...}")
    carriers: list[Carrier] = []
    names: dict[str, str] = {}
    for name, spec in attributes.items():
        carrier, alias_names = _carrier(type_name, str(name), spec, metrics, fail)
        carriers.append(carrier)
        for alias in alias_names:
            names[alias.lower()] = carrier.attribute
    ignore = raw.get("ignore") or []
    if not isinstance(ignore, list) or not all(isinstance(n, str) for n in ignore):
        raise fail("ignore", "expected the list of attributes that describe (not measures)")
    return type_name, carriers, names, set(ignore)


def _read_raw(path: Path, fail: Fail) -> dict[str, Any]:
    """A type file parsed, with its keys, its type (the file's own name) and the
    schema it was read from checked."""
    try:
        raw = parse_strict(path.read_text(encoding="utf-8"), str(path))
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", source=str(path)) from exc
    if not isinstance(raw, dict):
        raise fail("", "expected a mapping: type, schema, time, attributes, ignore")
    for key in raw:
        if key not in _FILE_KEYS:
            raise fail(key, f"unknown key; allowed: {', '.join(_FILE_KEYS)}")
    type_name = raw.get("type")
    if not isinstance(type_name, str) or path.stem != type_name:
        raise fail("type", f"expected the entity type, the file's own name ({path.stem})")
    schema = raw.get("schema")
    if not isinstance(schema, dict) or set(schema) != set(_SCHEMA_KEYS):
        raise fail("schema", "expected {repository, path, commit} of the schema it was read from")
    return raw


def _model(raw: dict, type_name: str, models: dict[str, SdmModel], fail: Fail) -> None:
    """Declare the type, or extend the time attributes vocabulary.yaml gives it."""
    time, period = _time_fields(raw, fail)
    existing = models.get(type_name)
    if existing is None:
        if not time:
            raise fail("time", "required: where the entity says when it was observed")
        models[type_name] = SdmModel(type_name, tuple(time), tuple(period) if period else None)
        return
    if period is not None and existing.period is not None:
        raise fail("period", "deploy/vocabulary.yaml already gives this type's period")
    added = tuple(t for t in time or () if t not in existing.time)
    models[type_name] = SdmModel(
        type_name, existing.time + added, existing.period or (tuple(period) if period else None)
    )


def _time_fields(raw: dict, fail: Fail) -> tuple[list[str] | None, list[str] | None]:
    """(time, period) of a type file, checked: attribute names, a period's two."""
    time = raw.get("time")
    period = raw.get("period")
    if time is not None and not (isinstance(time, list) and all(isinstance(t, str) for t in time)):
        raise fail("time", "expected a list of time attribute names")
    if period is not None and not (
        isinstance(period, list) and len(period) == 2 and all(isinstance(p, str) for p in period)
    ):
        raise fail("period", "expected [from attribute, to attribute]")
    return time, period


def _carrier(type_name, name, spec, metrics, fail: Fail) -> tuple[Carrier, list[str]]:
    """One attribute of a type file: the metric it carries (kind, unit, a member of
    a structured value, a table of states), and its legacy alias names."""
    key = f"attributes.{name}"
    if not isinstance(spec, dict):
        raise fail(key, "expected {metric, unit, kind, aliases, values, when}")
    for sub in spec:
        if sub not in _ATTRIBUTE_KEYS:
            raise fail(f"{key}.{sub}", f"unknown key; allowed: {', '.join(_ATTRIBUTE_KEYS)}")
    metric = metrics.get(spec.get("metric"))
    if metric is None:
        raise fail(f"{key}.metric", f"{spec.get('metric')!r} is not a metric of the vocabulary")
    kind, unit = _kind_and_unit(key, spec, metric, fail)
    base, _, member = name.partition(".")
    table = _values_table(key, spec.get("values"), fail)
    when = spec.get("when") or {}
    aliases = spec.get("aliases") or []
    if not isinstance(when, dict) or not isinstance(aliases, list):
        raise fail(key, "when is {attribute: value}, aliases a list of names")
    entry = SdmEntry(type_name, name, kind, unit, tuple((str(k), str(v)) for k, v in when.items()))
    return Carrier(base, entry, metric, member or None, table), [str(a) for a in aliases]


def _kind_and_unit(key: str, spec: dict, metric: Metric, fail: Fail):
    """The attribute's kind (the metric's default) and unit, checked together."""
    kind = spec.get("kind", "interval" if metric.temporal == "interval" else "instantaneous")
    if kind not in KINDS:
        raise fail(f"{key}.kind", f"expected one of {', '.join(KINDS)}")
    unit = find_unit(str(spec.get("unit")))
    if unit is None:
        raise fail(
            f"{key}.unit", f"unknown unit {spec.get('unit')!r} (services/normalise/units.py)"
        )
    check_kind(metric, kind, unit, fail=lambda message: fail(f"{key}.unit", message))
    return kind, unit


def _values_table(key: str, values: Any, fail: Fail) -> dict[str, float] | None:
    """A state's table (``free: 0, occupied: 1``), keys lowercased; None: none."""
    if values is not None and not (
        isinstance(values, dict)
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values.values())
    ):
        raise fail(f"{key}.values", "expected state -> number")
    return {str(k).lower(): float(v) for k, v in values.items()} if values else None
