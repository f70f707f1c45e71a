"""What a partner's analyst may read: one database of views per partner.

chDB has no users, GRANTs or row policies of its own, so a partner's analyst is
given ``partner_<code>``: views over the warehouse that keep only the rows its
partner may see, and sql_access.py refuses any statement naming anything else.
The views are rebuilt from the city files at every start of publish (city files
are read at start), idempotently; databases of partners no city names any more
are dropped.

In each ``partner_<code>``:
- ``observations``: rows of the datasets shared with the partner or open; of a
  personal source only when the policy lets the partner read entity-level data;
  without the sink's bookkeeping (``_topic``, ``_partition``, ``_offset``) and
  without ``lineage_id`` (the key to the restricted raw zone).
- ``observations_hourly`` / ``observations_daily``: the rollups, computed from
  those rows (the stored rollups have no source column to filter on), in the
  stored rollups' shape (aggregate states: query them with sumMerge(total),
  countMerge(readings)... as the README does).
- ``observations_latest`` / ``readings_by_entity``: the federation API's entity
  tables (latest value per entity and metric; readings ordered by entity), filtered
  by the same datasets as ``observations`` and, like it, without positions
  (lat/lon): nothing a partner could not compute from its ``observations``.
- ``energy_aggregates``: released windows only (``energy_aggregates_released
  FINAL``), when the federation file shares them with the partner; never the
  provisional ``energy_aggregates``.
- ``datasets``: what these datasets are (city, source, name, licence...).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from services.policy.access import PUBLIC_AUDIENCE, may_read_entities, source_is_personal
from services.policy.sharing import SharingPolicy, sharing_policies
from services.runtime.cities import CityConfig, SourceConfig
from services.warehouse.port import Warehouse

log = logging.getLogger(__name__)

PREFIX = "partner_"
# A partner's analyst reads as its partner, never as the node itself: no partner
# code (lowercase letters, digits, '-') is empty.
_NOT_THE_NODE = ""
VIEWS = (
    "observations",
    "observations_hourly",
    "observations_daily",
    "observations_latest",
    "readings_by_entity",
    "energy_aggregates",
    "datasets",
)
OBSERVATION_COLUMNS = (
    "city, domain, metric, unit, entity, entity_type, zone, sector, carrier, ts, local_day, "
    "value, quality, step_seconds, version, replaced, source, dataset, landed_at"
)
LATEST_COLUMNS = "city, source, entity, metric, entity_type, zone, unit, value, quality, last_ts"
BY_ENTITY_COLUMNS = "city, source, entity, metric, unit, ts, value, version"
AGGREGATE_COLUMNS = (
    "city, zone, carrier, sector, granularity, window_start, window_end, energy_kwh, "
    "meter_count, peak_kw, suppressed, suppression_reason, partial, derived, closed_by, "
    "released_at"
)
# The stored rollups' own shape (aggregate states), so that the README's questions
# (sumMerge(total), uniqMerge(entities)...) run unchanged on a partner's views.
_ROLLUP = (
    "sumState(value) AS total, countState() AS readings, minState(value) AS minimum, "
    "maxState(value) AS maximum, uniqState(entity) AS entities"
)
_DIMENSIONS = "city, domain, metric, unit, zone, sector, step_seconds"


def entity_access(policy: SharingPolicy, personal: bool, partner: str) -> bool:
    """May ``partner``'s analyst read this dataset's rows (entity by entity)?

    services/policy/access.py's one rule (``may_read_entities``): open or
    shared-with-the-partner data; of a personal source only when the city names the
    partner for it in a shared dataset. No analyst reads as the public audience
    (services/policy reserves it for the common API's anonymous callers).
    """
    if partner == PUBLIC_AUDIENCE:
        return False
    return may_read_entities(policy, partner, _NOT_THE_NODE, personal=personal)


def is_personal(source: SourceConfig) -> bool:
    """The policy module's reading of the source's privacy section (deny by default:
    a source that does not say it is not personal, in the energy or water domain or
    with no privacy section, counts as personal)."""
    return source_is_personal(source)


@dataclass(frozen=True)
class Grant:
    """One dataset a partner reads."""

    city: str
    source: str
    name: str
    domain: str
    level: str
    licence: str | None


@dataclass(frozen=True)
class PartnerScope:
    partner: str
    grants: tuple[Grant, ...]
    aggregate_cities: tuple[str, ...]  # cities whose released aggregates it reads

    @property
    def database(self) -> str:
        return database_of(self.partner)


def database_of(partner: str) -> str:
    """``partner_<code>``: city codes may hold '-', database names may not."""
    return PREFIX + partner.replace("-", "_")


def known_partners(cities: Mapping[str, CityConfig], aggregates: SharingPolicy) -> set[str]:
    """Every partner code a city file or the federation file names."""
    named = {p for policy in sharing_policies(dict(cities)).values() for p in policy.partners}
    return named | set(aggregates.partners)


def partner_scope(
    partner: str, cities: Mapping[str, CityConfig], aggregates: SharingPolicy
) -> PartnerScope:
    """What ``partner`` reads, from the city files and the federation file's policy."""
    policies = sharing_policies(dict(cities))
    grants = []
    for city in sorted(cities.values(), key=lambda c: c.code):
        for source in city.sources:
            policy = policies[(city.code, source.id)]
            if entity_access(policy, is_personal(source), partner):
                grants.append(
                    Grant(
                        city.code,
                        source.id,
                        source.dataset,
                        source.domain,
                        policy.level,
                        policy.licence,
                    )
                )
    readable = aggregates.allows(partner) and partner != PUBLIC_AUDIENCE
    return PartnerScope(partner, tuple(grants), tuple(sorted(cities)) if readable else ())


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _rows_filter(grants: Iterable[Grant]) -> str:
    terms = [f"(city = {_literal(g.city)} AND source = {_literal(g.source)})" for g in grants]
    return " OR ".join(terms) if terms else "0"


def view_statements(scope: PartnerScope) -> list[str]:
    """The DDL that makes ``scope.database`` hold exactly what the partner reads."""
    db = f"`{scope.database}`"
    rows = _rows_filter(scope.grants)
    cities = ", ".join(_literal(c) for c in scope.aggregate_cities)
    released = f"city IN ({cities})" if cities else "0"
    return [
        f"CREATE DATABASE IF NOT EXISTS {db}",
        f"CREATE OR REPLACE VIEW {db}.observations AS SELECT {OBSERVATION_COLUMNS} "
        f"FROM default.observations WHERE {rows}",
        f"CREATE OR REPLACE VIEW {db}.observations_hourly AS SELECT {_DIMENSIONS}, "
        f"toDateTime64(toStartOfHour(ts), 0, 'UTC') AS hour, local_day AS day, {_ROLLUP} "
        f"FROM default.observations WHERE {rows} GROUP BY {_DIMENSIONS}, hour, day",
        f"CREATE OR REPLACE VIEW {db}.observations_daily AS SELECT {_DIMENSIONS}, "
        f"local_day AS day, {_ROLLUP} FROM default.observations WHERE {rows} "
        f"GROUP BY {_DIMENSIONS}, day",
        f"CREATE OR REPLACE VIEW {db}.observations_latest AS SELECT {LATEST_COLUMNS} "
        f"FROM default.observations_latest FINAL WHERE {rows}",
        f"CREATE OR REPLACE VIEW {db}.readings_by_entity AS SELECT {BY_ENTITY_COLUMNS} "
        f"FROM default.readings_by_entity FINAL WHERE {rows}",
        f"CREATE OR REPLACE VIEW {db}.energy_aggregates AS SELECT {AGGREGATE_COLUMNS} "
        f"FROM default.energy_aggregates_released FINAL WHERE {released}",
        f"CREATE OR REPLACE VIEW {db}.datasets AS {_datasets_select(scope)}",
    ]


def _datasets_select(scope: PartnerScope) -> str:
    rows = [
        (f"{g.city}/{g.source}", g.city, g.source, g.name, g.domain, g.level, g.licence or "")
        for g in scope.grants
    ]
    rows += [(f"{c}/energy-aggregates", c, "energy-aggregates", "energy-aggregates", "energy",
              "released", "") for c in scope.aggregate_cities]  # fmt: skip
    columns = "id String, city String, source String, name String, domain String, "
    columns += "level String, licence String"
    if not rows:
        return f"SELECT * FROM values({_literal(columns)}, ('', '', '', '', '', '', '')) WHERE 0"
    values = ", ".join("(" + ", ".join(_literal(v) for v in row) + ")" for row in rows)
    return f"SELECT * FROM values({_literal(columns)}, {values})"


def refresh_partner_views(
    warehouse: Warehouse, cities: Mapping[str, CityConfig], aggregates: SharingPolicy
) -> list[str]:
    """Make one ``partner_<code>`` per partner the files name, and drop the others.

    Idempotent (run at every start of publish). Returns the partner codes served.
    """
    partners = sorted(known_partners(cities, aggregates) - {PUBLIC_AUDIENCE})
    for partner in partners:
        for statement in view_statements(partner_scope(partner, cities, aggregates)):
            warehouse.command(statement)
    wanted = {database_of(p) for p in partners}
    existing = warehouse.query_arrow(
        f"SELECT name FROM system.databases WHERE startsWith(name, {_literal(PREFIX)})"
    ).column("name")
    for name in existing.to_pylist():
        if name not in wanted:
            warehouse.command(f"DROP DATABASE IF EXISTS `{name}`")
            log.info("partner views dropped", extra={"database": name})
    return partners
