"""Versioned readings in the warehouse: the latest value of a reading, counted once.

normalise publishes a correction as a new Observation whose values carry
``versions`` (> 0) and ``replaced`` (the value each one replaces). Each lands as
a row with those two columns (deploy/clickhouse/015_versioned_readings.sql); the
rollups' materialised views add ``value - replaced`` and count no new reading,
so hourly and daily totals hold the latest values. In ``observations`` the rows
a correction supersedes (same city, metric, entity and time, a lower version)
are then deleted, here, after the insert.

Crash safety: the insert carries the sink's deduplication token and the delete
is idempotent; a crash between the two leaves a superseded row that
:func:`supersede` run at (re)assignment removes (it looks at the rows with a
version, which are few: corrections are rare).
"""

from __future__ import annotations

from collections.abc import Sequence

from services.publish.rows import Landed
from services.publish.warehouse import Warehouse

TABLE = "observations"
_KEY = "city, metric, entity, ts"


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def corrected_keys(batch: Sequence[Landed]) -> list[str]:
    """SQL tuples (city, metric, entity, ms) of the corrections in a landed batch."""
    keys = []
    for landed in batch:
        record = landed.record
        versions = record.get("versions") or []
        if not any(versions):
            continue
        times = record["times"] or [
            record["start"] + k * record["step_seconds"] * 1_000_000 for k in range(len(versions))
        ]
        head = f"{_quote(record['city'])}, {_quote(record['metric'])}, "
        head += _quote(record["entity_pseudonym"])
        for t, version in zip(times, versions, strict=True):
            if version:
                keys.append(f"({head}, {t // 1000})")
    return keys


def supersede_sql(keys: Sequence[str] | None = None) -> str:
    """DELETE of every row that a later version of the same reading supersedes
    (only among ``keys`` when given: the batch just landed)."""
    scope = ""
    if keys:
        scope = f" AND (city, metric, entity, toUnixTimestamp64Milli(ts)) IN ({', '.join(keys)})"
    return (
        f"DELETE FROM {TABLE} WHERE ({_KEY}) IN "
        f"(SELECT {_KEY} FROM {TABLE} WHERE version > 0{scope}) "
        f"AND ({_KEY}, version) NOT IN "
        f"(SELECT {_KEY}, max(version) FROM {TABLE} WHERE version > 0{scope} GROUP BY {_KEY})"
        f"{scope}"
    )


def supersede(warehouse: Warehouse, batch: Sequence[Landed] | None = None) -> int:
    """Delete the rows superseded by the corrections of ``batch`` (every superseded
    row when None); returns how many corrections the batch held."""
    if batch is None:
        warehouse.command(supersede_sql())
        return 0
    keys = corrected_keys(batch)
    if keys:
        warehouse.command(supersede_sql(keys))
    return len(keys)
