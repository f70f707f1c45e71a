"""Where an entity is: the ``position`` (lat/lon) of its observations.

An Observation carries one position per series (avro GeoPoint), the place of its
entity: a station, a road loop, a car park. It comes from the source:

- Smart Data Models forms (``sdm-keyvalues``, ``ngsi-v2-normalized``, ``ngsi-ld``):
  the ``location`` attribute, a GeoJSON geometry whose positions are
  **[longitude, latitude]** (RFC 7946); a line or polygon (a road arc, a car park's
  outline) counts as the mean of its positions. This is the default for those
  formats.
- other formats, declared in the mapping: ``position: {field: <name>}`` for a text
  column holding GeoJSON, ``"lat,lon"`` (Paris's ``geo_point_2d``) or an
  Opendatasoft ``{"lon": .., "lat": ..}`` object (Bordeaux's), or
  ``position: {lat: <name>, lon: <name>}`` for two numeric columns.
- ``position: none`` turns it off.

Never for a personal source (``privacy: {personal: true}``): a household meter's
position identifies the household, even generalised to a grid cell (one house on
its cell in the countryside). A mapping that declares one there is refused at
start, and the default does not apply.

A record is one entity: its position is the latest row that has a valid one. Rows
whose position is unreadable or out of range are counted (``Drops``) and the
readings are published without it: the position describes the entity, the
reading itself is valid, so nothing goes to the dead letters for it.

Column-wise: a text column is parsed once per distinct value (an entity's rows
repeat one location), a pair of numeric columns is checked with numpy.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.runtime.errors import ConfigError
from services.runtime.geojson import coordinate_pairs, valid_position

UNREADABLE = "position-unreadable"
OUT_OF_RANGE = "position-out-of-range"
DECIMALS = 6  # about 0.1 m: more than any source's precision
SDM_LOCATION = "location"

Column = dict[str, Any]
GeoPoint = dict[str, float]
Fail = Callable[[str, str], ConfigError]
_ARRAYS = {"string": "strings", "double": "doubles", "long": "longs", "boolean": "booleans"}


@dataclass(frozen=True)
class PositionSpec:
    """Where a source's records hold their position: one text field, or two numbers."""

    field: str | None = None
    lat: str | None = None
    lon: str | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.field,) if self.field else (self.lat or "", self.lon or "")


def parse_position(raw: Any, *, sdm: bool, personal: bool, fail: Fail) -> PositionSpec | None:
    """The mapping's ``position`` checked (None: the source gives no position).

    ``sdm``: the default is the Smart Data Models ``location``; ``personal``: a
    personal source never has one (refused if declared)."""
    if raw is None:
        return PositionSpec(field=SDM_LOCATION) if sdm and not personal else None
    if raw == "none" or raw is False:
        return None
    if personal:
        raise fail(
            "position",
            "a personal source never carries a position (it would locate a household, "
            "even as a grid cell): remove `position`, or set `privacy.personal: false` "
            "if the source describes no person",
        )
    if not isinstance(raw, dict) or set(raw) not in ({"field"}, {"lat", "lon"}):
        raise fail(
            "position",
            'expected {field: <GeoJSON or "lat,lon" column>}, {lat: <column>, lon: '
            "<column>} or none",
        )
    if not all(isinstance(v, str) and v for v in raw.values()):
        raise fail("position", "column names must be non-empty strings")
    return PositionSpec(field=raw.get("field"), lat=raw.get("lat"), lon=raw.get("lon"))


def position_of(spec: PositionSpec, columns: dict[str, Column]) -> tuple[GeoPoint | None, Counter]:
    """The entity's position (its latest valid row) and the rows whose position was
    dropped, by reason. Absent columns or empty cells are no drop: nothing was said."""
    if spec.field is not None:
        column = columns.get(spec.field)
        if column is None:
            return None, Counter()
        return _from_text(column)
    lat, lon = columns.get(spec.lat or ""), columns.get(spec.lon or "")
    if lat is None or lon is None:
        return None, Counter()
    return _from_pair(lat, lon)


def read_text(text: str) -> tuple[float, float] | bool | None:
    """(lat, lon) of GeoJSON (any geometry: the mean of its positions, a Feature's
    geometry) or of ``"lat,lon"``; None if unreadable, False if out of range."""
    text = text.strip()
    if text.startswith("{"):
        try:
            geometry = json.loads(text)
        except ValueError:
            return None
        if isinstance(geometry, dict) and isinstance(geometry.get("geometry"), dict):
            geometry = geometry["geometry"]
        if isinstance(geometry, dict) and {"lat", "lon"} <= set(geometry):
            geometry = _named(geometry)  # an Opendatasoft geo_point_2d: {"lon", "lat"}
        pairs = coordinate_pairs(geometry.get("coordinates")) if isinstance(geometry, dict) else []
        if not pairs:
            return None
        lon = sum(p[0] for p in pairs) / len(pairs)  # GeoJSON: [longitude, latitude]
        lat = sum(p[1] for p in pairs) / len(pairs)
    else:
        parts = text.split(",")
        if len(parts) != 2:
            return None
        try:
            lat, lon = float(parts[0]), float(parts[1])
        except ValueError:
            return None
    return (lat, lon) if valid_position(lat, lon) else False


def _named(point: dict[str, Any]) -> dict[str, Any]:
    """``{"lon": x, "lat": y}`` as the GeoJSON Point it names (None members: no point)."""
    return {"coordinates": [point["lon"], point["lat"]]}


def _point(lat: float, lon: float) -> GeoPoint:
    return {"lat": round(float(lat), DECIMALS), "lon": round(float(lon), DECIMALS)}


def _present(column: Column) -> list[Any]:
    values = list(column[_ARRAYS[column["kind"]]])
    for i in column.get("missing") or ():
        values[i] = None
    return values


def _from_text(column: Column) -> tuple[GeoPoint | None, Counter]:
    drops: Counter = Counter()
    if column["kind"] != "string":
        drops[UNREADABLE] = len(column[_ARRAYS[column["kind"]]]) - len(column.get("missing") or ())
        return None, drops
    values = _present(column) if column.get("missing") else column["strings"]
    read = {text: read_text(text) for text in set(values) if text is not None}
    if not all(read.values()):  # some rows unreadable or out of range: count them
        for text, rows in Counter(v for v in values if v is not None).items():
            if not read[text]:
                drops[UNREADABLE if read[text] is None else OUT_OF_RANGE] += rows
    for text in reversed(values):  # stops at the latest valid row (usually the last)
        found = read.get(text) if text is not None else None
        if found:
            return _point(*found), drops
    return None, drops


def _from_pair(lat_column: Column, lon_column: Column) -> tuple[GeoPoint | None, Counter]:
    plain = _plain_numbers(lat_column), _plain_numbers(lon_column)
    if plain[0] is not None and plain[1] is not None:
        lats, lons = plain
        # the usual case, at C speed: every row present and in range, the last one wins
        same = len(lats) == len(lons) and len(lats) > 0
        if same and valid_position(lats[-1], lons[-1]) and _all_in_range(lats, lons):
            return _point(lats[-1], lons[-1]), Counter()
    return _from_arrays(lat_column, lon_column)


def _all_in_range(lats: list[float], lons: list[float]) -> bool:
    """Every row in range, from the columns' extremes. (min and max may step over a
    NaN in the middle of a list; ingest refuses NaN, and the last row, the one
    published, is checked on its own.)"""
    return valid_position(min(lats), min(lons)) and valid_position(max(lats), max(lons))


def _plain_numbers(column: Column) -> list[float] | None:
    """The column's numbers when it is numeric with no missing cell, else None."""
    if column["kind"] in ("double", "long") and not column.get("missing"):
        return column[_ARRAYS[column["kind"]]]
    return None


def _from_arrays(lat_column: Column, lon_column: Column) -> tuple[GeoPoint | None, Counter]:
    """The general case with numpy: text numbers, missing cells, rows out of range."""
    lats, lons = _floats(lat_column), _floats(lon_column)
    drops: Counter = Counter()
    if lats is None or lons is None or len(lats) != len(lons):
        drops[UNREADABLE] = max(len(_present(lat_column)), len(_present(lon_column)))
        return None, drops
    missing = np.isnan(lats) & np.isnan(lons)
    with np.errstate(invalid="ignore"):
        valid = (np.abs(lats) <= 90) & (np.abs(lons) <= 180)
    half = np.isnan(lats) ^ np.isnan(lons)
    drops[UNREADABLE] += int(half.sum())
    drops[OUT_OF_RANGE] += int((~valid & ~missing & ~half).sum())
    drops = +drops
    rows = np.flatnonzero(valid)
    if not len(rows):
        return None, drops
    last = rows[-1]
    return _point(lats[last], lons[last]), drops


def _floats(column: Column) -> np.ndarray | None:
    """A column as float64 with NaN where missing; None if it holds text that is not
    a number (a coordinate written as words is no coordinate)."""
    kind = column["kind"]
    if kind == "boolean":
        return None
    values = column[_ARRAYS[kind]]
    missing = column.get("missing") or ()
    if kind == "string":
        gone = set(missing)
        values = ["nan" if i in gone else v for i, v in enumerate(values)]
    try:
        array = np.array(values, float)
    except ValueError:
        return None
    if len(missing):
        array[list(missing)] = np.nan
    array[~np.isfinite(array)] = np.nan
    return array
