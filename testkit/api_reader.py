"""An in-memory federation for the common API's tests and benches.

Each node holds entities (federation ``Entity`` messages) and temporal series and
answers an ``EntityQuery`` / ``TemporalQuery`` as the federation API specifies (types,
refs, key pattern, metrics, q groups, geo, order, offset/limit, count), so the API's
routes and merge run on real messages without a warehouse. A node can be made to
fail with a given outcome; an entity can be visible to some audiences only.
"""

from __future__ import annotations

import itertools
import math
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import grpc

from services.api.audience import Audience
from services.api.merge import ANSWERED, Merged, NodeAnswer, NodeStatus, merge, sort_key
from services.federation.calls import ON_BEHALF_OF
from services.federation.certs import server_credentials
from services.federation.protos import pb, rpc
from services.policy.federation import CertificatePaths

OPS = {
    pb.COMPARISON_EQ: lambda a, b: a == b,
    pb.COMPARISON_NE: lambda a, b: a != b,
    pb.COMPARISON_LT: lambda a, b: a < b,
    pb.COMPARISON_LE: lambda a, b: a <= b,
    pb.COMPARISON_GT: lambda a, b: a > b,
    pb.COMPARISON_GE: lambda a, b: a >= b,
}


@dataclass
class MemoryNode:
    entities: list[Any] = field(default_factory=list)
    # (city, entity key) -> metric -> [(time, value)]
    series: dict[tuple[str, str], dict[str, list[tuple[datetime, float]]]] = field(
        default_factory=dict
    )
    # (city, entity key) -> audiences allowed; absent: everyone
    visible_to: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    outcome: str = ANSWERED
    calls: list[tuple[str, str]] = field(default_factory=list)  # (method, on_behalf_of)


def entity(
    city: str,
    key: str,
    entity_type: str = "AirQualityObserved",
    values: dict[str, float] | None = None,
    position: tuple[float, float] | None = None,
    observed: str = "2026-01-15T10:00:00Z",
    unit: str = "µg/m3",
) -> Any:
    """A federation Entity; ``position`` is (lon, lat)."""
    message = pb.Entity(
        city=city,
        dataset=f"{city}/air",
        entity=key,
        entity_type=entity_type,
        zone="z1",
        licence="Licence-Ouverte-2.0",
    )
    if position:
        message.position.lon, message.position.lat = position
    for metric, value in (values or {}).items():
        attribute = message.attributes.add(metric=metric, unit=unit, value=value)
        attribute.observed_at.FromJsonString(observed)
    return message


def _distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(a))


def _inside(lon: float, lat: float, ring: list[Any]) -> bool:
    inside = False
    for a, b in itertools.pairwise(ring):
        if (a.lat > lat) != (b.lat > lat):
            cross = a.lon + (lat - a.lat) * (b.lon - a.lon) / (b.lat - a.lat)
            inside ^= lon < cross
    return inside


def _geo_ok(message: Any, geo: Any) -> bool:
    if geo.relation == pb.GEO_RELATION_UNSPECIFIED:
        return True
    if not message.HasField("position"):
        return False
    lon, lat = message.position.lon, message.position.lat
    if geo.relation == pb.GEO_RELATION_NEAR:
        d = _distance_m(lon, lat, geo.point.lon, geo.point.lat)
        return geo.min_distance_m <= d <= geo.max_distance_m
    return _inside(lon, lat, list(geo.ring))


def _q_ok(message: Any, groups: Any) -> bool:
    if not groups:
        return True
    values = {a.metric: a.value for a in message.attributes if a.HasField("value")}
    return any(
        all(c.metric in values and OPS[c.op](values[c.metric], c.value) for c in group.all_of)
        for group in groups
    )


def select(node: MemoryNode, query: Any, behalf: str) -> list[Any]:
    """The node's entities an EntityQuery selects for ``behalf``, in the agreed order."""
    refs = {(r.city, r.entity) for r in query.entities}
    found = []
    for message in node.entities:
        key = (message.city, message.entity)
        allowed = node.visible_to.get(key)
        if allowed is not None and behalf not in allowed:
            continue
        if query.cities and message.city not in query.cities:
            continue
        if query.entity_types and message.entity_type not in query.entity_types:
            continue
        if refs and key not in refs:
            continue
        if query.entity_pattern and not re.fullmatch(query.entity_pattern, message.entity):
            continue
        if not _geo_ok(message, query.geo) or not _q_ok(message, query.any_of):
            continue
        if query.metrics:
            kept = [a for a in message.attributes if a.metric in query.metrics]
            if not kept:
                continue
            message = _with_attributes(message, kept)
        found.append(message)
    return sorted(found, key=sort_key)


def _with_attributes(message: Any, attributes: list[Any]) -> Any:
    copy = pb.Entity()
    copy.CopyFrom(message)
    del copy.attributes[:]
    copy.attributes.extend(attributes)
    return copy


def _series(node: MemoryNode, message: Any, query: Any) -> Any:
    item = pb.TemporalEntity()
    item.entity.CopyFrom(message)
    del item.entity.attributes[:]
    start = query.start.ToDatetime().replace(tzinfo=None) if query.HasField("start") else None
    end = query.end.ToDatetime().replace(tzinfo=None) if query.HasField("end") else None
    units = {a.metric: a.unit for a in message.attributes}
    for metric, points in sorted(node.series.get((message.city, message.entity), {}).items()):
        if query.entities.metrics and metric not in query.entities.metrics:
            continue
        kept = [(t, v) for t, v in points if (not start or t >= start) and (not end or t < end)]
        if query.last_n:
            kept = kept[-query.last_n :]
        series = item.series.add(metric=metric, unit=units.get(metric, ""))
        if query.HasField("period"):
            _buckets(series, kept, query)
        else:
            for t, v in kept:
                series.times.add().FromDatetime(t)
                series.values.append(v)
    return item


def _buckets(series: Any, points: list[tuple[datetime, float]], query: Any) -> None:
    period = timedelta(seconds=query.period.seconds)
    origin = query.start.ToDatetime() if query.HasField("start") else datetime(1970, 1, 1)
    groups: dict[datetime, list[float]] = {}
    for t, v in points:
        groups.setdefault(origin + period * ((t - origin) // period), []).append(v)
    for start, values in sorted(groups.items()):
        bucket = series.buckets.add(readings=len(values))
        bucket.start.FromDatetime(start)
        bucket.end.FromDatetime(start + period)
        bucket.sum, bucket.min, bucket.max = sum(values), min(values), max(values)
        bucket.avg = sum(values) / len(values)


class InMemoryReader:
    """An EntityReader over named in-memory nodes, merged like the federation reader."""

    def __init__(self, nodes: dict[str, MemoryNode]):
        self.nodes = nodes

    def _answers(self, method: str, query: Any, selection: Any, audience: Audience):
        answers = []
        for code, node in self.nodes.items():
            node.calls.append((method, audience.on_behalf_of))
            if node.outcome != ANSWERED:
                answers.append(NodeAnswer(NodeStatus(code, node.outcome, "UNAVAILABLE")))
                continue
            found = select(node, selection, audience.on_behalf_of)
            window = found[: selection.offset + selection.limit]
            if method == "temporal":
                window = [_series(node, m, query) for m in window]
            total = len(found) if selection.count else 0
            answers.append(NodeAnswer(NodeStatus(code, ANSWERED), window, total))
        return answers

    def entities(self, query: Any, audience: Audience) -> Merged:
        answers = self._answers("entities", query, query, audience)
        return merge(answers, query.offset, query.limit)

    def temporal(self, query: Any, audience: Audience) -> Merged:
        answers = self._answers("temporal", query, query.entities, audience)
        return merge(answers, query.entities.offset, query.entities.limit)


def energy_cell(city: str, zone: str, suppressed: bool = False) -> Any:
    """A CitePlusEnergyAggregate entity (one hourly cell of residential electricity)."""
    message = pb.Entity(
        city=city,
        dataset=f"{city}/energy-aggregates",
        entity=f"{zone}~electricity~residential~PT1H",
        entity_type="CitePlusEnergyAggregate",
        zone=zone,
        carrier="electricity",
        sector="residential",
        granularity="PT1H",
        licence="Licence-Ouverte-2.0",
    )
    for metric, unit, value in (
        ("energy_kwh", "kWh", 812.5),
        ("meter_count", "count", 41.0),
        ("peak_kw", "kW", 120.0),
    ):
        attribute = message.attributes.add(metric=metric, unit=unit)
        if suppressed:
            attribute.suppressed, attribute.suppression_reason = True, "too-few-meters"
        else:
            attribute.value = value
        attribute.observed_at.FromJsonString("2026-01-15T11:00:00Z")
        attribute.window_start.FromJsonString("2026-01-15T10:00:00Z")
    return message


def sample_federation() -> dict[str, MemoryNode]:
    """Two nodes (lyon, paris): air quality stations with positions and NO2 series, a car
    park, energy cells (one suppressed), and one entity only the partner ``acme`` sees."""
    lyon = MemoryNode(
        entities=[
            entity(
                "lyon", "FR20004", values={"no2": 35.0, "pm10": 18.0}, position=(4.8357, 45.7640)
            ),
            entity(
                "lyon", "FR20017", values={"no2": 52.0, "pm10": 25.0}, position=(4.8800, 45.7500)
            ),
            entity("lyon", "FR20062", values={"no2": 12.0}, position=(4.9500, 45.7000)),
            entity(
                "lyon",
                "P:Bellecour/2",
                "OffStreetParking",
                values={"parking_available_spots": 120.0},
                position=(4.8320, 45.7578),
                unit="count",
            ),
            entity(
                "lyon", "m-7f3a", "ACMeasurement", values={"active_energy_import": 1.5}, unit="kWh"
            ),
            energy_cell("lyon", "69381"),
            energy_cell("lyon", "69382", suppressed=True),
        ],
        visible_to={("lyon", "m-7f3a"): {"acme"}},
    )
    start = datetime(2026, 1, 15, 0, 0)
    lyon.series[("lyon", "FR20004")] = {
        "no2": [(start + timedelta(minutes=15 * i), 20.0 + i) for i in range(16)]
    }
    paris = MemoryNode(
        entities=[
            entity("paris", "FR04143", values={"no2": 61.0}, position=(2.3522, 48.8566)),
            entity("paris", "FR04002", values={"no2": 28.0}, position=(2.2945, 48.8584)),
        ]
    )
    return {"lyon": lyon, "paris": paris}


class MemoryServicer(rpc.FederationServicer):
    """QueryEntities / QueryTemporal of a :class:`MemoryNode` over real gRPC, for tests
    of the federation reader: it records who called on behalf of whom, and a ``hold``
    event makes it hang until the caller's deadline (a node that does not answer)."""

    def __init__(self, node: MemoryNode, hold: threading.Event | None = None):
        self.node, self.hold = node, hold
        self.seen: list[tuple[str, str]] = []  # (caller certificate identity, on behalf of)

    def _caller(self, context: grpc.ServicerContext) -> str:
        names = context.auth_context().get("x509_common_name", [b""])
        behalf = dict(context.invocation_metadata()).get(ON_BEHALF_OF, "")
        self.seen.append((names[0].decode(), behalf))
        if self.hold is not None:
            while context.is_active() and not self.hold.wait(0.05):
                pass
        return behalf

    def QueryEntities(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        found = select(self.node, request, self._caller(context))
        page = found[request.offset : request.offset + request.limit]
        yield pb.EntityPage(entities=page, total=len(found) if request.count else 0, last=True)

    def QueryTemporal(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        selection = request.entities
        found = select(self.node, selection, self._caller(context))
        page = found[selection.offset : selection.offset + selection.limit]
        yield pb.TemporalPage(
            entities=[_series(self.node, m, request) for m in page],
            total=len(found) if selection.count else 0,
            last=True,
        )


def serve_memory_node(
    servicer: MemoryServicer, certificates: CertificatePaths
) -> tuple[grpc.Server, str]:
    """A started mutual-TLS server of ``servicer`` on a free loopback port."""
    server = grpc.server(ThreadPoolExecutor(max_workers=8))
    rpc.add_FederationServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(certificates))
    server.start()
    return server, f"127.0.0.1:{port}"
