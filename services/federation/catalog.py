"""Datasets of a node, who may see each, and where each is published.

A dataset is one source of one city (``lyon/atmo-aura-qualite-air``: observation
series, shared as its city file's ``sharing:`` section says) or the energy
aggregates of one city (``lyon/energy-aggregates``: shared as the federation file
says; only the released ones, each window once after its day closed: the
provisional upserts never leave the node). Internal datasets exist here too, so
that a caller asking for one is told "not available to you" exactly like for a
dataset that does not exist: nothing reveals what a node keeps to itself.

What the warehouse holds of each (metrics, first and last time, count) is read
with one grouped query per table and kept for a few seconds.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from services.federation.calls import Caller, FederationError, invalid
from services.policy.access import source_is_personal
from services.policy.sharing import SharingPolicy, sharing_policies
from services.runtime.cities import CityConfig, SourceConfig
from services.runtime.city_catalogue import CityMetadata
from services.runtime.paths import DEPLOY_DIR
from services.runtime.topics import TopicName, partner_topic
from services.runtime.yaml_config import parse_strict
from services.warehouse.port import Warehouse

AGGREGATES_SOURCE = "energy-aggregates"
AGGREGATE_FIELDS = ("energy_kwh", "meter_count", "peak_kw")
# Released aggregates only (energy.aggregates.released.v2); public.energy.aggregates.v1
# is no longer written (docs/energy-analytics.md, release rule).
RELEASED_TABLE = "energy_aggregates_released"
DATASET_ID = re.compile(r"^([a-z][a-z0-9-]{0,62})/([a-z0-9][a-z0-9._-]{0,127})$")
VOCABULARY_FILE = DEPLOY_DIR / "vocabulary.yaml"


@dataclass(frozen=True)
class FederationTopics:
    """The public topics a node serves subscriptions from (a prefix runs several
    nodes on one broker)."""

    prefix: str = ""

    @property
    def public_observations(self) -> str:
        return self.prefix + TopicName.PUBLIC_OBSERVATIONS

    @property
    def public_aggregates(self) -> str:
        return self.prefix + TopicName.PUBLIC_AGGREGATES

    def shared_observations(self, partner: str) -> str:
        return partner_topic(self.prefix + TopicName.SHARED_OBSERVATIONS, partner)

    def shared_aggregates(self, partner: str) -> str:
        return partner_topic(self.prefix + TopicName.SHARED_AGGREGATES, partner)


@dataclass(frozen=True)
class DatasetInfo:
    id: str
    city: str
    source: str
    name: str
    domain: str
    policy: SharingPolicy
    record_type: str  # Avro record full name (avro/)
    # Carries personal data (privacy: {personal: true}): entity level only for named
    # partners (services/policy/access.py). Energy aggregates are not: secrecy applied.
    personal: bool = False
    # Catalogue facts of its city file (DCAT-AP): the city's name, contact, codes,
    # and the EU frequency code of its updates.
    city_name: str = ""
    publisher: CityMetadata = field(default_factory=CityMetadata)
    frequency: str = "CONT"

    @property
    def is_aggregates(self) -> bool:
        return self.source == AGGREGATES_SOURCE

    def topic_for(self, caller: Caller, topics: FederationTopics) -> str:
        """The topic that carries this dataset for ``caller`` (who may see it): the
        open topic, or the caller's own partner topic (publish writes both kinds)."""
        if self.policy.level == "open":
            return topics.public_aggregates if self.is_aggregates else topics.public_observations
        partner = caller.identity if caller.identity in self.policy.partners else None
        shared = topics.shared_aggregates if self.is_aggregates else topics.shared_observations
        return shared(partner or self.policy.partners[0])


def listing_audience(caller: Caller) -> Caller:
    """Whom a catalogue listing is for: the identity a node asks on behalf of (an API
    key's partner, ``public``), else the certified caller itself."""
    return Caller(caller.on_behalf_of) if caller.on_behalf_of else caller


@dataclass(frozen=True)
class Holdings:
    """What the warehouse holds of one dataset."""

    metrics: tuple[str, ...]
    first_ms: int
    last_ms: int
    count: int
    entity_types: tuple[str, ...] = ()


class Datasets:
    """Every dataset of the node's cities, with its sharing policy."""

    def __init__(self, cities: dict[str, CityConfig], aggregates: SharingPolicy, home: str):
        self.home = home
        self.cities = tuple(sorted(cities))
        self.timezones = {code: city.timezone for code, city in cities.items()}
        policies = sharing_policies(cities)
        found: dict[str, DatasetInfo] = {}
        for city in cities.values():
            for source in city.sources:
                info = DatasetInfo(
                    id=f"{city.code}/{source.id}",
                    city=city.code,
                    source=source.id,
                    name=source.dataset,
                    domain=source.domain,
                    policy=policies[(city.code, source.id)],
                    record_type="citeplus.v1.Observation",
                    personal=source_is_personal(source),
                    city_name=city.name,
                    publisher=city.metadata,
                    frequency=source.frequency or derived_frequency(source),
                )
                found[info.id] = info
            info = DatasetInfo(
                id=f"{city.code}/{AGGREGATES_SOURCE}",
                city=city.code,
                source=AGGREGATES_SOURCE,
                name="energy-aggregates",
                domain="energy",
                policy=aggregates,
                record_type="citeplus.v2.EnergyAggregateRelease",
                city_name=city.name,
                publisher=city.metadata,
                # Released once a day, when the day closed (docs/energy-analytics.md).
                frequency="DAILY",
            )
            found[info.id] = info
        self.all = found

    def visible(self, caller: Caller) -> list[DatasetInfo]:
        return [d for d in self.all.values() if caller.may_see(d.policy, self.home)]

    def entity_readable(self, caller: Caller) -> list[DatasetInfo]:
        """The datasets whose entities ``caller`` may read (a personal source only for
        the partners its city names, never the public)."""
        return [
            d
            for d in self.all.values()
            if caller.may_read_entities(d.policy, self.home, personal=d.personal)
        ]

    def require(self, dataset_id: str, caller: Caller, field_name: str = "dataset") -> DatasetInfo:
        """The dataset if ``caller`` may see it; the same refusal whether it exists or not."""
        if not dataset_id:
            raise invalid(field_name, "required (GetCatalog lists the datasets)")
        if not DATASET_ID.match(dataset_id):
            raise invalid(
                field_name, f"expected <city>/<source> as GetCatalog lists, got {dataset_id[:80]!r}"
            )
        info = self.all.get(dataset_id)
        if info is None or not caller.may_see(info.policy, self.home):
            raise FederationError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"dataset {dataset_id!r} is not available to {caller} on this node "
                "(GetCatalog lists what is)",
            )
        return info


class HoldingsCache:
    """Warehouse facts per dataset, at most ``ttl_s`` seconds old.

    The first call reads them; later ones get the facts at hand while a background
    thread refreshes stale ones, so no call waits for the two table scans."""

    def __init__(self, warehouse: Warehouse, ttl_s: float = 15.0):
        self.warehouse = warehouse
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._at = -1e9
        self._facts: dict[tuple[str, str], Holdings] | None = None
        self._refreshing = False

    def get(self) -> dict[tuple[str, str], Holdings]:
        with self._lock:
            if self._facts is None:
                self._facts = self._read()
                self._at = time.monotonic()
            elif time.monotonic() - self._at > self.ttl_s and not self._refreshing:
                self._refreshing = True
                threading.Thread(target=self._refresh, name="holdings", daemon=True).start()
            return self._facts

    def _refresh(self) -> None:
        try:
            facts = self._read()
        except Exception:  # the next call tries again; the old facts stay meanwhile
            facts = None
        with self._lock:
            if facts is not None:
                self._facts, self._at = facts, time.monotonic()
            self._refreshing = False

    def _read(self) -> dict[tuple[str, str], Holdings]:
        facts: dict[tuple[str, str], Holdings] = {}
        observations = self.warehouse.query_arrow(
            "SELECT city, source, arraySort(groupUniqArray(metric)) AS metrics, "
            "toUnixTimestamp64Milli(min(ts)) AS first, toUnixTimestamp64Milli(max(ts)) AS last, "
            "count() AS n, arraySort(groupUniqArray(entity_type)) AS types "
            "FROM observations GROUP BY city, source"
        )
        for row in observations.to_pylist():
            types = tuple(t for t in row["types"] if t)
            facts[(row["city"], row["source"])] = _holdings(row, tuple(row["metrics"]), types)
        aggregates = self.warehouse.query_arrow(
            "SELECT city, toUnixTimestamp64Milli(min(window_start)) AS first, "
            "toUnixTimestamp64Milli(max(window_end)) AS last, count() AS n "
            f"FROM {RELEASED_TABLE} FINAL GROUP BY city"
        )
        for row in aggregates.to_pylist():
            facts[(row["city"], AGGREGATES_SOURCE)] = _holdings(row, AGGREGATE_FIELDS)
        return facts


def _holdings(
    row: dict[str, Any], metrics: tuple[str, ...], types: tuple[str, ...] = ()
) -> Holdings:
    return Holdings(metrics, int(row["first"]), int(row["last"]), int(row["n"]), types)


def derived_frequency(source: SourceConfig) -> str:
    """A source's EU frequency code when its city file declares none: readings are
    published as they come (CONT), unless privacy reduces them to one a day."""
    coarsen = (source.privacy or {}).get("coarsen")
    if isinstance(coarsen, dict) and coarsen.get("to") == "P1D":
        return "DAILY"
    return "CONT"


def vocabulary_metrics(path: Path = VOCABULARY_FILE) -> frozenset[str]:
    """Metric names of the controlled vocabulary (empty when the file is absent)."""
    if not path.exists():
        return frozenset()
    document = parse_strict(path.read_text(encoding="utf-8"), str(path)) or {}
    metrics = document.get("metrics") if isinstance(document, dict) else None
    return frozenset(metrics) if isinstance(metrics, dict) else frozenset()
