"""NGSI-LD geo-queries: ``georel``, ``geometry``, ``coordinates`` (and ``geoproperty``).

Supported: ``near;maxDistance==<m>`` and/or ``near;minDistance==<m>`` around a Point,
``within`` a Polygon (one outer ring). Coordinates are GeoJSON, longitude first. The
other relations (intersects, disjoint, equals, overlaps, contains) and geometries are
refused with a 400 that says what is supported: a city's entities are points, so
``within`` a polygon and ``near`` a point answer what those relations would.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from services.api.ngsi.problems import NgsiError, bad_data, shown

RELATIONS = ("near", "within", "intersects", "disjoint", "equals", "overlaps", "contains")
MAX_DISTANCE_M = 100_000.0  # the federation API answers near from 1 m to 100 km
MAX_RING = 1000
MAX_COORDINATES_TEXT = 65_536


@dataclass(frozen=True)
class GeoQuery:
    relation: str  # near | within
    point: tuple[float, float] | None = None  # (lon, lat)
    max_distance_m: float = 0.0
    min_distance_m: float = 0.0
    ring: tuple[tuple[float, float], ...] = ()  # (lon, lat), closed


def parse_geo(
    georel: str | None, geometry: str | None, coordinates: str | None, geoproperty: str | None
) -> GeoQuery | None:
    """The geo filter of a request, None without ``georel``; 400 on anything else."""
    if georel is None:
        if geometry is not None or coordinates is not None:
            raise bad_data("geometry and coordinates need georel (near;maxDistance==... or within)")
        return None
    if geoproperty not in (None, "location"):
        raise bad_data(f"geoproperty {shown(geoproperty or '')} is not supported: only location")
    if geometry is None or coordinates is None:
        raise bad_data("georel needs geometry (Point or Polygon) and coordinates")
    relation, distances = _relation(georel)
    shape = _coordinates(coordinates)
    if relation == "near":
        if geometry != "Point":
            raise bad_data(f"near goes with geometry=Point, got {shown(geometry)}")
        return GeoQuery("near", _point(shape), *distances)
    if geometry != "Polygon":
        raise bad_data(f"within goes with geometry=Polygon, got {shown(geometry)}")
    return GeoQuery("within", ring=_ring(shape))


def _relation(georel: str) -> tuple[str, tuple[float, float]]:
    relation, *modifiers = georel.split(";")
    if relation not in RELATIONS:
        raise bad_data(f"georel {shown(relation)} is unknown; use near or within")
    if relation not in ("near", "within"):
        raise NgsiError(
            "OperationNotSupported",
            f"georel {relation} is not supported; use near (around a Point) or within "
            "(a Polygon): entities here are points",
        )
    if relation == "within":
        if modifiers:
            raise bad_data("within takes no distance")
        return relation, (0.0, 0.0)
    return relation, _distances(modifiers)


def _distances(modifiers: list[str]) -> tuple[float, float]:
    found: dict[str, float] = {}
    for modifier in modifiers:
        name, sep, raw = modifier.partition("==")
        if not sep or name not in ("maxDistance", "minDistance") or name in found:
            raise bad_data(
                f"near takes maxDistance==<metres> and/or minDistance==<metres>, "
                f"got {shown(modifier)}"
            )
        found[name] = _metres(name, raw)
    if not found:
        raise bad_data("near needs maxDistance==<metres> (and optionally minDistance)")
    low, high = found.get("minDistance", 0.0), found.get("maxDistance", MAX_DISTANCE_M)
    if low >= high:
        raise bad_data("minDistance must be below maxDistance")
    return high, low


def _metres(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise bad_data(f"{name} must be a number of metres, got {shown(raw)}") from None
    low = 1.0 if name == "maxDistance" else 0.0
    if not math.isfinite(value) or not low <= value <= MAX_DISTANCE_M:
        raise bad_data(f"{name} must be between {low:g} and {MAX_DISTANCE_M:g} metres")
    return value


def _coordinates(text: str) -> object:
    if len(text) > MAX_COORDINATES_TEXT:
        raise bad_data(f"coordinates longer than {MAX_COORDINATES_TEXT} characters")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise bad_data(
            "coordinates must be a JSON array, longitude first: [4.83,45.76] for a Point, "
            "[[[lon,lat],...]] for a Polygon"
        ) from None


def _no_constant(name: str) -> object:
    raise ValueError(name)


def _position(value: object) -> tuple[float, float]:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise bad_data("a position is [longitude, latitude] (two numbers)")
    lon, lat = float(value[0]), float(value[1])
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise bad_data(
            f"position [{lon:g}, {lat:g}] is off the globe: longitude comes first "
            "(-180..180), then latitude (-90..90)"
        )
    return lon, lat


def _point(shape: object) -> tuple[float, float]:
    return _position(shape)


def _ring(shape: object) -> tuple[tuple[float, float], ...]:
    if not isinstance(shape, list) or len(shape) != 1 or not isinstance(shape[0], list):
        raise bad_data("a Polygon is [[[lon,lat], ...]]: one ring (holes are not supported)")
    points = [_position(p) for p in shape[0]]
    if len(points) > MAX_RING:
        raise bad_data(f"a Polygon ring has at most {MAX_RING} positions")
    if points and points[0] != points[-1]:
        points.append(points[0])
    if len(set(points)) < 3:
        raise bad_data("a Polygon ring needs at least three distinct positions")
    return tuple(points)
