"""Versioned readings in the warehouse: the latest value of a reading, counted once.

normalise publishes a correction as a new Observation whose values carry
``versions`` (> 0) and ``replaced`` (the value each one replaces). Each lands as
a row with those two columns (deploy/clickhouse/015_versioned_readings.sql); the
rollups' materialised views add ``value - replaced`` and count no new reading,
so hourly and daily totals hold the latest values. In ``observations`` the rows
a correction supersedes (same city, metric, entity and time, a lower version)
are then deleted, here, after the insert.

On a cluster (deploy/clickhouse/cluster/), the delete runs on every shard's
``observations_local`` (a Distributed table takes no DELETE); all versions of a
reading are on one shard (sharding by city and entity), so each shard decides alone.

Crash safety: the insert carries the sink's deduplication token and the delete
is idempotent; a crash between the two leaves a superseded row that
:func:`supersede` run at (re)assignment removes (it looks at the rows with a
version, which are few: corrections are rare).
"""

from __future__ import annotations

from collections.abc import Sequence

from services.publish.rows import Landed
from services.runtime.batches import batching
from services.warehouse.port import Warehouse

TABLE = "observations"
OBSERVATION = batching("Observation")  # observations.v2 batches and their members
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


def supersede_sql(keys: Sequence[str] | None = None, *, cluster: bool = False) -> str:
    """DELETE of every row that a later version of the same reading supersedes
    (only among ``keys`` when given: the batch just landed)."""
    table = f"{TABLE}_local" if cluster else TABLE
    where = f"{table} ON CLUSTER '{{cluster}}'" if cluster else table
    scope = ""
    if keys:
        scope = f" AND (city, metric, entity, toUnixTimestamp64Milli(ts)) IN ({', '.join(keys)})"
    return (
        f"DELETE FROM {where} WHERE ({_KEY}) IN "
        f"(SELECT {_KEY} FROM {table} WHERE version > 0{scope}) "
        f"AND ({_KEY}, version) NOT IN "
        f"(SELECT {_KEY}, max(version) FROM {table} WHERE version > 0{scope} GROUP BY {_KEY})"
        f"{scope}"
    )


def supersede_in_batches(warehouse: Warehouse, batch: Sequence[Landed] | None = None) -> int:
    """:func:`supersede` for landed observations.v2 batch messages (whole, not
    exploded): only a batch that holds a correction is taken apart into its members,
    and corrections are rare."""
    if batch is None:
        return supersede(warehouse, None)
    corrected = [
        Landed(member, landed.topic, landed.partition, landed.offset)
        for landed in batch
        if any(landed.record.get("versions") or [])
        for member in OBSERVATION.explode(landed.record)
    ]
    return supersede(warehouse, corrected)


def _clustered(warehouse: Warehouse) -> bool:
    """Whether the warehouse runs the cluster DDL (it has ``observations_local``)."""
    found = warehouse.query_arrow(
        "SELECT count() AS n FROM system.tables "
        f"WHERE database = currentDatabase() AND name = '{TABLE}_local'"
    )
    return bool(found.column("n")[0].as_py())


def supersede(warehouse: Warehouse, batch: Sequence[Landed] | None = None) -> int:
    """Delete the rows superseded by the corrections of ``batch`` (every superseded
    row when None); returns how many corrections the batch held."""
    keys = corrected_keys(batch) if batch is not None else None
    if keys == [] or not _superseded(warehouse, keys):
        return 0  # a DELETE is a mutation of every part it may touch: only when needed
    warehouse.command(supersede_sql(keys, cluster=_clustered(warehouse)))
    return len(keys or ())


def _superseded(warehouse: Warehouse, keys: Sequence[str] | None) -> bool:
    """Whether any row is superseded (a cheap read before a DELETE)."""
    condition = supersede_sql(keys).split(" WHERE ", 1)[1]
    found = warehouse.query_arrow(f"SELECT count() AS n FROM {TABLE} WHERE {condition}")
    return bool(found.column("n")[0].as_py())
