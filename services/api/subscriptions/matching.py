"""Which subscription an entity update triggers, and what its notification carries.

The API's own parsers are reused (``q``: services/api/ngsi/q.py, ``geoQ``:
services/api/ngsi/geo.py): a subscription accepted by the routes means exactly what
the same parameters mean on a query. Queries compile ``q`` to SQL on the node that
holds the data; a notification is decided here, on one entity, so the DNF is
evaluated by :func:`eval_q` (same semantics: an attribute the entity does not carry
matches nothing, as NGSI-LD says).

An update is the entity as one published record leaves it: a record carries one
metric (observations) or the three figures of an energy cell, so ``q`` and
``watchedAttributes`` are judged on the attributes that record changed.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

from services.api.ids import build_id
from services.api.ngsi.geo import GeoQuery, parse_geo
from services.api.ngsi.names import Names
from services.api.ngsi.params import compile_pattern
from services.api.ngsi.q import Condition, Dnf, parse_q
from services.api.ngsi.represent import key_values, normalized, project
from services.api.subscriptions.model import Subscription

EARTH_RADIUS_M = 6_371_008.8  # mean radius, as ClickHouse's geoDistance approximates


def eval_condition(condition: Condition, values: dict[str, float]) -> bool:
    value = values.get(condition.metric)
    if value is None or not math.isfinite(value):
        return False
    op = condition.op
    target = condition.value
    return {
        "==": value == target,
        "!=": value != target,
        "<": value < target,
        "<=": value <= target,
        ">": value > target,
        ">=": value >= target,
    }[op]


def eval_q(dnf: Dnf, values: dict[str, float]) -> bool:
    """The DNF of parse_q over one entity's metric values (OR of ANDs)."""
    return any(all(eval_condition(c, values) for c in group) for group in dnf)


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two (lon, lat) positions, in metres."""
    lon1, lat1, lon2, lat2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def inside(point: tuple[float, float], ring: tuple[tuple[float, float], ...]) -> bool:
    """Ray casting: is (lon, lat) inside the closed ring?"""
    x, y = point
    result = False
    for (x1, y1), (x2, y2) in itertools.pairwise(ring):
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            result = not result
    return result


def eval_geo(geo: GeoQuery, point: tuple[float, float] | None) -> bool:
    """An entity without a position matches no geo-query (as on the node)."""
    if point is None:
        return False
    if geo.relation == "near" and geo.point is not None:
        d = distance_m(point, geo.point)
        return geo.min_distance_m <= d <= geo.max_distance_m
    return inside(point, geo.ring)


@dataclass(frozen=True)
class Matcher:
    """A subscription's filters compiled once (the definition was validated by the
    routes; parsing again here cannot fail on what they accepted)."""

    sub: Subscription
    names: Names
    q: Dnf | None
    geo: GeoQuery | None
    patterns: tuple[tuple[str, Any, str | None], ...]  # RE2 patterns

    @classmethod
    def of(cls, sub: Subscription, names: Names) -> Matcher:
        types = tuple(sorted({s.type for s in sub.entities if s.type}))
        q = parse_q(sub.q, lambda a: names.metrics(a, types)) if sub.q else None
        geo = None
        if sub.geo_q is not None:
            g = sub.geo_q
            geo = parse_geo(g.georel, g.geometry, g.coordinates, g.geoproperty)
        patterns = tuple(
            (s.type, compile_pattern(s.id_pattern) if s.id_pattern else None, s.id)
            for s in sub.entities
        )
        return cls(sub, names, q, geo, patterns)

    def selects(self, entity_type: str, entity_id: str) -> bool:
        """entities: any member whose type (and id or idPattern) fits; none: all."""
        if not self.patterns:
            return True
        for wanted_type, pattern, wanted_id in self.patterns:
            if wanted_type and wanted_type != entity_type:
                continue
            if wanted_id is not None and wanted_id != entity_id:
                continue
            if pattern is not None and not pattern.search(entity_id):
                continue
            return True
        return False

    def body(self, entity: Any) -> dict[str, Any] | None:
        """The entity as this subscription's notification carries it, or None when the
        update does not trigger it."""
        entity_id = build_id(entity.entity_type, entity.city, entity.entity)
        if not self.selects(entity.entity_type, entity_id):
            return None
        full = normalized(entity, self.names)
        if self.sub.watched_attributes and not set(self.sub.watched_attributes) & set(full):
            return None
        if self.q is not None:
            values = {
                a.metric: a.value
                for a in entity.attributes
                if a.HasField("value") and not a.suppressed
            }
            if not eval_q(self.q, values):
                return None
        if self.geo is not None:
            point = (entity.position.lon, entity.position.lat)
            if not eval_geo(self.geo, point if entity.HasField("position") else None):
                return None
        shown = project(full, self.sub.attributes)
        return key_values(shown) if self.sub.format == "keyValues" else shown
