"""The privacy policy of a source (its ``privacy:`` section), validated at start.

Every field a source sends gets one class; anything the policy does not name is
removed (deny by default). A policy looks like::

    privacy:
      version: "2025-02"          # recorded on every output record
      personal: true              # carries personal data: people or homes (required for
                                  # energy and water; elsewhere inferred, see below)
      consent: false              # load curves: consent to keep them finer (default false)
      fields:
        prm: identifier           # keyed pseudonym (HMAC, city key of the epoch)
        iris: measure             # kept as is
        commune: {class: quasi-identifier, prefix: 5}       # code truncated
        position: {class: quasi-identifier, grid: 500}      # to a 500 m grid cell
        heure: {class: quasi-identifier, bucket: PT1H, format: iso8601}
        age: {class: quasi-identifier, band: 10}            # lower bound of its band
        commentaire: free-text    # removed
        photo: drop               # removed
      attributes:                 # RawRecord attributes (registry zone, transport metadata)
        zone: measure
      personal: true              # carries personal data (default: it pseudonymises or
                                  # generalises a field, or states consent); see below
      places: [name, address]     # only with personal: false: declared place names and
                                  # positions the safety net leaves alone
      coarsen:                    # only when consent is false
        to: P1D                   # per entity and local day, across messages
        sum: [energie_kwh]
        registers: [index_wh]     # cumulative registers: the index at the start of the day
        lateness: PT6H            # a day is released once the source's readings reach
        quiet: PT1H               # its end plus this, or the source sent nothing for
        time: {field: horodate, format: "%Y-%m-%d %H:%M:%S", timezone: Europe/Paris}

Classes: ``identifier``, ``quasi-identifier`` (with exactly one generalisation:
``grid: <metres>`` for coordinates (at least 100 m), ``bucket: <step>`` for times, ``band: <width>``
for numbers, ``prefix: <characters>`` for codes), ``measure``, ``free-text``,
``drop``. A measured field's NGSI qualifier columns (``<field>@unitCode``,
``@observedAt``, ``@datasetId``) follow it; its sub-properties
(``<field>.<sub>``) follow it only if ``subproperties`` lists them (e.g.
``[measurementType]``), else they must be named themselves.

``personal`` says whether the source carries personal data (its entities are
people or homes). The energy and water domains, where households' meters are,
must state it; elsewhere, left out, a source is personal when its policy
pseudonymises or generalises anything, states consent or coarsens. A source that
declares ``personal: true`` must either declare consent or coarsen to the day
(``coarsen.to: P1D``): a load curve finer than a day shows when people are at
home, and anonymise refuses to start otherwise, naming the file and the key.
The safety net removes every value it flags on a personal source; on a source of
public infrastructure (stations, counters) it keeps the place names and positions
it flags (streets named after people, a counter's position) and reports them in
the audit. ``places`` lists such a source's fields and attributes that are
declared place names and positions: the net does not search them for names,
addresses or coordinates. Every error is a :class:`ConfigError` naming the city
file and the dotted key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.runtime.cities import CityConfig, SourceConfig
from services.runtime.timeparse import TimeSpec
from services.runtime.yaml_config import ConfigReader, describe

IDENTIFIER = "identifier"
QUASI = "quasi-identifier"
MEASURE = "measure"
FREE_TEXT = "free-text"
DROP = "drop"
CLASSES = (IDENTIFIER, QUASI, MEASURE, FREE_TEXT, DROP)
GENERALISATIONS = ("grid", "bucket", "band", "prefix")
QUALIFIERS = ("unitCode", "observedAt", "datasetId")
GRID_OUTPUTS = ("centre", "cell", "both")
# Steps a bucket or a coarsening may use: divisors of an hour (aligned on UTC,
# the same as local time in whole-hour zones) and the local day.
STEPS_S = {"PT5M": 300, "PT10M": 600, "PT15M": 900, "PT30M": 1800, "PT1H": 3600, "P1D": 86400}
COARSENED_ROWS = "coarsened_rows"  # column added by coarsening: rows summed per bucket
COARSENED_ATTRIBUTE = "anonymise.coarsened"  # attribute added by coarsening: its step
# The finest grid a policy may declare. A 100 m cell holds a block of buildings
# (tens to hundreds of households in a city); a finer one approaches a single
# address, which would make the "generalised" position an identifier again.
MIN_GRID_METRES = 100

_POLICY_KEYS = (
    "version",
    "consent",
    "personal",
    "places",
    "fields",
    "subproperties",
    "attributes",
    "coarsen",
)
_COARSEN_KEYS = ("to", "sum", "mean", "registers", "time", "set", "lateness", "quiet")
# Domains whose sources must say whether their entities are people or homes.
PERSONAL_DOMAINS = ("energy", "water")
DEFAULT_LATENESS_S = 6 * 3600
DEFAULT_QUIET_S = 3600
_DURATION = re.compile(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?")
_TIME_KEYS = ("field", "format", "timezone")
_OPTIONS = {
    "grid": ("output", "lon"),
    "bucket": ("format", "timezone"),
    "band": (),
    "prefix": (),
}


@dataclass(frozen=True)
class Grid:
    """Coordinates to the cell of a square-ish grid of ``metres`` (see generalise)."""

    metres: float
    output: str = "centre"
    lon: str | None = None  # the longitude column when this field is a numeric latitude

    def __post_init__(self) -> None:
        # The policy reader refuses it first, naming the file and key; this keeps a
        # grid built in code from generalising to less than a block of buildings.
        if not self.metres >= MIN_GRID_METRES:
            raise ValueError(f"a grid cell is at least {MIN_GRID_METRES} m")


@dataclass(frozen=True)
class Bucket:
    """Times to the start of their bucket, written as ISO 8601 UTC."""

    step: str
    seconds: int
    time: TimeSpec


@dataclass(frozen=True)
class Band:
    """Numbers to the lower bound of their band of ``width``."""

    width: float


@dataclass(frozen=True)
class Prefix:
    """Codes to their first ``length`` characters (IRIS 751010203 -> commune 75101)."""

    length: int


Generalisation = Grid | Bucket | Band | Prefix


@dataclass(frozen=True)
class FieldRule:
    name: str
    cls: str
    generalisation: Generalisation | None = None

    @property
    def kept(self) -> bool:
        """Whether the field's values reach the output in some form."""
        return self.cls in (IDENTIFIER, QUASI, MEASURE)


@dataclass(frozen=True)
class Coarsening:
    """Load curve to ``step``: ``sum`` and ``mean`` fields aggregated per bucket,
    other kept fields take the bucket's first value (a cumulative index: its value
    at the bucket start); ``set`` overrides fields (the interval length) with
    constants. Times from ``time``, else the record's event times.

    ``P1D`` is coarsened per entity and local day across messages (see
    services.anonymise.daily): a day is released once the source's readings
    reach its end plus ``lateness_s``, or once the source has sent nothing for
    ``quiet_s`` (wall clock) and the day ended ``lateness_s`` ago. ``registers``
    are cumulative indexes: they keep their value at the start of the day."""

    step: str
    seconds: int
    sum: tuple[str, ...] = ()
    mean: tuple[str, ...] = ()
    time: TimeSpec | None = None
    set: dict[str, str | int | float] = field(default_factory=dict)
    registers: tuple[str, ...] = ()
    lateness_s: int = DEFAULT_LATENESS_S
    quiet_s: int = DEFAULT_QUIET_S

    @property
    def daily(self) -> bool:
        """Coarsened per entity and day across messages (with state), not per message."""
        return self.step == "P1D"


@dataclass(frozen=True)
class Policy:
    """One source's validated policy."""

    city: str
    source: str
    version: str
    fields: dict[str, FieldRule]
    attributes: dict[str, FieldRule] = field(default_factory=dict)
    coarsen: Coarsening | None = None
    consent: bool = False
    personal: bool = True  # carries personal data (declared, or inferred from the policy)
    timezone: str = "Europe/Paris"
    path: str | None = None
    partners: dict[str, str] = field(default_factory=dict)  # longitude field -> its latitude
    subproperties: frozenset[str] = frozenset()  # NGSI sub-properties that follow kept fields
    places: frozenset[str] = frozenset()  # declared place fields of a public source
    # Where a row's own time is as normalise reads it (the mapping's ``time``, when the
    # policy keeps that field): the key epoch of each row follows it (see epochs.py).
    reading_time: TimeSpec | None = None

    def rule(self, column: str) -> FieldRule | None:
        """The rule of a column: its own, or the kept field it qualifies (``no2@unitCode``)."""
        rule = self.fields.get(column)
        if rule is not None:
            return rule
        base, at, qualifier = column.rpartition("@")
        if not (at and qualifier in QUALIFIERS):
            base, dot, sub = column.rpartition(".")
            if not (dot and sub in self.subproperties):
                return None
        parent = self.fields.get(base)
        if parent is not None and parent.cls in (MEASURE, QUASI):
            return FieldRule(column, MEASURE)
        return None

    @property
    def coarsening(self) -> Coarsening | None:
        """The coarsening that applies (none when the source declares consent)."""
        return None if self.consent else self.coarsen

    def output_names(self) -> set[str]:
        """Column names this policy may emit, besides qualifiers of kept fields."""
        names = {name for name, rule in self.fields.items() if rule.kept}
        for rule in self.fields.values():
            grid = rule.generalisation
            if isinstance(grid, Grid) and grid.output == "both":
                names.add(f"{rule.name}@cell")
            if isinstance(grid, Grid) and grid.lon and grid.output != "cell":
                names.add(grid.lon)
        if self.coarsening is not None:
            names.add(COARSENED_ROWS)
        return names


class PolicySet:
    """Every source's policy, by (city, source)."""

    def __init__(self, policies: Iterable[Policy]):
        self._by_key = {(p.city, p.source): p for p in policies}

    def get(self, city: str, source: str) -> Policy | None:
        return self._by_key.get((city, source))

    def timezone(self, city: str) -> str:
        """The city's time zone (its sources' policies share it), Europe/Paris if none."""
        return next((p.timezone for p in self._by_key.values() if p.city == city), "Europe/Paris")

    def __iter__(self):
        return iter(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)


def load_policies(cities: Mapping[str, CityConfig]) -> PolicySet:
    """Validate the privacy section of every source; the first problem stops the start."""
    return PolicySet(
        parse_policy(source, city, index)
        for city in cities.values()
        for index, source in enumerate(city.sources)
    )


def parse_policy(source: SourceConfig, city: CityConfig, index: int) -> Policy:
    """The policy of the ``index``-th source of ``city`` (errors name file and key)."""
    return _Reader(city.path or f"{city.code}.yaml", f"sources[{index}].privacy").policy(
        source, city
    )


class _Reader(ConfigReader):
    """Validates one source's privacy section; ``key`` is where it sits in the city file."""

    def __init__(self, where: str, key: str):
        super().__init__(where)
        self.key = key

    def names(self, value: Any, key: str) -> tuple[str, ...]:
        """Field names: the shared list check, worded for the fields a policy refers to."""
        return self.string_list(value, key, item="field name")

    # -- the section -------------------------------------------------------------
    def policy(self, source: SourceConfig, city: CityConfig) -> Policy:
        """The whole section, checked in the order a reader fixes it: the first problem
        stops the start."""
        key = self.key
        if source.privacy is None:
            raise self.fail(
                key,
                f"source {source.id!r} has no privacy policy; anonymise refuses to start "
                "without one (declare version and fields: every field the source sends, "
                "with its class: identifier, quasi-identifier, measure, free-text or drop)",
            )
        data = self.mapping(source.privacy, key, _POLICY_KEYS)
        version = self.version(data, key)
        consent = self.consent(data, key)
        fields = self.fields(data, key, city.timezone)
        subproperties = (
            frozenset(self.names(data["subproperties"], f"{key}.subproperties"))
            if "subproperties" in data
            else frozenset()
        )
        partners = self.grid_partners(fields, f"{key}.fields")
        attributes = self.attributes(data, key, city.timezone)
        coarsen = (
            self.coarsen(data["coarsen"], f"{key}.coarsen", fields, city.timezone)
            if data.get("coarsen") is not None
            else None
        )
        personal = self.personal(data, key, source, [*fields.values(), *attributes.values()])
        if data.get("personal") is True and not consent:
            self.daily_coarsening_required(coarsen, key, source)
        places = self.places(data, personal, fields, attributes, key)
        return Policy(
            city=city.code,
            source=source.id,
            version=version,
            fields=fields,
            attributes=attributes,
            coarsen=coarsen,
            consent=consent,
            personal=personal,
            timezone=city.timezone,
            path=self.where,
            partners=partners,
            subproperties=subproperties,
            places=places,
            reading_time=self.reading_time(source, city, fields),
        )

    def version(self, data: dict[str, Any], key: str) -> str:
        """The policy's version (text or a number, read as text): audit records name it."""
        version = data.get("version")
        if isinstance(version, bool) or not isinstance(version, str | int) or not str(version):
            raise self.fail(f"{key}.version", 'required: the policy version, e.g. "2025-02" or 1')
        return str(version)

    def consent(self, data: dict[str, Any], key: str) -> bool:
        """Whether every entity consented to finer curves (false unless said)."""
        consent = data.get("consent", False)
        if not isinstance(consent, bool):
            raise self.fail(f"{key}.consent", f"expected true or false, got {describe(consent)}")
        return consent

    def fields(self, data: dict[str, Any], key: str, timezone: str) -> dict[str, FieldRule]:
        """The class of every field the source sends: required, so that nothing
        passes unclassified. Names are all checked before any rule."""
        if "fields" not in data:
            raise self.fail(f"{key}.fields", "required: the class of every field the source sends")
        raw_fields = data["fields"]
        if not isinstance(raw_fields, dict) or not raw_fields:
            raise self.fail(
                f"{key}.fields", f"expected a non-empty mapping, got {describe(raw_fields)}"
            )
        for name in raw_fields:
            self.field_name(name, f"{key}.fields")
        return {
            name: self.rule(name, value, f"{key}.fields.{name}", timezone)
            for name, value in raw_fields.items()
        }

    def attributes(self, data: dict[str, Any], key: str, timezone: str) -> dict[str, FieldRule]:
        """Rules for the source's free attributes: one value each, so a grid has no
        longitude partner; anonymise's own attribute name is reserved."""
        attributes: dict[str, FieldRule] = {}
        if "attributes" not in data:
            return attributes
        raw = data["attributes"]
        if not isinstance(raw, dict):
            raise self.fail(f"{key}.attributes", f"expected a mapping, got {describe(raw)}")
        for name, value in raw.items():
            self.field_name(name, f"{key}.attributes")
            where = f"{key}.attributes.{name}"
            rule = self.rule(str(name), value, where, timezone)
            if isinstance(rule.generalisation, Grid) and rule.generalisation.lon:
                raise self.fail(f"{where}.lon", "an attribute is one value: no 'lon' partner")
            attributes[str(name)] = rule
        if COARSENED_ATTRIBUTE in attributes:
            raise self.fail(
                f"{key}.attributes.{COARSENED_ATTRIBUTE}", "this name is reserved by anonymise"
            )
        return attributes

    def places(
        self,
        data: dict[str, Any],
        personal: bool,
        fields: dict[str, FieldRule],
        attributes: dict[str, FieldRule],
        key: str,
    ) -> frozenset[str]:
        """A public source's declared place fields, which the safety net leaves alone."""
        if "places" not in data:
            return frozenset()
        places = self.names(data["places"], f"{key}.places")
        if personal:
            raise self.fail(
                f"{key}.places",
                "a source that carries personal data cannot exempt fields from the safety "
                "net; places are for sources of public infrastructure (personal: false)",
            )
        for i, name in enumerate(places):
            rule = fields.get(name) or attributes.get(name)
            if rule is None or rule.cls != MEASURE:
                raise self.fail(
                    f"{key}.places[{i}]",
                    f"{name!r} must be a field or attribute declared as measure",
                )
        return frozenset(places)

    # -- the time of a reading ---------------------------------------------------------
    def reading_time(
        self, source: SourceConfig, city: CityConfig, fields: dict[str, FieldRule]
    ) -> TimeSpec | None:
        """The mapping's ``time`` (normalise's, validated the same way) if the policy
        keeps that field; else None (rows fall back to their event times)."""
        raw = (source.mapping or {}).get("time") if isinstance(source.mapping, dict) else None
        if raw is None:
            return None
        if isinstance(raw, dict) and "timezone" not in raw:
            raw = {**raw, "timezone": city.timezone}
        elif isinstance(raw, str):
            raw = {"field": raw, "timezone": city.timezone}
        key = self.key.rsplit(".", 1)[0] + ".mapping.time"
        spec = TimeSpec.from_config(raw, source=self.where, key=key)
        rule = fields.get(spec.field)
        if rule is None or not (rule.cls == MEASURE or isinstance(rule.generalisation, Bucket)):
            return None  # normalise never sees it as a time
        return spec

    # -- people's load curves -----------------------------------------------------------
    def personal(
        self, data: dict[str, Any], key: str, source: SourceConfig, rules: list[FieldRule]
    ) -> bool:
        """Declared, required for households' domains; else inferred from the policy."""
        if "personal" not in data:
            if source.domain in PERSONAL_DOMAINS:
                raise self.fail(
                    f"{key}.personal",
                    f"required for a source of the {source.domain} domain: true when its "
                    "entities are people or homes (households' meters: their curves are "
                    "personal data), false for public infrastructure",
                )
            return (
                "consent" in data
                or data.get("coarsen") is not None
                or any(rule.cls in (IDENTIFIER, QUASI) for rule in rules)
            )
        personal = data["personal"]
        if not isinstance(personal, bool):
            raise self.fail(f"{key}.personal", f"expected true or false, got {describe(personal)}")
        return personal

    def daily_coarsening_required(
        self, coarsen: Coarsening | None, key: str, source: SourceConfig
    ) -> None:
        """Refuse a personal source whose curves would leave finer than a day without consent."""
        if coarsen is None:
            raise self.fail(
                f"{key}.coarsen",
                f"source {source.id!r} declares personal entities without consent: its "
                "sub-daily series must be coarsened to the day; add coarsen: {to: P1D, "
                "sum: [<interval energies or volumes>], mean: [<powers, flows>]} "
                "(or consent: true if every entity consented to finer curves)",
            )
        if not coarsen.daily:
            raise self.fail(
                f"{key}.coarsen.to",
                f"{coarsen.step!r} keeps a curve finer than a day for personal entities "
                "without consent; use P1D (or consent: true)",
            )

    # -- one field -----------------------------------------------------------------
    def field_name(self, name: Any, key: str) -> None:
        if not isinstance(name, str) or not name:
            raise self.fail(
                f"{key}.{name}",
                f"a field name must be text, got {describe(name)}; quote it (YAML reads "
                'no, yes, on, off, true and false as booleans): "no": measure',
            )

    def rule(self, name: str, value: Any, key: str, timezone: str) -> FieldRule:
        if name == COARSENED_ROWS:
            raise self.fail(key, f"{COARSENED_ROWS!r} is reserved for the rows coarsening sums")
        if isinstance(value, str):
            if value not in CLASSES:
                raise self.fail(
                    key, f"unknown class {value!r}; expected one of: {', '.join(CLASSES)}"
                )
            if value == QUASI:
                raise self.fail(
                    key,
                    "a quasi-identifier needs a generalisation, e.g. "
                    "{class: quasi-identifier, grid: 500} (grid, bucket, band or prefix)",
                )
            return FieldRule(name, value)
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a class name or a mapping, got {describe(value)}")
        cls = value.get("class")
        if cls not in CLASSES:
            raise self.fail(
                f"{key}.class",
                f"unknown class {cls!r}; expected one of: {', '.join(CLASSES)}",
            )
        if cls != QUASI:
            self.mapping(value, key, ("class",))
            return FieldRule(name, cls)
        chosen = [g for g in GENERALISATIONS if g in value]
        unknown = [k for k in value if k != "class" and k not in GENERALISATIONS]
        if len(chosen) != 1:
            extra = f" (unknown: {', '.join(map(str, unknown))})" if unknown else ""
            raise self.fail(
                key,
                "a quasi-identifier takes exactly one generalisation: "
                f"{', '.join(GENERALISATIONS)}{extra}",
            )
        kind = chosen[0]
        self.mapping(value, key, ("class", kind, *_OPTIONS[kind]))
        return FieldRule(name, QUASI, self.generalisation(kind, value, name, key, timezone))

    def generalisation(
        self, kind: str, value: dict[str, Any], name: str, key: str, timezone: str
    ) -> Generalisation:
        """The one generalisation of a quasi-identifier, read by its kind's reader."""
        read = {
            "grid": self.grid,
            "bucket": self.bucket,
            "band": self.band,
            "prefix": self.prefix,
        }[kind]
        return read(value[kind], value, name, key, timezone)

    def grid(self, setting: Any, value: dict[str, Any], name: str, key: str, timezone: str) -> Grid:
        """A position on a grid of cells at least ``MIN_GRID_METRES`` wide."""
        where = f"{key}.grid"
        metres = self.positive(setting, where, "a cell size in metres, e.g. 500")
        if metres < MIN_GRID_METRES:
            raise self.fail(
                where,
                f"a grid cell of {metres:g} m is too fine to generalise a position: it "
                f"can single out a home or a person; use at least {MIN_GRID_METRES} m",
            )
        output = value.get("output", "centre")
        if output not in GRID_OUTPUTS:
            raise self.fail(
                f"{key}.output", f"{output!r}: expected one of {', '.join(GRID_OUTPUTS)}"
            )
        lon = value.get("lon")
        if lon is not None and (not isinstance(lon, str) or not lon or lon == name):
            raise self.fail(f"{key}.lon", "expected the name of the longitude field")
        return Grid(float(metres), output, lon)

    def bucket(
        self, setting: Any, value: dict[str, Any], name: str, key: str, timezone: str
    ) -> Bucket:
        """A time truncated to a step; read as normalise reads times (city's zone by default)."""
        if setting not in STEPS_S:
            raise self.fail(
                f"{key}.bucket",
                f"{setting!r}: expected one of {', '.join(STEPS_S)} (ISO 8601 durations)",
            )
        spec = {"field": name, **{k: value[k] for k in ("format", "timezone") if k in value}}
        spec.setdefault("timezone", timezone)
        return Bucket(
            setting, STEPS_S[setting], TimeSpec.from_config(spec, source=self.where, key=key)
        )

    def band(self, setting: Any, value: dict[str, Any], name: str, key: str, timezone: str) -> Band:
        """A number rounded down to a band of a positive width."""
        return Band(float(self.positive(setting, f"{key}.band", "a band width, e.g. 10")))

    def prefix(
        self, setting: Any, value: dict[str, Any], name: str, key: str, timezone: str
    ) -> Prefix:
        """A code cut to its first characters (a whole number of them, at least one)."""
        length = setting
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise self.fail(
                f"{key}.prefix", f"expected a number of characters to keep, got {describe(length)}"
            )
        return Prefix(length)

    def positive(self, value: Any, key: str, expected: str) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise self.fail(key, f"expected {expected}, got {describe(value)}")
        return value

    def grid_partners(self, fields: dict[str, FieldRule], key: str) -> dict[str, str]:
        partners: dict[str, str] = {}
        for rule in fields.values():
            grid = rule.generalisation
            if isinstance(grid, Grid) and grid.lon:
                if grid.lon in fields:
                    raise self.fail(
                        f"{key}.{grid.lon}",
                        f"{grid.lon!r} is the longitude of the grid of {rule.name!r}; "
                        "declare it only there",
                    )
                if grid.lon in partners:
                    raise self.fail(
                        f"{key}.{rule.name}.lon",
                        f"{grid.lon!r} is already paired with {partners[grid.lon]!r}",
                    )
                partners[grid.lon] = rule.name
        return partners

    # -- coarsening ----------------------------------------------------------------
    def coarsen(
        self, value: Any, key: str, fields: dict[str, FieldRule], timezone: str
    ) -> Coarsening:
        """How a source's rows fold into one per entity and step (a day, for people)."""
        data = self.mapping(value, key, _COARSEN_KEYS)
        step = data.get("to")
        if step not in STEPS_S:
            raise self.fail(
                f"{key}.to", f"{step!r}: expected one of {', '.join(STEPS_S)} (ISO 8601 durations)"
            )
        summed, mean, registers = self.aggregated(data, key, fields)
        lateness = self.duration(data, "lateness", key, DEFAULT_LATENESS_S)
        quiet = self.duration(data, "quiet", key, DEFAULT_QUIET_S)
        time = self.coarsen_time(data, key, fields, timezone)
        overrides = self.overrides(data, key, fields, {*summed, *mean, *registers})
        return Coarsening(
            step, STEPS_S[step], summed, mean, time, overrides, registers, lateness, quiet
        )

    def aggregated(
        self, data: dict[str, Any], key: str, fields: dict[str, FieldRule]
    ) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """(sum, mean, registers): measures each aggregated one way only."""
        summed = self.names(data["sum"], f"{key}.sum") if "sum" in data else ()
        mean = self.names(data["mean"], f"{key}.mean") if "mean" in data else ()
        registers = self.names(data["registers"], f"{key}.registers") if "registers" in data else ()
        for group, names in (("sum", summed), ("mean", mean), ("registers", registers)):
            for i, name in enumerate(names):
                rule = fields.get(name)
                if rule is None or rule.cls != MEASURE:
                    raise self.fail(
                        f"{key}.{group}[{i}]",
                        f"{name!r} must be a field declared as measure under fields",
                    )
        both = set(summed) & set(mean)
        if both:
            raise self.fail(key, f"{', '.join(sorted(both))} cannot be both summed and averaged")
        twice = set(registers) & (set(summed) | set(mean))
        if twice:
            raise self.fail(
                f"{key}.registers",
                f"{', '.join(sorted(twice))}: a register keeps its index, it is not aggregated",
            )
        return summed, mean, registers

    def coarsen_time(
        self, data: dict[str, Any], key: str, fields: dict[str, FieldRule], timezone: str
    ) -> TimeSpec | None:
        """The field that dates a row for coarsening, if declared (a kept field)."""
        if "time" not in data:
            return None
        raw = data["time"]
        if isinstance(raw, dict):
            self.mapping(raw, f"{key}.time", _TIME_KEYS)
            raw = {"timezone": timezone, **raw}
        time = TimeSpec.from_config(raw, source=self.where, key=f"{key}.time")
        if time.field not in fields:
            raise self.fail(
                f"{key}.time.field", f"{time.field!r} must be a field declared under fields"
            )
        return time

    def overrides(
        self, data: dict[str, Any], key: str, fields: dict[str, FieldRule], aggregated: set[str]
    ) -> dict[str, str | int | float]:
        """``set``: constants a coarsened row carries for measures not aggregated."""
        overrides: dict[str, str | int | float] = {}
        if "set" not in data:
            return overrides
        raw_set = data["set"]
        if not isinstance(raw_set, dict) or not raw_set:
            raise self.fail(
                f"{key}.set", f"expected a mapping field: value, got {describe(raw_set)}"
            )
        for name, constant in raw_set.items():
            where = f"{key}.set.{name}"
            rule = fields.get(str(name))
            if rule is None or rule.cls != MEASURE:
                raise self.fail(where, f"{name!r} must be a field declared as measure")
            if name in aggregated:
                raise self.fail(where, f"{name!r} is already aggregated")
            if isinstance(constant, bool) or not isinstance(constant, str | int | float):
                raise self.fail(where, f"expected a text or a number, got {describe(constant)}")
            overrides[str(name)] = constant
        return overrides

    def duration(self, data: dict[str, Any], name: str, key: str, default: int) -> int:
        """An ISO 8601 duration in days, hours and minutes (``PT6H``, ``P2D``), in seconds."""
        if name not in data:
            return default
        value = data[name]
        match = _DURATION.fullmatch(value) if isinstance(value, str) else None
        if match is None or value in ("P", "PT"):
            raise self.fail(
                f"{key}.{name}",
                f"expected an ISO 8601 duration such as PT6H or P2D, got {describe(value)}",
            )
        days, hours, minutes = (int(g or 0) for g in match.groups())
        return ((days * 24 + hours) * 60 + minutes) * 60
