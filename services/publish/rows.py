"""From decoded records to Arrow tables, one row per reading (pure, column-wise).

The expansion works per column: constants of a series (city, metric, zone...)
are gathered once per record and spread with one ``take``; values and times are
concatenated arrays. No Python object per reading.

Each reading also gets its ``local_day``: the calendar day in its city's time zone
(:mod:`services.runtime.localday`), which the daily rollups group by. ClickHouse
takes a time zone only as a constant, so a per-city day is computed here, where
the cities are known, with one calendar look-up per city and UTC day.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from services.runtime import localday

TS = pa.timestamp("ms", tz="UTC")


@dataclass(frozen=True)
class Landed:
    """A decoded record and where it came from."""

    record: dict[str, Any]
    topic: str
    partition: int
    offset: int


def _spread(values: Sequence[Any], index: np.ndarray, kind: pa.DataType) -> pa.Array:
    return pa.array(values, kind).take(pa.array(index))


_EPOCH_ORDINAL = 719_163  # date(1970, 1, 1).toordinal()


def local_days(times_us: np.ndarray, timezone: str) -> np.ndarray:
    """Days since 1970-01-01 of each time's local date in ``timezone`` (vectorised:
    a UTC day holds at most two local midnights, so two boundaries per UTC day decide)."""
    if not len(times_us):
        return np.empty(0, dtype=np.int32)
    numbers = times_us // localday.DAY_US
    low, high = int(numbers.min()), int(numbers.max())
    if high - low < 4096:  # the usual batch: a few days, an offset instead of a sort
        utc_days, inverse = np.arange(low, high + 1), numbers - low
    else:
        utc_days, inverse = np.unique(numbers, return_inverse=True)
    base = np.empty(len(utc_days), dtype=np.int32)
    first = np.empty(len(utc_days), dtype=np.int64)
    second = np.empty(len(utc_days), dtype=np.int64)
    for i, day in enumerate(utc_days.tolist()):
        date = localday.local_date(day * localday.DAY_US, timezone)
        base[i] = date.toordinal() - _EPOCH_ORDINAL
        first[i] = localday.day_end(day * localday.DAY_US, timezone)
        second[i] = localday.day_end(int(first[i]), timezone)
    later = (times_us >= first[inverse]).astype(np.int32)
    return base[inverse] + later + (times_us >= second[inverse]).astype(np.int32)


def _positions(batch: Sequence[Landed], index: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """Observation.position (a GeoPoint or null) as nullable lat and lon columns: one
    position per series, spread to its readings like the other constants."""
    points = [x.record.get("position") for x in batch]
    lat = [None if p is None else float(p["lat"]) for p in points]
    lon = [None if p is None else float(p["lon"]) for p in points]
    return _spread(lat, index, pa.float64()), _spread(lon, index, pa.float64())


def local_day_column(
    cities: Sequence[str], index: np.ndarray, times_us: np.ndarray, timezones: Mapping[str, str]
) -> pa.Array:
    names = sorted(set(cities))
    zone_of = [timezones.get(city, localday.DEFAULT_TIMEZONE) for city in names]
    if len(set(zone_of)) <= 1:  # the usual batch: one zone for every row
        days = local_days(times_us, zone_of[0] if zone_of else localday.DEFAULT_TIMEZONE)
    else:
        code = {city: i for i, city in enumerate(names)}
        row_codes = np.fromiter((code[c] for c in cities), np.int32, len(cities))[index]
        days = np.empty(len(times_us), dtype=np.int32)
        for i, zone in enumerate(zone_of):
            rows = row_codes == i
            days[rows] = local_days(times_us[rows], zone)
    return pa.array(days, pa.int32()).cast(pa.date32())


@dataclass(frozen=True)
class _Readings:
    """The per-reading columns of a batch of series, one entry per reading."""

    times: np.ndarray  # µs since the epoch
    values: np.ndarray
    quality: np.ndarray
    version: np.ndarray  # 0 for a first publication
    replaced: np.ndarray  # NaN where the reading is not a correction


def _readings(batch: Sequence[Landed], counts: np.ndarray) -> _Readings:
    """Each record's readings copied into preallocated arrays, a slice per record."""
    total = int(counts.sum())
    times = np.empty(total, dtype=np.int64)
    values = np.empty(total, dtype=np.float64)
    quality = np.zeros(total, dtype=np.uint16)
    version = np.zeros(total, dtype=np.uint32)
    replaced = np.full(total, np.nan)
    position = 0
    for landed, n in zip(batch, counts, strict=True):
        record, end = landed.record, position + int(n)
        values[position:end] = record["values"]
        if record["times"]:
            times[position:end] = record["times"]
        else:
            times[position:end] = record["start"] + np.arange(n, dtype=np.int64) * (
                record["step_seconds"] * 1_000_000
            )
        if record["quality"]:
            quality[position:end] = record["quality"]
        if record.get("versions"):  # a correction (services/publish/versions.py)
            version[position:end] = record["versions"]
            replaced[position:end] = record["replaced"]
        position = end
    return _Readings(times, values, quality, version, replaced)


def observations_table(
    batch: Sequence[Landed], timezones: Mapping[str, str] | None = None
) -> pa.Table:
    """Expand Observation series into one row per reading; ``timezones`` (city ->
    IANA zone, Europe/Paris where missing) decide each reading's ``local_day``."""
    counts = np.fromiter((len(x.record["values"]) for x in batch), dtype=np.int64, count=len(batch))
    index = np.repeat(np.arange(len(batch)), counts)
    readings = _readings(batch, counts)
    times = readings.times
    lat, lon = _positions(batch, index)

    def column(name: str, default: str = "") -> pa.Array:
        return _spread([x.record.get(name) or default for x in batch], index, pa.string())

    return pa.table(
        {
            "city": column("city"),
            "domain": column("domain"),
            "metric": column("metric"),
            "unit": column("unit"),
            "entity": column("entity_pseudonym"),
            "entity_type": column("entity_type"),
            "zone": column("zone"),
            "lat": lat,
            "lon": lon,
            "sector": column("sector"),
            "carrier": column("carrier"),
            "ts": pa.array(times // 1000, pa.int64()).cast(TS),
            "local_day": local_day_column(
                [x.record["city"] for x in batch], index, times, timezones or {}
            ),
            "value": pa.array(readings.values),
            "quality": pa.array(readings.quality),
            "step_seconds": _spread([x.record["step_seconds"] for x in batch], index, pa.uint32()),
            "version": pa.array(readings.version),
            "replaced": pa.array(readings.replaced, from_pandas=True),  # NaN -> null
            "source": column("source"),
            "dataset": column("dataset"),
            "lineage_id": column("lineage_id"),
            "_topic": _spread([x.topic for x in batch], index, pa.string()),
            "_partition": _spread([x.partition for x in batch], index, pa.uint16()),
            "_offset": _spread([x.offset for x in batch], index, pa.uint64()),
        }
    )


def _ms(values: Sequence[int | None]) -> pa.Array:
    return pa.array([None if v is None else v // 1000 for v in values], pa.int64()).cast(TS)


def _derived(records: Sequence[dict]) -> pa.Array:
    """EnergyAggregate.derived; records written before it existed have none: false."""
    return pa.array([bool(r.get("derived")) for r in records], pa.bool_())


def aggregates_table(batch: Sequence[Landed]) -> pa.Table:
    records = [x.record for x in batch]
    return pa.table(
        {
            **{
                name: pa.array([r[name] for r in records], pa.string())
                for name in ("city", "zone", "carrier", "sector", "granularity")
            },
            "window_start": _ms([r["window_start"] for r in records]),
            "window_end": _ms([r["window_end"] for r in records]),
            "version": pa.array([r["version"] for r in records], pa.uint64()),
            "energy_kwh": pa.array([r["energy_kwh"] for r in records], pa.float64()),
            "meter_count": pa.array([r["meter_count"] for r in records], pa.uint32()),
            "peak_kw": pa.array([r["peak_kw"] for r in records], pa.float64()),
            "largest_share": pa.array([r["largest_share"] for r in records], pa.float64()),
            "suppressed": pa.array([r["suppressed"] for r in records], pa.bool_()),
            "suppression_reason": pa.array([r["suppression_reason"] for r in records], pa.string()),
            "computed_at": _ms([r["computed_at"] for r in records]),
            "derived": _derived(records),
            "partial": pa.array([r.get("partial", False) for r in records], pa.bool_()),
            **_provenance(batch),
        }
    )


# Stages whose input holds personal data in clear: their letters on dlq.v1 are
# redacted; one that is not (written before redaction existed, or misrouted) never
# lands its original nor its text in the warehouse.
RAW_ZONE_STAGES = ("ingest", "anonymise")


def _raw_zone_unredacted(letter: dict) -> bool:
    if letter.get("redacted") is False:
        return True  # a raw letter: belongs on raw.dlq.v1 only
    return letter.get("redacted") is None and letter["stage"].startswith(RAW_ZONE_STAGES)


def _warehouse_letter(letter: dict) -> dict:
    if not _raw_zone_unredacted(letter):
        return letter
    return {
        **letter,
        "message": "withheld: a letter of a stage that sees personal data, not redacted",
        "original_value": None,
        "original_size": len(letter["original_value"] or b""),
    }


def released_table(batch: Sequence[Landed]) -> pa.Table:
    """Rows of EnergyAggregateRelease records (energy_aggregates_released)."""
    records = [x.record for x in batch]
    return pa.table(
        {
            **{
                name: pa.array([r[name] for r in records], pa.string())
                for name in ("city", "zone", "carrier", "sector", "granularity")
            },
            "window_start": _ms([r["window_start"] for r in records]),
            "window_end": _ms([r["window_end"] for r in records]),
            "energy_kwh": pa.array([r["energy_kwh"] for r in records], pa.float64()),
            "meter_count": pa.array([r["meter_count"] for r in records], pa.uint32()),
            "peak_kw": pa.array([r["peak_kw"] for r in records], pa.float64()),
            "suppressed": pa.array([r["suppressed"] for r in records], pa.bool_()),
            "suppression_reason": pa.array([r["suppression_reason"] for r in records], pa.string()),
            "closed_by": pa.array([r["closed_by"] for r in records], pa.string()),
            "partial": pa.array([r.get("partial", False) for r in records], pa.bool_()),
            "released_at": _ms([r["released_at"] for r in records]),
            "derived": _derived(records),
            **_provenance(batch),
        }
    )


def dead_letters_table(batch: Sequence[Landed]) -> pa.Table:
    records = [_warehouse_letter(x.record) for x in batch]
    originals = [r["original_value"] or b"" for r in records]
    sizes = [
        r["original_size"] if r.get("original_size") is not None else len(o)
        for r, o in zip(records, originals, strict=True)
    ]
    return pa.table(
        {
            **{
                name: pa.array([r[name] or "" for r in records], pa.string())
                for name in ("stage", "reason", "message", "city", "source", "source_topic")
            },
            "source_partition": pa.array([r["source_partition"] for r in records], pa.int32()),
            "source_offset": pa.array([r["source_offset"] for r in records], pa.int64()),
            "original_size": pa.array(sizes, pa.uint32()),
            "original_value": pa.array(
                [o.decode("utf-8", "backslashreplace")[:65536] for o in originals], pa.string()
            ),
            "failed_at": _ms([r["failed_at"] for r in records]),
            **_provenance(batch),
        }
    )


def _provenance(batch: Sequence[Landed]) -> dict[str, pa.Array]:
    return {
        "_topic": pa.array([x.topic for x in batch], pa.string()),
        "_partition": pa.array([x.partition for x in batch], pa.uint16()),
        "_offset": pa.array([x.offset for x in batch], pa.uint64()),
    }
