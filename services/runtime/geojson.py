"""GeoJSON positions as sources write them: what anonymise (which coarsens them) and
normalise (which publishes them) both read, written once."""

from __future__ import annotations

import math
from typing import Any


def coordinate_pairs(coordinates: Any) -> list[tuple[float, float]]:
    """Every (lon, lat) position of a GeoJSON coordinates array, however nested
    (Point, LineString, Polygon...); anything else gives none."""
    if (
        isinstance(coordinates, list)
        and len(coordinates) >= 2
        and all(isinstance(c, int | float) and not isinstance(c, bool) for c in coordinates[:2])
    ):
        return [(float(coordinates[0]), float(coordinates[1]))]
    if isinstance(coordinates, list):
        return [pair for item in coordinates for pair in coordinate_pairs(item)]
    return []


def valid_position(lat: float, lon: float) -> bool:
    """A latitude and longitude on Earth (finite, in range)."""
    return math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180
