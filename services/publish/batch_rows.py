"""observations.v2 batches to warehouse rows without building their members.

A batch message carries the rows of many entities as columns (services/runtime/
batches.py): per-member scalars, dictionary codes, concatenated arrays with their
counts. Exploding it into v1 records only to gather those records' fields back into
columns was the largest part of publish's sink on single readings (every member a
dict of some twenty fields). Here the batch's own arrays become the table's columns;
the rows are exactly those :func:`services.publish.rows.observations_table` makes of
the exploded members (a property test compares the two on random batches).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from services.publish.rows import TS, Landed, local_day_column
from services.runtime.batches import DICTIONARY

_STRINGS = ("domain", "metric", "unit", "entity_type", "zone", "sector", "carrier")


def observation_batches_table(
    batch: Sequence[Landed], timezones: Mapping[str, str] | None = None
) -> pa.Table:
    """The rows of ``batch``, whose records are whole ObservationBatch messages
    (checked upstream: their arrays agree), in message then member order."""
    tables = [_one(landed, timezones or {}) for landed in batch]
    return pa.concat_tables(tables) if len(tables) != 1 else tables[0]


def check_observation_batch(record: dict[str, Any]) -> None:
    """Refuse (ValueError) a batch whose members cannot become rows: a member's times,
    quality or versions neither empty nor one per value, or its replaced values not
    one per version. The sink calls it as it decodes, so such a message is reported
    as undecodable and never lands, instead of failing the insert at every restart
    (the v1 rows stretched a one-item array over every value, or failed the insert)."""
    counts = np.asarray(record["values_counts"], dtype=np.int64)
    for name in ("times", "quality", "versions"):
        _given(record, name, counts)
    versions = np.asarray(record["versions_counts"], dtype=np.int64)
    if not np.array_equal(np.asarray(record["replaced_counts"], dtype=np.int64), versions):
        raise ValueError("an observation's 'replaced' values are not one per version")


def _one(landed: Landed, timezones: Mapping[str, str]) -> pa.Table:
    record = landed.record
    counts = np.asarray(record["values_counts"], dtype=np.int64)
    members, total = len(counts), int(counts.sum())
    index = np.repeat(np.arange(members), counts)
    index_array = pa.array(index)
    times = _times(record, counts, index)

    def spread(values: list[Any], kind: pa.DataType) -> pa.Array:
        return pa.array(values, kind).take(index_array)

    def constant(value: Any, kind: pa.DataType) -> pa.Array:
        return pa.array([value] * total, kind)

    words = [word or "" for word in record.get(DICTIONARY) or []] + [""]
    word_array = pa.array(words, pa.string())

    def coded(name: str) -> pa.Array:
        codes = np.asarray(record[name], dtype=np.int64)
        codes = np.where(codes < 0, len(words) - 1, codes)  # -1: none, "" as in v1
        return word_array.take(pa.array(codes[index]))

    positions = record["position"]
    lat = [None if p is None else float(p["lat"]) for p in positions]
    lon = [None if p is None else float(p["lon"]) for p in positions]
    city = record["city"]
    return pa.table(
        {
            "city": constant(city or "", pa.string()),
            "domain": coded("domain"),
            "metric": coded("metric"),
            "unit": coded("unit"),
            "entity": spread([e or "" for e in record["entity_pseudonym"]], pa.string()),
            "entity_type": coded("entity_type"),
            "zone": coded("zone"),
            "lat": spread(lat, pa.float64()),
            "lon": spread(lon, pa.float64()),
            "sector": coded("sector"),
            "carrier": coded("carrier"),
            "ts": pa.array(times // 1000, pa.int64()).cast(TS),
            "local_day": local_day_column([city] * members, index, times, timezones),
            "value": pa.array(np.asarray(record["values"], dtype=np.float64)),
            "quality": pa.array(_per_reading(record, "quality", counts, index, 0, np.uint16)),
            "step_seconds": spread(record["step_seconds"], pa.uint32()),
            "version": pa.array(_per_reading(record, "versions", counts, index, 0, np.uint32)),
            "replaced": pa.array(  # where the member has versions (one per version)
                _per_reading(record, "replaced", counts, index, np.nan, np.float64),
                from_pandas=True,  # NaN -> null
            ),
            "source": constant(record["source"] or "", pa.string()),
            "dataset": constant(record["dataset"] or "", pa.string()),
            "lineage_id": constant(record["lineage_id"] or "", pa.string()),
            "_topic": constant(landed.topic, pa.string()),
            "_partition": constant(landed.partition, pa.uint16()),
            "_offset": constant(landed.offset, pa.uint64()),
        }
    )


def _given(record: dict[str, Any], name: str, counts: np.ndarray) -> np.ndarray:
    """Per member: does it carry its own ``name`` array (one item per value)? A member
    whose array is neither empty nor one per value is refused, as the v1 rows refuse it."""
    own = np.asarray(record[name + "_counts"], dtype=np.int64)
    given = own > 0
    if (own[given] != counts[given]).any():
        raise ValueError(f"an observation's {name!r} does not have one item per value")
    return given


def _per_reading(
    record: dict[str, Any],
    name: str,
    counts: np.ndarray,
    index: np.ndarray,
    default: float,
    kind: type,
) -> np.ndarray:
    """A per-reading array: each member's own items where it has them, else ``default``."""
    out = np.full(len(index), default, dtype=kind)
    given = _given(record, name, counts)
    if given.any():
        out[given[index]] = np.asarray(record[name], dtype=kind)
    return out


def _times(record: dict[str, Any], counts: np.ndarray, index: np.ndarray) -> np.ndarray:
    """µs of each reading: the member's ``times`` where it has them, else its start
    plus its step per reading."""
    starts = np.asarray(record["start"], dtype=np.int64)
    steps = np.asarray(record["step_seconds"], dtype=np.int64) * 1_000_000
    first = np.repeat(np.cumsum(counts) - counts, counts)
    k = np.arange(len(index), dtype=np.int64) - first
    out = starts[index] + k * steps[index]
    given = _given(record, "times", counts)
    if given.any():
        out[given[index]] = np.asarray(record["times"], dtype=np.int64)
    return out
