"""Normalise's columnar fast path: an AnonymisedBatch of single readings (one row
per entity, many entities of one source batch) mapped to observations on whole
columns, with no Python object per reading.

It covers the common case only, and must give exactly what the per-record path
(:class:`~services.normalise.transform.Normaliser`, one member at a time) gives:
the same observations, the same states, no drop and no dead letter. Whatever it
does not handle exactly answers None, and the stage leaves the batch to the
per-record path, which decides as it always did:

* a source without a mapping, a Smart Data Models source, a coarsened record, a
  cumulative register (state-dependent differences);
* a member of more than one row, an entity twice in the batch;
* a missing or unreadable value, time or step, a time flagged (the repeated or
  missing hour, a degraded clock) or outside the source's plausible bounds, a
  position set aside (unreadable or out of range);
* an unknown or incompatible unit, an unknown sector, an implausible value;
* a time already published for the entity with another value (a correction, a
  late repeat) or a gap filled; a duplicate (same time, same value: a feed polled
  again before the sensor updated) is dropped and counted as the per-record path does.

Functions of one value (a time stamp, a unit, a zone) are the per-record code
itself, called once per distinct value of the batch (:mod:`vectors`); arithmetic
runs on numpy columns, rounding as Python rounds (:func:`vectors.exact_round`).
The states are the per-record ones (memory.py, versions.py), one per entity and
metric: the state is per key, written to the changelog per key.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.normalise import memory, versions
from services.normalise.mapping import MeasureSpec, SourceMapping, StepSpec, parse_duration
from services.normalise.observation_rows import ObservationRows, Words
from services.normalise.plausibility import UNKNOWN_STEP_S, Limit
from services.normalise.positions import position_of
from services.normalise.quality import OUT_OF_RANGE
from services.normalise.transform import COARSENED, Normaliser, StateGetter, state_key
from services.normalise.units import Conversion
from services.normalise.vectors import distinct, exact_round, numeric, row_values
from services.runtime.errors import RejectedInput
from services.runtime.timeparse import TimeSpec, parse_time_column

US = 1_000_000
_ARRAYS = {"string": "strings", "double": "doubles", "long": "longs", "boolean": "booleans"}
_PLACEHOLDER = {"string": "", "double": 0.0, "long": 0, "boolean": False}


@dataclass
class BatchOutcome:
    """What a covered batch gives: its observations, the new state of every entity
    and metric it touched (in the per-record path's order) and the readings dropped
    (duplicates: a time the entity published with the same value)."""

    rows: ObservationRows
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    dropped: Counter[str] = field(default_factory=Counter)  # reason -> readings

    @property
    def readings(self) -> int:
        return len(self.rows)


@dataclass(frozen=True)
class _Batch:
    """A covered batch as its mapping reads it."""

    batch: dict[str, Any]
    mapping: SourceMapping
    columns: dict[str, dict[str, Any]]
    measures: list[MeasureSpec]
    pseudonyms: np.ndarray
    n: int


@dataclass(frozen=True)
class _Measured:
    """One measure's readings, one per member: UTC µs, values, quality, steps."""

    spec: MeasureSpec
    times: np.ndarray
    values: np.ndarray
    quality: np.ndarray
    steps: np.ndarray  # seconds, 0 where the observation carries its time


class BatchNormaliser:
    """The fast path beside a :class:`Normaliser` (its mappings, vocabulary,
    conversions and retention), whose per-value functions it calls."""

    def __init__(self, normaliser: Normaliser):
        self.normaliser = normaliser

    def normalise_batch(self, batch: dict[str, Any], get_state: StateGetter) -> BatchOutcome | None:
        """The batch's observations and states, or None: not covered (see the module)."""
        shape = self._shape(batch)
        if shape is None:
            return None
        try:
            words = self._entity_words(shape)
            measured = [self._measure(shape, spec) for spec in shape.measures]
        except RejectedInput:
            return None
        positions = _positions(shape)
        if positions is None or any(m is None for m in measured):
            return None
        found = self._states(shape, measured, get_state)  # type: ignore[arg-type]
        if found is None:
            return None
        states, repeats = found
        rows = _rows(shape, words, measured, positions)  # type: ignore[arg-type]
        if repeats:
            rows = rows.without(np.asarray(repeats, dtype=np.int64))
        return BatchOutcome(rows, states, Counter({"duplicate": len(repeats)} if repeats else {}))

    # -- what is covered --------------------------------------------------------------
    def _shape(self, batch: dict[str, Any]) -> _Batch | None:
        mapping = self._mapping(batch)
        if mapping is None:
            return None
        n = _single_rows(batch)
        if n is None:
            return None
        columns = {c["name"]: c for c in batch.get("columns") or []}
        measures = [m for m in mapping.measures if m.column in columns]
        if not measures or any(m.kind == "cumulative" for m in measures):
            return None
        pseudonyms = np.asarray(batch["entity_pseudonym"], dtype=object)
        return _Batch(batch, mapping, columns, measures, pseudonyms, n)

    def _mapping(self, batch: dict[str, Any]) -> SourceMapping | None:
        """The batch's source mapping when the fast path covers the source: mapped,
        not Smart Data Models, not coarsened."""
        mapping = self.normaliser.mappings.get((batch["city"], batch["source"]))
        if mapping is None or mapping.smart_data_models:
            return None
        if (batch.get("attributes") or {}).get(COARSENED):
            return None
        return mapping

    # -- the fields every observation of a member shares -----------------------------
    def _entity_words(self, shape: _Batch) -> dict[str, Words] | None:
        """entity_type, zone, sector and key_epoch per member (a RejectedInput for an
        unknown sector propagates: the per-record path dead-letters that member)."""
        batch, mapping, n = shape.batch, shape.mapping, shape.n
        if mapping.entity_type:
            entity_type = Words.constant(mapping.entity_type, n)
        else:
            dictionary = batch.get("dictionary") or []
            types = np.asarray(batch["entity_type"], dtype=np.int64)
            entity_type = Words(
                np.where(types < 0, len(dictionary), types),
                [*dictionary, None],
            )
        attributes = {"attributes": batch.get("attributes") or {}}
        norm = self.normaliser
        return {
            "entity_type": entity_type,
            "zone": self._per_value(
                shape, mapping.zone, lambda c: norm._zone(mapping, c, attributes)
            ),
            "sector": self._per_value(
                shape, mapping.sector, lambda c: norm._sector(mapping, c, attributes)
            ),
            "key_epoch": Words.constant(batch.get("key_epoch"), n),
        }

    @staticmethod
    def _per_value(shape: _Batch, ref: Any, function: Any) -> Words:
        """``function(columns)`` of the per-record code, once per distinct value of the
        field ``ref`` names (or once, when the answer is not read from a field)."""
        column = shape.columns.get(ref.field) if ref is not None and ref.field else None
        if column is None:
            return Words.constant(function({}), shape.n)
        codes, values = distinct(column)
        return Words(codes, [function({column["name"]: _one_row(column, v)}) for v in values])

    # -- one measure ------------------------------------------------------------------
    def _measure(self, shape: _Batch, spec: MeasureSpec) -> _Measured | None:
        metric = spec.metric
        interval = metric.temporal == "interval"
        integrate = spec.kind == "average" and interval
        times = self._times(shape, spec)
        raw = numeric(shape.columns[spec.column])
        steps = _steps(shape.mapping.step, shape.columns, shape.n)
        if times is None or raw is None:
            return None
        if interval and (steps is None or (steps <= 0).any()):
            return None  # a step to infer (none from one reading): per record
        convs = self._conversions(shape, spec, integrate)
        values = _converted(raw, convs, steps, metric.decimals)
        if values is None:
            return None
        limit = self.normaliser.vocabulary.plausibility.limits.get(metric.name)
        if limit is not None and _implausible(limit, values, steps, interval).any():
            return None
        quality = _range(metric, values, interval)
        out_steps = steps if interval else np.zeros(shape.n, dtype=np.int64)
        return _Measured(spec, times, values, quality, out_steps)

    def _times(self, shape: _Batch, spec: MeasureSpec) -> np.ndarray | None:
        """The members' UTC µs from the first time field present (None: a time the
        per-record path would look for elsewhere, flag or set aside)."""
        mapping = shape.mapping
        specs = spec.times or mapping.times
        first = next((s for s in specs if s.field in shape.columns), None)
        if first is None:
            return None
        codes, raw = distinct(shape.columns[first.field])
        parsed = [_parse_one(value, first) for value in raw]
        if any(t is None for t in parsed):
            return None
        times = np.asarray(parsed, dtype=np.int64)[codes]
        bounds = mapping.bounds
        received = shape.batch.get("received_at")
        low = bounds.earliest_us
        if (times < low).any():
            return None
        if received is not None and received >= low and (times > received + bounds.ahead_us).any():
            return None
        return times

    def _conversions(
        self, shape: _Batch, spec: MeasureSpec, integrate: bool
    ) -> tuple[np.ndarray, list[Conversion]]:
        """Per member, its conversion (codes into the distinct ones): the per-record
        code on each distinct unit name (UnknownUnit, IncompatibleUnit propagate)."""
        norm = self.normaliser
        column = shape.columns.get(spec.unit_field) if spec.unit_field else None
        if column is None:
            return np.zeros(shape.n, dtype=np.int64), [norm._conversions(spec, {}, 1, integrate)]
        codes, names = distinct(column)
        convs = [
            norm._conversions(spec, {column["name"]: _one_row(column, name)}, 1, integrate)
            for name in names
        ]
        return codes, convs  # type: ignore[return-value]

    # -- state --------------------------------------------------------------------------
    def _states(
        self, shape: _Batch, measured: list[_Measured], get_state: StateGetter
    ) -> tuple[dict[str, dict[str, Any]], list[int]] | None:
        """The new state of every (member, measure), in the per-record order, and the
        rows (member * measures + measure) that repeat what the entity published (a
        duplicate: dropped and counted, its state unchanged); None: a time already
        published with another value, or a gap filled (versions.py decides)."""
        city = shape.batch["city"]
        norm = self.normaliser
        horizon = shape.mapping.lateness_us
        columns = [(m.spec.metric.name, m.times.tolist(), m.values.tolist()) for m in measured]
        out: dict[str, dict[str, Any]] = {}
        repeats: list[int] = []
        row = 0
        for i, pseudonym in enumerate(shape.pseudonyms.tolist()):
            for metric, times, values in columns:
                key = state_key(city, pseudonym, metric)
                state = get_state(key)
                t = times[i]
                if state and "hwm" in state and t <= state["hwm"]:
                    if not _repeats(state, t, values[i], horizon):
                        return None
                    repeats.append(row)
                else:
                    out[key] = _remembered(state, t, values[i], norm, horizon)
                row += 1
        return out, repeats


def _repeats(state: dict[str, Any], t: int, value: float, horizon: int) -> bool:
    """Whether a reading at or before the entity's latest one is a duplicate (its
    time published with this value), as versions.sort_out judges it."""
    verdict = versions.sort_out(state, [t], [value], horizon_us=horizon)
    return verdict.duplicates == 1 and not verdict.corrections and not verdict.too_late


def _positions(shape: _Batch) -> list[dict[str, float] | None] | None:
    """Each member's position, by the per-record ``position_of`` on its own row (an
    entity's position is its own: no two members share one); None: a position set
    aside (counted by the per-record path) or none declared for a personal source."""
    mapping = shape.mapping
    spec = mapping.position
    if spec is None or mapping.personal:
        return [None] * shape.n
    present = [shape.columns[name] for name in spec.columns if name in shape.columns]
    values = [row_values(column) for column in present]
    out = []
    for i in range(shape.n):
        found = {c["name"]: _one_row(c, v[i]) for c, v in zip(present, values, strict=True)}
        position, dropped = position_of(spec, found)
        if dropped:
            return None
        out.append(position)
    return out


def _single_rows(batch: dict[str, Any]) -> int | None:
    """How many members, when each has one row and no entity comes twice."""
    rows = np.asarray(batch.get("row_count") or [], dtype=np.int64)
    n = len(rows)
    if n == 0 or not (rows == 1).all():
        return None
    return n if len(set(batch["entity_pseudonym"])) == n else None


def _remembered(
    state: dict[str, Any] | None, t: int, value: float, norm: Normaliser, horizon: int
) -> dict[str, Any]:
    """The state once one new reading (after everything published) is published:
    memory.remember then versions.remember, as the per-record path calls them."""
    window, max_runs = norm.window_us, norm.max_runs
    if state is None:
        if max_runs >= 1 and window >= 0 and horizon >= 0:
            return {"runs": [[t, 0, 1]], "hwm": t, "vals": [[t, 0, [value]]]}
        new = None
    else:  # the next reading of a stream: each module's own shortcut, else its rule
        new = memory.remember_next(state, t, window_us=window, max_runs=max_runs)
    if new is None:
        new = memory.remember(state, [t], window_us=window, max_runs=max_runs)
    found = versions.remember_next(new, t, value, horizon_us=horizon)
    return found if found is not None else versions.remember(new, [t], [value], horizon_us=horizon)


def _one_row(column: dict[str, Any], value: Any) -> dict[str, Any]:
    """A one-row column holding ``value`` (None: missing), as a member carries it."""
    kind = column["kind"]
    out: dict[str, Any] = {"name": column["name"], "kind": kind}
    for array in _ARRAYS.values():
        out[array] = []
    out[_ARRAYS[kind]] = [_PLACEHOLDER[kind] if value is None else value]
    out["missing"] = [0] if value is None else []
    return out


def _parse_one(value: Any, spec: TimeSpec) -> int | None:
    """One member's time, as ``parse_time_column`` reads a one-row column (None:
    unreadable or flagged)."""
    times, flags = parse_time_column([value], spec)
    return None if flags[0] else times[0]


def _steps(step: StepSpec | None, columns: dict[str, Any], n: int) -> np.ndarray | None:
    """Each member's step in seconds (0: unknown); None: the mapping gives none."""
    if step is None:
        return None
    if step.seconds is not None:
        return np.full(n, step.seconds, dtype=np.int64)
    column = columns.get(step.field or "")
    if column is None:
        return None
    codes, raw = distinct(column)
    parsed = [0 if v is None else parse_duration(v, step.format) or 0 for v in raw]
    return np.asarray(parsed, dtype=np.int64)[codes]


def _converted(
    raw: np.ndarray,
    convs: tuple[np.ndarray, list[Conversion]],
    steps: np.ndarray | None,
    decimals: int,
) -> np.ndarray | None:
    """Values in the metric's unit, as ``Normaliser._converted`` computes them: the
    identity as it is, a rate times its step, anything else scaled and offset;
    rounded to the metric's decimals (None: an integration without a step)."""
    codes, table = convs
    scale = np.asarray([c.scale for c in table], dtype=np.float64)[codes]
    offset = np.asarray([c.offset for c in table], dtype=np.float64)[codes]
    integrate = np.asarray([c.integrate for c in table], dtype=bool)[codes]
    identity = np.asarray([c.identity for c in table], dtype=bool)[codes]
    out = exact_round(raw * scale + offset, decimals)
    if integrate.any():
        if steps is None:
            return None
        integrated = exact_round(raw * (scale / 3600) * steps, decimals)
        out = np.where(integrate, integrated, out)
    return np.where(identity, raw, out)


def _implausible(
    limit: Limit, values: np.ndarray, steps: np.ndarray | None, interval: bool
) -> np.ndarray:
    """Per member: past the vocabulary's limit (plausibility.implausible)?"""
    if interval:
        if limit.max_per_hour is None:
            return np.zeros(len(values), dtype=bool)
        seconds = np.where(steps > 0, steps, UNKNOWN_STEP_S) if steps is not None else None
        if seconds is None:
            seconds = np.full(len(values), UNKNOWN_STEP_S)
        return np.abs(values) > (limit.max_per_hour / 3600) * seconds
    low = limit.min if limit.min is not None else float("-inf")
    high = limit.max if limit.max is not None else float("inf")
    return ~((low <= values) & (values <= high))


def _range(metric: Any, values: np.ndarray, interval: bool) -> np.ndarray:
    """Quality per member: out-of-range flagged; an interval value below the
    metric's minimum clamped to it, in place (transform._check_range)."""
    quality = np.zeros(len(values), dtype=np.int64)
    low, high = metric.min, metric.max
    below = values < low if low is not None else np.zeros(len(values), dtype=bool)
    above = values > high if high is not None else np.zeros(len(values), dtype=bool)
    quality[below | above] = OUT_OF_RANGE
    if interval and low is not None:
        values[below] = float(low)
    return quality


def _rows(
    shape: _Batch,
    words: dict[str, Words],
    measured: list[_Measured],
    positions: list[dict[str, float] | None],
) -> ObservationRows:
    """The observations member by member, measure by measure (the per-record order)."""
    batch, n, k = shape.batch, shape.n, len(measured)

    def interleave(arrays: list[np.ndarray]) -> np.ndarray:
        return np.stack(arrays, axis=1).reshape(n * k)

    member = np.repeat(np.arange(n), k)
    per_measure = {
        name: _measure_words(measured, name, n, k)
        for name in ("domain", "metric", "unit", "carrier")
    }
    spread = {name: Words(w.codes[member], w.values) for name, w in words.items()}
    return ObservationRows(
        shared={name: batch[name] for name in ("city", "source", "dataset", "lineage_id")},
        pseudonyms=shape.pseudonyms[member],
        positions=_objects(positions)[member],
        words={**spread, **per_measure},
        start=interleave([m.times for m in measured]),
        step_seconds=interleave([m.steps for m in measured]),
        values=interleave([m.values for m in measured]),
        quality=interleave([m.quality for m in measured]),
    )


def _objects(items: list[Any]) -> np.ndarray:
    """A one-dimensional object array of ``items`` (dicts stay whole)."""
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _measure_words(measured: list[_Measured], name: str, n: int, k: int) -> Words:
    """A field set by the metric (domain, metric, unit, carrier), per row."""
    values = []
    for m in measured:
        metric = m.spec.metric
        values.append(
            {
                "domain": metric.domain,
                "metric": metric.name,
                "unit": metric.unit.symbol,
                "carrier": metric.carrier if metric.domain == "energy" else None,
            }[name]
        )
    return Words(np.tile(np.arange(k, dtype=np.int64), n), values)
