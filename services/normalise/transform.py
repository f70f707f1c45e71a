"""One AnonymisedRecord → Observation series, column-wise, with no I/O.

For each mapped measure of the record: read its time column (UTC µs, DST-safe),
convert its values to the metric's canonical unit once per series (one factor,
or one per distinct unit of a unit field), turn registers into interval
consumption by difference with the previous reading of the same entity, drop
what was already published, and cut the points into series: interval metrics
into regular runs (start + step: the value covers [t, t + step)), instant
metrics into one regular series when evenly spaced, else one with ``times``.

State reads go through ``get_state(key)``; the new states come back in
:class:`Outcome` for the stage to write to its changelog.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from services.normalise import localtime, memory, registers, versions
from services.normalise.mapping import (
    DEFAULT_LATENESS_US,
    MeasureSpec,
    SourceMapping,
    StepSpec,
    parse_duration,
)
from services.normalise.plausibility import implausible
from services.normalise.positions import position_of
from services.normalise.quality import (
    OUT_OF_RANGE,
    STEP_INFERRED,
    TIME_FROM_RECEPTION,
)
from services.normalise.rejects import ATTRIBUTE_ERRORS, AttributeReject, other_columns
from services.normalise.sdm_models import Plan
from services.normalise.units import (
    Conversion,
    IncompatibleUnit,
    UnknownUnit,
    conversion,
    find_unit,
)
from services.normalise.vocabulary import Metric, SdmModel, Vocabulary, check_kind
from services.runtime.errors import RejectedInput
from services.runtime.timeparse import (
    DEFAULT_TIMEZONE,
    TIME_AMBIGUOUS,
    TIME_INVALID,
    TIME_NONEXISTENT,
    TimeSpec,
    parse_time_column,
)

US = 1_000_000
COARSENED = "anonymise.coarsened"  # attribute anonymise sets on coarsened records: the step
COARSENED_ROWS = "coarsened_rows"  # the column anonymise adds: input rows per bucket
# Daily-coarsened records are recognised by content, not by batch: see _bucket_identity.
BY_CONTENT = "\x00content"
BUCKET_SECONDS = {"PT5M": 300, "PT10M": 600, "PT15M": 900, "PT30M": 1800, "PT1H": 3600}
_ARRAYS = {"string": "strings", "double": "doubles", "long": "longs", "boolean": "booleans"}
# Internal only (above the 16 published quality bits): a time outside the source's
# plausible bounds; the reading is dropped, the flag never leaves.
TIME_IMPLAUSIBLE = 1 << 20
TIME_IMPLAUSIBLE_REASON = "time-implausible"

StateGetter = Callable[[str], dict[str, Any] | None]


@dataclass
class Outcome:
    observations: list[dict[str, Any]] = field(default_factory=list)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    dropped: Counter[str] = field(default_factory=Counter)  # reason -> readings
    # attributes of a Smart Data Models entity that no metric or description knows
    dropped_attributes: list[str] = field(default_factory=list)
    rejected: list[AttributeReject] = field(default_factory=list)  # attributes set aside
    letters: list[tuple[str, str]] = field(default_factory=list)  # (reason, message) to dlq
    # rows whose position was unreadable or out of range (published without it)
    position_drops: Counter[str] = field(default_factory=Counter)

    @property
    def readings(self) -> int:
        return sum(len(o["values"]) for o in self.observations)


@dataclass(frozen=True, slots=True)
class _Shape:
    """A record as its mapping reads it: the columns (a Smart Data Models plan's when
    the entity has a model), the mapped measures found in them, and the row count."""

    mapping: SourceMapping
    columns: dict[str, Any]
    measures: list[MeasureSpec]
    n: int
    model: SdmModel | None = None
    plan: Plan | None = None


@dataclass(frozen=True, slots=True)
class _Entity:
    """What the measures of one record share: the fields of every observation
    (``base``), where the state is read, the source whose time zone and lateness
    apply (None for a coarsened record: the defaults) and the lineage that tells a
    coarsened bucket's parts apart (None: a record's values are remembered)."""

    base: dict[str, Any]
    get_state: StateGetter
    source: SourceMapping | None = None
    lineage: str | None = None


# The per-measure values are plain tuples (a NamedTuple costs a Python call each:
# a Smart Data Models entity has a dozen one-row measures, and the call shows).
# A measure's row times (UTC µs, None: unknown), their quality flags, and steps (s).
_Timing = tuple[list[int | None], list[int], list[int | None] | None]
# The readings to use, in time order, each time once: times, raw values, flags,
# steps, and the unit conversion (one for all, or one per reading).
_Picked = tuple[
    list[int], list[float], list[int], list[int | None] | None, Conversion | list[Conversion]
]
# Readings as published: times, values, quality flags, steps.
_Readings = tuple[list[int], list[float], list[int], list[int | None]]


def state_key(city: str, pseudonym: str, metric: str) -> str:
    return f"{city}|{pseudonym}|{metric}"


def column_values(column: dict[str, Any]) -> list[Any]:
    """The values of a Column record, ``None`` where missing (avro/Column.avsc)."""
    values = list(column[_ARRAYS[column["kind"]]])
    for i in column.get("missing") or ():
        values[i] = None
    return values


def numbers(column: dict[str, Any]) -> tuple[list[float | None], int]:
    """A column as floats (None where missing or unreadable) and how many were unreadable."""
    kind = column["kind"]
    bad = 0
    if kind == "double":
        values: list[Any] = list(column["doubles"])
    elif kind == "long":
        values = [float(v) for v in column["longs"]]
    elif kind == "string":
        try:
            values = list(map(float, column["strings"]))
        except ValueError:
            values = []
            for text in column["strings"]:
                try:
                    values.append(float(text))
                except ValueError:
                    values.append(None)
                    bad += 1
    else:
        return [None] * len(column["booleans"]), len(column["booleans"])
    for i in column.get("missing") or ():
        if values[i] is None:
            bad -= 1  # an empty cell is missing, not unreadable
        values[i] = None
    if kind != "long" and not math.isfinite(sum(v for v in values if v is not None)):
        bad += _drop_non_finite(values)
    return values, bad


def _drop_non_finite(values: list[float | None]) -> int:
    """NaN and infinities (``float("nan")`` reads the text "NaN") are unreadable, not
    values: one would turn every later sum into NaN. Ingest refuses them; this
    keeps a record written by anything else from spoiling the totals."""
    dropped = 0
    for i, v in enumerate(values):
        if v is not None and not math.isfinite(v):
            values[i] = None
            dropped += 1
    return dropped


class Normaliser:
    """Holds the compiled mappings; :meth:`normalise` is the pure transform."""

    def __init__(
        self,
        vocabulary: Vocabulary,
        mappings: dict[tuple[str, str], SourceMapping],
        *,
        window_us: int = memory.WINDOW_US,
        max_runs: int = memory.MAX_RUNS,
    ):
        self.vocabulary = vocabulary
        self.mappings = mappings
        self.window_us = window_us
        self.max_runs = max_runs
        self._sdm_times: dict[tuple[str, str, str], tuple[TimeSpec, ...]] = {}
        # (measure, unit, integrate) -> checked conversion; measures live as long as we do
        self._conversions_seen: dict[tuple[int, str, bool], Conversion] = {}
        self._sdm_specs: dict[tuple[str, str, str], MeasureSpec] = {}
        # time specs -> a token standing for their value, found by identity (see _token)
        self._tokens: dict[int, tuple[Any, int]] = {}
        self._by_value: dict[Any, int] = {}
        default = vocabulary.plausibility.on_implausible
        self._refuse = {
            key: (found.on_implausible or default) == "refuse" for key, found in mappings.items()
        }

    # -- entry point --------------------------------------------------------------
    def normalise(self, record: dict[str, Any], get_state: StateGetter) -> Outcome:
        """One record's observations, new states, drops and dead letters. Pure: state is
        read through ``get_state`` and the new states come back in the Outcome."""
        shape = self._shape(record)
        if shape is None:
            return Outcome()  # an inventory entity (a container, a station): nothing measured
        base = self._base(shape, record)
        out = Outcome()
        spec = shape.mapping.position
        if spec is not None and not shape.mapping.personal:
            wanted = spec.columns
            found = {c["name"]: c for c in record["columns"] if c["name"] in wanted}
            base["position"], out.position_drops = position_of(spec, found)
        if shape.plan is not None:
            out.dropped_attributes = shape.plan.dropped
            if shape.plan.unmapped_values:
                out.dropped["unmapped-state"] += shape.plan.unmapped_values
        time_cache: dict[Any, Any] = {}
        coarse = (record.get("attributes") or {}).get(COARSENED)
        if coarse:
            lineage, timing_of = _coarsened_timing(record, coarse, shape)
            entity = _Entity(base, get_state, None, lineage)
        else:
            timing_of = self._record_timing(shape, record, time_cache)
            entity = _Entity(base, get_state, shape.mapping)
        for measure in shape.measures:
            timing = timing_of(measure)  # outside the try: a bad time rejects the record
            try:
                self._measure(measure, shape.columns, timing, entity, out)
            except ATTRIBUTE_ERRORS as exc:
                out.rejected.append(_reject(measure, shape.measures, shape.columns, exc))
        out.letters.extend(time_cache.get("letters", ()))
        return out

    def _shape(self, record: dict[str, Any]) -> _Shape | None:
        """The record as its mapping reads it (None: an inventory entity, nothing
        measured); raises for an unmapped source, an unknown type or no measure."""
        city, source = record["city"], record["source"]
        mapping = self.mappings.get((city, source))
        if mapping is None:
            raise RejectedInput(
                "unmapped-source",
                f"source {city}/{source} has no `mapping:` section in deploy/cities/{city}.yaml "
                "(or the city is unknown to this node); add one and replay this dead letter",
            )
        columns = {c["name"]: c for c in record["columns"]}
        n = record["row_count"]
        model: SdmModel | None = None
        plan: Plan | None = None
        measures = [m for m in mapping.measures if m.column in columns]
        if mapping.smart_data_models:
            model = self._model(mapping, record)
            if model is not None:
                plan = self.vocabulary.types[model.type].plan(
                    columns, _structural(mapping, measures)
                )
                columns = plan.columns
                measures += self._sdm_measures(model, plan)
        if not measures and plan is not None and not plan.dropped:
            return None
        if not measures:
            raise _no_measure(mapping, record, columns, plan)
        return _Shape(mapping, columns, measures, n, model, plan)

    def _model(self, mapping: SourceMapping, record: dict[str, Any]) -> SdmModel | None:
        """The built-in Smart Data Models mapping of the record's entity type (None:
        none, which only a source mapping measures of its own may have)."""
        entity_type = record.get("entity_type")
        model = self.vocabulary.models.get(entity_type or "")
        if model is None and not mapping.measures:
            raise RejectedInput(
                "unknown-entity-type",
                f"entity type {entity_type!r} has no built-in Smart Data Models mapping; "
                f"known types: {', '.join(sorted(self.vocabulary.models))} (to add one: "
                "docs/normalise.md, 'Smart Data Models')",
            )
        return model

    def _base(self, shape: _Shape, record: dict[str, Any]) -> dict[str, Any]:
        """The fields every observation of the record shares."""
        mapping, columns = shape.mapping, shape.columns
        return {
            "city": record["city"],
            "entity_pseudonym": record["entity_pseudonym"],
            "entity_type": mapping.entity_type or record.get("entity_type"),
            "zone": self._zone(mapping, columns, record),
            "sector": self._sector(mapping, columns, record),
            "position": None,
            "source": record["source"],
            "dataset": record["dataset"],
            "lineage_id": record["lineage_id"],
            "key_epoch": record.get("key_epoch"),
        }

    def _record_timing(
        self, shape: _Shape, record: dict[str, Any], cache: dict[Any, Any]
    ) -> Callable[[MeasureSpec], _Timing]:
        """How a measure of a (not coarsened) record finds its times: its own time
        fields, else its Smart Data Models ones, else the mapping's (parsed once per
        record through ``cache``); the steps are the record's, shared."""
        mapping, model, n = shape.mapping, shape.model, shape.n
        steps = self._steps(mapping.step, model, shape.columns, n, mapping)

        def timing(measure: MeasureSpec) -> _Timing:
            specs = measure.times or (
                self._sdm_time_specs(model, measure.column, mapping) if model else mapping.times
            )
            times, flags = self._times(
                specs, shape.columns, record, n, model is not None, cache, mapping
            )
            return times, flags, steps

        return timing

    # -- one measure ------------------------------------------------------------------
    def _measure(
        self,
        spec: MeasureSpec,
        columns: dict[str, Any],
        timing: _Timing,
        entity: _Entity,
        out: Outcome,
    ) -> None:
        """One measure's observations, state and drops, added to the record's ``out``
        (one tally per record that each step adds to: an Outcome per measure, merged,
        cost a Smart Data Models entity of a dozen one-row measures a tenth more);
        raises one of ATTRIBUTE_ERRORS for a unit it cannot convert, before anything
        is counted, so that the attribute alone is set aside."""
        metric = spec.metric
        key = state_key(entity.base["city"], entity.base["entity_pseudonym"], metric.name)
        state = entity.get_state(key)
        times, tflags, steps = timing
        if state and any(tflags) and any(q & TIME_AMBIGUOUS for q in tflags):
            zone = entity.source.timezone if entity.source else DEFAULT_TIMEZONE
            times, tflags = localtime.place_repeated_hour(times, tflags, state, zone)
        values, bad = numbers(columns[spec.column])
        integrate = spec.kind == "average" and metric.temporal == "interval"
        convs = self._conversions(spec, columns, len(values), integrate)  # may reject it
        if bad:
            out.dropped["bad-value"] += bad
        picked = _in_time_order(values, times, tflags, steps, convs, out)
        if picked is None:
            return
        if spec.kind == "cumulative":
            done = self._cumulative(spec, columns, picked, state, entity, out)
        else:
            done = self._converted(spec, picked, integrate, state, entity, out)
        if done is not None:
            new_state, readings, interval = done
            out.states[key] = new_state
            if readings[0]:
                self._emit(out, entity.base, metric, *readings, interval)

    def _cumulative(
        self,
        spec: MeasureSpec,
        columns: dict[str, Any],
        picked: _Picked,
        state: dict[str, Any] | None,
        entity: _Entity,
        out: Outcome,
    ) -> tuple[dict[str, Any], _Readings, bool] | None:
        """A register's readings as interval consumption (registers.py), checked for
        plausibility, and the meter's new state; None: every reading was stale."""
        ts, raw, qs, _, convs = picked
        found = self._register_intervals(spec, columns, ts, raw, qs, convs, state, out)
        if found is None:
            return None
        ts, vs, qs, st, new_state = found
        readings = self._plausible(spec.metric, entity.base, ts, vs, qs, st, True, out)
        return new_state, readings, True

    def _converted(
        self,
        spec: MeasureSpec,
        picked: _Picked,
        integrate: bool,
        state: dict[str, Any] | None,
        entity: _Entity,
        out: Outcome,
    ) -> tuple[dict[str, Any], _Readings, bool] | None:
        """Readings in the metric's unit, checked for plausibility and range, then
        compared with what was published (None: nothing left to publish or remember)."""
        metric = spec.metric
        interval = metric.temporal == "interval"
        ts, raw, qs, st, convs = picked
        # an average over an interval becomes the interval's quantity: it needs a step
        if (integrate or interval) and (st is None or None in st):
            st = _infer_steps(ts, st, qs)
        if st is None:
            st = [None] * len(ts)
        decimals = metric.decimals
        if not isinstance(convs, Conversion):  # several units in one record
            ts, vs, qs, st = _convert_each(convs, ts, raw, qs, st, decimals, out)
        elif convs.integrate:
            if None in st:  # integrating needs a step: readings without one are counted
                keep = [k for k, step in enumerate(st) if step is not None]
                out.dropped["no-step"] += len(ts) - len(keep)
                ts, raw, qs, st = _pick(keep, ts, raw, qs, st)
            factor = convs.scale / 3600
            vs = [round(v * factor * step, decimals) for v, step in zip(raw, st, strict=True)]
        elif convs.identity:
            vs = list(raw)
        else:
            scale, offset = convs.scale, convs.offset
            vs = [round(v * scale + offset, decimals) for v in raw]
        ts, vs, qs, st = self._plausible(metric, entity.base, ts, vs, qs, st, interval, out)
        if not ts:
            return None
        # Clamped before being compared and remembered: a correction then replaces
        # the value that was published, not the raw one.
        _check_range(metric, vs, qs, interval)
        return self._versioned(metric, (ts, vs, qs, st), state, entity, interval, out)

    def _versioned(
        self,
        metric: Metric,
        readings: tuple[list, list, list, list],
        state: dict[str, Any] | None,
        entity: _Entity,
        interval: bool,
        out: Outcome,
    ) -> tuple[dict[str, Any], _Readings, bool] | None:
        """The readings not published yet and the state remembering them; repeats are
        counted, late ones dead-lettered, corrections emitted with their versions
        (versions.py). None: nothing new and nothing to correct."""
        ts, vs, qs, st = readings
        source, lineage = entity.source, entity.lineage
        horizon = source.lateness_us if source else DEFAULT_LATENESS_US
        identity = _bucket_identity(lineage, state, ts, vs)
        verdict = versions.sort_out(state, ts, vs, horizon_us=horizon, lineage=identity)
        fixes = _corrections(verdict, ts, vs, qs, st, out, source)
        if verdict.new is not None:
            ts, vs, qs, st = _pick(verdict.new, ts, vs, qs, st)
        if not ts and fixes is None:
            return None
        new_state = memory.remember(
            state,
            ts,
            lineage=_bucket_identity(lineage, None, ts, vs),
            window_us=self.window_us,
            max_runs=self.max_runs,
        )
        if lineage is None:
            new_state = _remember_values(new_state, ts, vs, fixes, horizon)
        if fixes is not None:
            self._emit(out, entity.base, metric, *fixes[:4], interval, revisions=fixes[4:])
        return new_state, (ts, vs, qs, st), interval

    @staticmethod
    def _emit(out, base, metric, ts, vs, qs, st, interval, revisions=None) -> None:
        """Observations of readings in time order (``revisions``: their versions and
        the values they replace, for corrections)."""
        _check_range(metric, vs, qs, interval)
        k = 0
        for start, step, times_out, vals, quality in _series(ts, vs, qs, st, interval):
            observation = {
                **base,
                "domain": metric.domain,
                "carrier": metric.carrier if metric.domain == "energy" else None,
                "metric": metric.name,
                "unit": metric.unit.symbol,
                "start": start,
                "step_seconds": step,
                "times": times_out,
                "values": vals,
                "quality": quality if any(quality) else [],
            }
            if revisions:
                observation["versions"] = revisions[0][k : k + len(vals)]
                observation["replaced"] = revisions[1][k : k + len(vals)]
            k += len(vals)
            out.observations.append(observation)

    def _plausible(self, metric: Metric, base, ts, vs, qs, st, interval: bool, out: Outcome):
        """(ts, vs, qs, st) with the values no meter or sensor can produce flagged
        out-of-range, or dropped for a source that refuses them (plausibility.py)."""
        limit = self.vocabulary.plausibility.limits.get(metric.name)
        if limit is None or not vs:
            return ts, vs, qs, st
        bad = implausible(limit, vs, st, interval)
        if not bad:
            return ts, vs, qs, st
        if self._refuse.get((base["city"], base["source"]), False):
            out.dropped["implausible"] += len(bad)
            drop = set(bad)
            return _pick([k for k in range(len(ts)) if k not in drop], ts, vs, qs, st)
        for k in bad:
            qs[k] |= OUT_OF_RANGE
        return ts, vs, qs, st

    def _register_intervals(
        self,
        spec: MeasureSpec,
        columns: dict[str, Any],
        ts: list[int],
        raw: list[float],
        qs: list[int],
        convs: Conversion | list[Conversion],
        state: dict[str, Any] | None,
        out: Outcome,
    ) -> tuple[list, list, list, list, dict[str, Any]] | None:
        """Interval consumption between consecutive register readings, and the
        meter's new state (None: every reading was stale); see registers.py."""
        if isinstance(convs, Conversion):
            scale = convs.scale
            readings = [v * scale for v in raw] if scale != 1.0 else raw
        else:
            scale = convs[-1].scale
            readings = [v * c.scale for v, c in zip(raw, convs, strict=True)]
        read = self._rate_read(spec, columns)
        own = read * spec.max_rate.factor if read is not None and spec.max_rate else None
        rate = registers.meter_rate(
            spec.max_rate, read, state, self.vocabulary.max_rates.get(spec.metric.name)
        )
        found = registers.intervals(
            ts,
            readings,
            qs,
            memory.register(state),
            wrap=spec.rollover * scale if spec.rollover else None,
            rate=rate,
            decimals=spec.metric.decimals,
            pending=registers.pending_restart(state),
        )
        if found.stale:
            out.dropped["stale-register"] += found.stale
        if found.restarts:
            out.dropped["register-restarted"] += found.restarts
        if found.register is None:
            return None
        new_state = memory.remember(state, [], register=found.register, window_us=self.window_us)
        registers.remember(new_state, own, restarted=found.pending)
        return found.times, found.values, found.quality, found.steps, new_state

    @staticmethod
    def _rate_read(spec: MeasureSpec, columns: dict[str, Any]) -> float | None:
        """The largest rate the record gives for the meter (in the limit's unit)."""
        limit = spec.max_rate
        column = columns.get(limit.field) if limit is not None and limit.field else None
        if column is None:
            return None
        present = [v for v in numbers(column)[0] if v is not None and v > 0]
        return max(present) if present else None

    # -- units -------------------------------------------------------------------------
    def _conversions(
        self, spec: MeasureSpec, columns: dict[str, Any], n: int, integrate: bool
    ) -> Conversion | list[Conversion]:
        metric = spec.metric
        unit_column = columns.get(spec.unit_field) if spec.unit_field else None
        if unit_column is None:
            if spec.unit is None:
                raise UnknownUnit(
                    f"{spec.column}: the unit field {spec.unit_field!r} is not in the record and "
                    "the mapping gives no default unit"
                )
            return self._conversion(spec, spec.unit, integrate)
        names = column_values(unit_column)
        distinct = set(names)
        by_name: dict[Any, Conversion] = {}
        for name in distinct:
            if name is None or name == "":
                if spec.unit is None:
                    raise UnknownUnit(
                        f"{spec.column}: a value has no unit and no default is mapped"
                    )
                by_name[name] = self._conversion(spec, spec.unit, integrate)
                continue
            unit = find_unit(str(name))
            if unit is None:
                raise UnknownUnit(
                    f"{spec.column}: unknown unit {name!r} in field {spec.unit_field!r} "
                    f"(metric {metric.name} is in {metric.unit.symbol})"
                )
            by_name[name] = self._conversion(spec, unit, integrate)
        if len(by_name) == 1:
            return next(iter(by_name.values()))
        return [by_name[name] for name in names]

    def _conversion(self, spec: MeasureSpec, unit, integrate: bool) -> Conversion:
        key = (id(spec), unit.symbol, integrate)
        found = self._conversions_seen.get(key)
        if found is None:
            found = self._conversions_seen[key] = self._check_conversion(spec, unit, integrate)
        return found

    @staticmethod
    def _check_conversion(spec: MeasureSpec, unit, integrate: bool) -> Conversion:
        metric = spec.metric

        def incompatible(message: str) -> IncompatibleUnit:
            return IncompatibleUnit(
                f"{spec.column} in {unit.symbol} cannot be {metric.name} "
                f"({metric.unit.symbol}): {message}"
            )

        check_kind(metric, spec.kind, unit, fail=incompatible)
        return conversion(unit, metric.unit, integrate=integrate)

    # -- time, step, zone, sector ------------------------------------------------------
    def _times(self, specs, columns, record, n, sdm: bool, cache, mapping: SourceMapping):
        """(times, flags) of the rows: the first of ``specs`` that gives a row a time
        wins; a row none gives falls back on the transport's times (flagged), else is
        invalid; times outside the source's bounds are set aside (_check_bounds).
        Kept in ``cache`` per record: measures with the same specs share them."""
        key = self._token(specs)
        found = cache.get(key)
        if found is not None:
            return found
        times, flags, missing = _read_times(specs, columns, n, sdm, cache)
        if missing:
            fallback, fallback_flag = _fallback_times(record, n, sdm, mapping)
            for i in range(n):
                if times[i] is None:
                    if fallback is not None and not flags[i] & TIME_NONEXISTENT:
                        times[i] = fallback[i]
                        flags[i] |= fallback_flag
                    elif not flags[i] & TIME_NONEXISTENT:
                        flags[i] |= TIME_INVALID
        _check_bounds(times, flags, record, mapping, cache)
        result = (times, flags)
        cache[key] = result
        return result

    def _token(self, specs: tuple[TimeSpec, ...]) -> int:
        """A small int for the value of ``specs``, the same for equal tuples, found by
        identity: the tuples live as long as the mappings, and hashing one hashes each
        TimeSpec in Python (a dozen calls per measure of a Smart Data Models entity).
        The tuple is kept with its token, so its id is never reused while it is here."""
        found = self._tokens.get(id(specs))
        if found is not None and found[0] is specs:
            return found[1]
        token = self._by_value.setdefault(specs, len(self._by_value))
        self._tokens[id(specs)] = (specs, token)
        return token

    def _steps(
        self,
        step: StepSpec | None,
        model: SdmModel | None,
        columns: dict[str, Any],
        n: int,
        mapping: SourceMapping,
    ) -> list[int | None] | None:
        """Each row's step (s): the mapping's (fixed, or read from a field), else the
        length of a Smart Data Models period; None: unknown (inferred later)."""
        if step is not None:
            return _field_steps(step, columns, n)
        if model is not None and model.period is not None:
            return _period_steps(model.period, columns, mapping.timezone)
        return None

    def _zone(self, mapping: SourceMapping, columns, record) -> str | None:
        ref = mapping.zone
        if ref is None:
            return (record.get("attributes") or {}).get("zone") or None
        value = _first(ref, columns, record)
        if value is not None and ref.values:
            value = ref.values.get(value, value)
        return value

    def _sector(self, mapping: SourceMapping, columns, record) -> str | None:
        ref = mapping.sector
        if ref is None:
            value = (record.get("attributes") or {}).get("sector") or None
            values = None
        else:
            value = _first(ref, columns, record)
            values = ref.values
        if value is None:
            return None
        if values and value in values:
            return values[value]
        if value in self.vocabulary.sectors:
            return value
        raise RejectedInput(
            "unknown-sector",
            f"sector {value!r} of {mapping.city}/{mapping.source} is neither a sector of the "
            f"vocabulary ({', '.join(self.vocabulary.sectors)}) nor translated by the "
            "mapping's sector.values",
        )

    # -- Smart Data Models ----------------------------------------------------------------
    def _sdm_measures(self, model: SdmModel, plan: Plan) -> list[MeasureSpec]:
        """The plan's measures as specs (built once per type, column and metric)."""
        out = []
        for column, carrier in plan.measures:
            key = (model.type, column, carrier.metric.name)
            spec = self._sdm_specs.get(key)
            if spec is None:
                plain = carrier.member is None and carrier.values is None
                spec = self._sdm_specs[key] = MeasureSpec(
                    column=column,
                    metric=carrier.metric,
                    kind=carrier.entry.kind,
                    unit=carrier.entry.unit,
                    unit_field=f"{column}@unitCode" if plain else None,
                )
            out.append(spec)
        return out

    def _sdm_time_specs(
        self, model: SdmModel, attribute: str, mapping: SourceMapping
    ) -> tuple[TimeSpec, ...]:
        key = (model.type, attribute, mapping.timezone)
        found = self._sdm_times.get(key)
        if found is None:
            names = (f"{attribute}@observedAt", f"{attribute}.timestamp", *model.time)
            found = tuple(TimeSpec(name, "iso8601", mapping.timezone) for name in names)
            found = (*mapping.times, *found) if mapping.times else found
            self._sdm_times[key] = found
        return found


# -- helpers -----------------------------------------------------------------------------
def _read_times(specs, columns, n: int, sdm: bool, cache) -> tuple[list, list[int], int]:
    """(times, flags, rows still without a time) from the time fields of ``specs``,
    in order: a later field only fills the rows the earlier ones left without."""
    times: list[int | None] = [None] * n
    flags = [0] * n
    missing = n
    for spec in specs:
        column = columns.get(spec.field)
        if column is None:
            continue
        parsed = cache.get(spec)
        if parsed is None:  # each field parsed once per record
            raw = column_values(column)
            if sdm:  # a Smart Data Models period ("start/end") counts from its start
                raw = [v.split("/", 1)[0] if isinstance(v, str) and "/" in v else v for v in raw]
            parsed = cache[spec] = parse_time_column(raw, spec)
        parsed_times, parsed_flags = parsed
        if missing == n and None not in parsed_times:
            return list(parsed_times), list(parsed_flags), 0
        for i in range(n):
            if times[i] is None:
                if parsed_times[i] is not None:
                    times[i] = parsed_times[i]
                    flags[i] = parsed_flags[i]
                else:
                    flags[i] |= parsed_flags[i] & ~TIME_INVALID
        missing = times.count(None)
        if not missing:
            break
    return times, flags, missing


def _fallback_times(
    record: dict[str, Any], n: int, sdm: bool, mapping: SourceMapping
) -> tuple[list[int] | None, int]:
    """The times of rows without one, and their flag: the transport's event times;
    with no time in the transport (Smart Data Models without one, historique TIC
    frames) the reception time, flagged; None: none (the rows are invalid)."""
    events = record.get("event_times") or []
    if len(events) == n:
        return list(events), 0
    reception = sdm or mapping.format == "linky-tic"
    if reception and record.get("received_at") is not None:
        return [record["received_at"]] * n, TIME_FROM_RECEPTION
    return None, 0


def _field_steps(step: StepSpec, columns: dict[str, Any], n: int) -> list[int | None] | None:
    """The mapping's step: fixed, or a duration field parsed once per distinct value."""
    if step.seconds is not None:
        return [step.seconds] * n
    column = columns.get(step.field or "")
    if column is None:
        return None
    raw = column_values(column)
    distinct = set(raw)
    if len(distinct) == 1:
        value = raw[0]
        return [None if value is None else parse_duration(value, step.format)] * n
    parsed: dict[Any, int | None] = {}
    out = []
    for value in raw:
        if value not in parsed:
            parsed[value] = None if value is None else parse_duration(value, step.format)
        out.append(parsed[value])
    return out


def _period_steps(
    period: tuple[str, str], columns: dict[str, Any], timezone: str
) -> list[int | None] | None:
    """The length of a Smart Data Models period (its start and end fields)."""
    start_field, end_field = period
    if start_field not in columns or end_field not in columns:
        return None
    spec_a = TimeSpec(start_field, "iso8601", timezone)
    spec_b = TimeSpec(end_field, "iso8601", timezone)
    a, _ = parse_time_column(column_values(columns[start_field]), spec_a)
    b, _ = parse_time_column(column_values(columns[end_field]), spec_b)
    return [
        (y - x) // US if x is not None and y is not None and y > x else None
        for x, y in zip(a, b, strict=True)
    ]


def _no_measure(
    mapping: SourceMapping, record: dict[str, Any], columns: dict[str, Any], plan: Plan | None
) -> RejectedInput:
    """The rejection of a record none of whose mapped measures is there, saying which."""
    unknown = f"; not in the vocabulary: {', '.join(plan.dropped)}" if plan else ""
    wanted = ", ".join(sorted({m.column for m in mapping.measures})) or "(built-in)"
    return RejectedInput(
        "no-measure",
        f"none of the mapped measures ({wanted}) is in the record "
        f"(fields: {', '.join(sorted(columns)) or 'none'}){unknown}; check the privacy "
        f"policy keeps them and the mapping of {record['city']}/{record['source']}",
    )


def _coarsened_timing(
    record: dict[str, Any], coarse: str, shape: _Shape
) -> tuple[str, Callable[[MeasureSpec], _Timing]]:
    """A coarsened record's lineage and timing: anonymise summed the rows per bucket,
    so the times are the bucket starts (UTC) and the steps the buckets' lengths."""
    n = shape.n
    events = list(record.get("event_times") or [])
    if len(events) != n:
        raise RejectedInput(
            "malformed-record", "a coarsened record must carry one event time per row"
        )
    steps = _bucket_steps(events, coarse, shape.mapping.timezone)
    # A day leaves anonymise once, whole: the same day again (a push re-sent
    # without an idempotency key: another lineage) is known by its value.
    lineage = BY_CONTENT if coarse == "P1D" else record["lineage_id"]
    return lineage, lambda _measure: (events, [0] * n, steps)


def _in_time_order(values, times, tflags, steps, convs, out: Outcome) -> _Picked | None:
    """The readings with a value and a time, in time order, each time once (see
    :func:`_select`); None: none."""
    idx = _select(values, times, tflags, out)
    if idx is None:
        if not times:
            return None
        return list(times), values, list(tflags), list(steps) if steps is not None else None, convs
    if not idx:
        return None
    return (
        [times[i] for i in idx],
        [values[i] for i in idx],
        [tflags[i] for i in idx],
        [steps[i] for i in idx] if steps is not None else None,
        convs if isinstance(convs, Conversion) else [convs[i] for i in idx],
    )


def _convert_each(convs: list[Conversion], ts, raw, qs, st, decimals: int, out: Outcome) -> tuple:
    """A conversion per reading (a unit field with several units in one record)."""
    vs = []
    keep = []
    for k, (v, conv, step) in enumerate(zip(raw, convs, st, strict=True)):
        if conv.integrate:
            if step is None:
                out.dropped["no-step"] += 1
                continue
            vs.append(round(v * conv.scale * step / 3600, decimals))
        else:
            vs.append(round(v * conv.scale + conv.offset, decimals))
        keep.append(k)
    if len(keep) != len(ts):
        ts, _, qs, st = _pick(keep, ts, raw, qs, st)
    return ts, vs, qs, st


def _structural(mapping: SourceMapping, measures: list[MeasureSpec]) -> set[str]:
    """Columns that are no attribute of the entity's model: those the city maps itself
    (measures, zone, sector) and the rows count anonymise adds when it coarsens."""
    names = {m.column for m in measures} | {COARSENED_ROWS}
    names |= {ref.field for ref in (mapping.zone, mapping.sector) if ref is not None and ref.field}
    return names


def _first(ref, columns, record) -> str | None:
    if ref.attribute is not None:
        return (record.get("attributes") or {}).get(ref.attribute) or None
    column = columns.get(ref.field)
    value = _first_value(column)
    return None if value is None or value == "" else str(value)


def _first_value(column: dict[str, Any] | None) -> Any:
    if column is None:
        return None
    missing = set(column.get("missing") or ())
    for i, value in enumerate(column[_ARRAYS[column["kind"]]]):
        if i not in missing:
            return value
    return None


def _bucket_identity(
    lineage: str | None, state: dict[str, Any] | None, ts: list[int], vs: list[float]
) -> str | None:
    """What tells a coarsened bucket's parts apart (memory's ``tail``): the batch
    (lineage) for per-message buckets, whose parts come in several batches; for a
    day (BY_CONTENT) its value, so that a day re-sent with another lineage is a
    duplicate and never lands twice (the entity and the day are the state's key and
    time). ``state``: the bucket at its ``hwm`` is the one looked up, else the last."""
    if lineage != BY_CONTENT:
        return lineage
    hwm = state.get("hwm") if state else None
    k = ts.index(hwm) if hwm in ts else len(ts) - 1
    return f"={vs[k]!r}"


def _bucket_steps(starts: list[int], step: str, timezone: str) -> list[int | None]:
    """Length of each coarsened bucket: fixed, or the local day (23, 24 or 25 hours)."""
    fixed = BUCKET_SECONDS.get(step)
    if fixed is not None:
        return [fixed] * len(starts)
    if step != "P1D":
        return [None] * len(starts)
    zone = ZoneInfo(timezone)
    out: list[int | None] = []
    for start in starts:
        day = datetime.fromtimestamp(start / US, zone).date() + timedelta(days=1)
        end = datetime.combine(day, time(0), tzinfo=zone).timestamp()
        out.append(round(end - start / US))
    return out


def _select(values, times, tflags, out: Outcome) -> list[int] | None:
    """Positions of the readings to use, in time order, each time once (the later
    row of a repeated time: a value corrected within one delivery); None: all of
    them as they are (the common case, checked without building anything)."""
    if None not in values and None not in times:
        if times == sorted(times) and len(set(times)) == len(times):
            return None
        rows = sorted((t, i) for i, t in enumerate(times))
    else:
        rows = []
        for i, v in enumerate(values):
            if v is None:
                continue
            t = times[i]
            if t is None:
                flag = tflags[i]
                reason = (
                    "time-nonexistent"
                    if flag & TIME_NONEXISTENT
                    else "time-implausible"
                    if flag & TIME_IMPLAUSIBLE
                    else "time-invalid"
                )
                out.dropped[reason] += 1
                continue
            rows.append((t, i))
        rows.sort()
    idx = []
    last = None
    for t, i in rows:
        if t == last:  # the same time twice in one delivery: its later row wins
            out.dropped["duplicate"] += 1
            idx[-1] = i
            continue
        idx.append(i)
        last = t
    return idx


def _reject(
    spec: MeasureSpec, measures: list[MeasureSpec], columns: dict[str, Any], error: RejectedInput
) -> AttributeReject:
    """One attribute set aside (its unit): the entity's other metrics go on."""
    column = columns[spec.column]
    readings = len(column[_ARRAYS[column["kind"]]]) - len(column.get("missing") or ())
    return AttributeReject(
        spec.column, error.reason, str(error), readings, other_columns(spec, measures, columns)
    )


def _check_bounds(times, flags, record, mapping: SourceMapping, cache) -> None:
    """Times outside the source's plausible bounds become None (flagged, counted by
    :func:`_select`) and one ``time-implausible`` dead letter per record says which;
    a record whose every time is implausible is rejected whole (with its original)."""
    bad = mapping.bounds.implausible(times, record.get("received_at"))
    if not bad:
        return
    shown = ", ".join(f"row {i + 1}: {_iso(times[i])}" for i in bad[:3])
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    message = (
        f"{len(bad)} of {len(times)} rows of {mapping.city}/{mapping.source} have a time "
        f"outside the plausible bounds ({mapping.bounds.describe()}): {shown}{more}; "
        "check the source's time field and format (epoch seconds in a milliseconds "
        "field read as 1970) or widen the mapping's plausible_time"
    )
    if len(bad) == len(times):
        raise RejectedInput(TIME_IMPLAUSIBLE_REASON, message)
    for i in bad:
        times[i] = None
        flags[i] |= TIME_IMPLAUSIBLE
    cache.setdefault("letters", []).append((TIME_IMPLAUSIBLE_REASON, message))


def _iso(t_us: int) -> str:
    """A UTC time as ISO 8601 text, or its µs count when no date can show it."""
    try:
        return datetime.fromtimestamp(t_us / US, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, ValueError, OSError):
        return f"{t_us} µs from 1970 (outside the years 1-9999)"


def _corrections(verdict, ts, vs, qs, st, out: Outcome, source: SourceMapping | None):
    """Count the duplicates and late repeats of a verdict, and the corrections to
    publish: (ts, vs, qs, st, versions, replaced), or None."""
    if verdict.duplicates:
        out.dropped["duplicate"] += verdict.duplicates
    late = verdict.too_late
    if late:
        out.dropped["too-late"] += len(late)
        hours = (source.lateness_us if source else DEFAULT_LATENESS_US) / 3_600_000_000
        where = f"{source.city}/{source.source}" if source else "the source"
        shown = ", ".join(_iso(ts[k]) for k in late[:3]) + (" ..." if len(late) > 3 else "")
        out.letters.append(
            (
                "too-late",
                f"{len(late)} readings repeat times published more than {hours:g} h before "
                f"the entity's latest reading ({shown}): past the lateness horizon of "
                f"{where} (mapping `lateness:`), a new value is no longer applied; if they "
                "repeat what was sent, nothing is lost",
            )
        )
    if not verdict.corrections:
        return None
    picked = _pick(verdict.corrections, ts, vs, qs, st)
    return (*picked, list(verdict.versions), list(verdict.replaced))


def _remember_values(state, ts, vs, fixes, horizon_us: int):
    """The state keeping the values just published (new ones and corrections)."""
    if fixes is None:
        return versions.remember(state, ts, vs, horizon_us=horizon_us)
    pairs = sorted([*zip(ts, vs, strict=True), *zip(fixes[0], fixes[1], strict=True)])
    corrected = dict(zip(fixes[0], fixes[4], strict=True))
    return versions.remember(
        state,
        [t for t, _ in pairs],
        [v for _, v in pairs],
        horizon_us=horizon_us,
        corrected=corrected,
    )


def _pick(keep: list[int], *lists: list) -> tuple[list, ...]:
    return tuple([items[k] for k in keep] for items in lists)


def _infer_steps(ts: list[int], steps: list[int | None] | None, qs: list[int]):
    """Fill unknown steps with the most common spacing of the readings (flagged)."""
    spacings = Counter(b - a for a, b in pairwise(ts) if (b - a) % US == 0)
    if not spacings:
        return steps
    spacing = spacings.most_common(1)[0][0] // US
    out = list(steps) if steps is not None else [None] * len(ts)
    for k, step in enumerate(out):
        if step is None:
            out[k] = spacing
            qs[k] |= STEP_INFERRED
    return out


def _check_range(metric: Metric, values: list[float], quality: list[int], interval: bool) -> None:
    low, high = metric.min, metric.max
    if low is None and high is None:
        return
    if (low is None or min(values) >= low) and (high is None or max(values) <= high):
        return
    for k, v in enumerate(values):
        if (low is not None and v < low) or (high is not None and v > high):
            quality[k] |= OUT_OF_RANGE
            if interval and low is not None and v < low:
                values[k] = float(low)


def _series(ts, vs, qs, steps, interval: bool):
    """(start, step_seconds, times, values, quality) per series to publish."""
    if interval:
        yield from _interval_series(ts, vs, qs, steps)
        return
    if len(ts) >= 2:
        spacing = ts[1] - ts[0]
        if spacing > 0 and spacing % US == 0 and _regular(ts, spacing):
            yield ts[0], spacing // US, [], vs, qs
            return
    yield ts[0], 0, list(ts), vs, qs


def _interval_series(ts, vs, qs, steps):
    """Interval readings cut into regular runs (start + step); a run of readings
    without a step is published with its times."""
    n = len(ts)
    step = steps[0]
    if step is not None and steps.count(step) == n and _regular(ts, step * US):
        yield ts[0], step, [], vs, qs
        return
    k = 0
    while k < n:
        step = steps[k]
        if step is None:
            j = k + 1
            while j < n and steps[j] is None:
                j += 1
            yield ts[k], 0, ts[k:j], vs[k:j], qs[k:j]
            k = j
            continue
        step_us = step * US
        j = k + 1
        while j < n and steps[j] == step and ts[j] == ts[j - 1] + step_us:
            j += 1
        yield ts[k], step, [], vs[k:j], qs[k:j]
        k = j


def _regular(ts: list[int], step_us: int) -> bool:
    """Whether ``ts`` is exactly ``ts[0], ts[0] + step, ...`` (compared in C)."""
    return ts[-1] - ts[0] == step_us * (len(ts) - 1) and ts == list(
        range(ts[0], ts[-1] + 1, step_us)
    )
