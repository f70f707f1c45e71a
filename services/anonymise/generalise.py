"""Quasi-identifiers generalised column by column: grid cells, time buckets,
number bands and code prefixes.

Each function takes a Column record (and its rule) and returns the output
columns with how many values were generalised and how many were removed because
they could not be read (a quasi-identifier that cannot be generalised never
passes through as it was). Work is done once per distinct value: a station's
position repeated over 144 rows is parsed once.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from services.anonymise import columns
from services.anonymise.policy import Band, Bucket, Grid, Prefix
from services.runtime.geojson import coordinate_pairs, valid_position
from services.runtime.timeparse import parse_time_column

Column = dict[str, Any]
Result = tuple[list[Column], int, int]  # output columns, values generalised, values removed

METRES_PER_DEGREE = 111_320.0
_US = 1_000_000
_DAY_S = 86_400
_HOUR_US = 3600 * _US
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# -- grid ----------------------------------------------------------------------------
def cell_of(lat: float, lon: float, metres: float) -> tuple[str, float, float]:
    """(cell id, centre latitude, centre longitude) of the grid cell holding a point.

    Rows are ``metres`` of latitude; within a row, columns are ``metres`` of
    longitude at the row's centre latitude, so cells stay close to square from
    Lille to Nice. The id names the size, row and column: ``500m:12345:678``.
    """
    lat_step = metres / METRES_PER_DEGREE
    row = math.floor(lat / lat_step)
    lat_c = (row + 0.5) * lat_step
    lon_step = metres / (METRES_PER_DEGREE * max(math.cos(math.radians(lat_c)), 1e-6))
    col = math.floor(lon / lon_step)
    lon_c = (col + 0.5) * lon_step
    return f"{metres:g}m:{row}:{col}", round(lat_c, 6), round(lon_c, 6)


def read_position(text: str) -> tuple[str, float, float] | None:
    """(form, lat, lon) of a position written as GeoJSON or as ``"lat,lon"``; None if neither.

    A GeoJSON line or polygon counts as its centroid (mean of its positions).
    """
    text = text.strip()
    if text.startswith("{"):
        try:
            geometry = json.loads(text)
        except ValueError:
            return None
        if isinstance(geometry, dict) and isinstance(geometry.get("geometry"), dict):
            geometry = geometry["geometry"]
        pairs = coordinate_pairs(geometry.get("coordinates")) if isinstance(geometry, dict) else []
        if not pairs:
            return None
        lon = sum(p[0] for p in pairs) / len(pairs)
        lat = sum(p[1] for p in pairs) / len(pairs)
        return ("geojson", lat, lon) if valid_position(lat, lon) else None
    parts = text.split(",")
    if len(parts) != 2:
        return None
    try:
        lat, lon = float(parts[0]), float(parts[1])
    except ValueError:
        return None
    return ("latlon", lat, lon) if valid_position(lat, lon) else None


def _centre_text(form: str, lat: float, lon: float) -> str:
    if form == "geojson":
        return json.dumps({"type": "Point", "coordinates": [lon, lat]}, separators=(",", ":"))
    return f"{lat},{lon}"


def grid_column(column: Column, grid: Grid, lon_column: Column | None = None) -> Result:
    """Positions to grid cells: the centre in the same form, the cell id, or both."""
    if lon_column is not None:
        return _grid_pair(column, lon_column, grid)
    n = len(columns.typed(column))
    if column["kind"] != "string":
        return [], 0, columns.present(column)  # a lone number is no position
    values = column["strings"]
    centre_of, cell_of_text, unreadable = _grid_texts(values, grid.metres)
    missing = column["missing"]
    gone = set(missing)
    removed = 0
    if unreadable:
        bad = [i for i, text in enumerate(values) if text in unreadable and i not in gone]
        removed = len(bad)
        gone.update(bad)
    outputs: list[Column] = []
    if grid.output in ("centre", "both"):
        outputs.append(_text_column(column["name"], values, centre_of, missing, gone))
    if grid.output in ("cell", "both"):
        cell_name = column["name"] if grid.output == "cell" else f"{column['name']}@cell"
        outputs.append(_text_column(cell_name, values, cell_of_text, missing, gone))
    return outputs, n - len(gone), removed


class _GridTexts(NamedTuple):
    """Each distinct position text's centre (in the text's own form) and cell id
    (both "" when it reads as no position), and the texts that did not read."""

    centre_of: dict[str, str]
    cell_of: dict[str, str]
    unreadable: set[str]


def _grid_texts(values: list[str], metres: float) -> _GridTexts:
    """Every distinct text read once: a column repeats few positions many times."""
    centre_of: dict[str, str] = {}
    cell_of_text: dict[str, str] = {}
    unreadable: set[str] = set()
    for text in set(values):
        read = read_position(text)
        if read is None:
            unreadable.add(text)
            centre_of[text] = cell_of_text[text] = ""
        else:
            form, lat, lon = read
            cell, lat_c, lon_c = cell_of(lat, lon, metres)
            centre_of[text], cell_of_text[text] = _centre_text(form, lat_c, lon_c), cell
    return _GridTexts(centre_of, cell_of_text, unreadable)


def _text_column(
    name: str, values: list[str], lookup: dict[str, str], missing: list[int], gone: set[int]
) -> Column:
    """A string column of each value's ``lookup``, empty where the input was missing."""
    out = [lookup[text] for text in values]
    for i in missing:
        out[i] = ""
    return columns.make(name, "string", out, gone)


def _grid_pair(lat_column: Column, lon_column: Column, grid: Grid) -> Result:
    name = lat_column["name"]
    lats, lons = columns.cells(lat_column), columns.cells(lon_column)
    n = len(lats)
    if len(lons) != n:
        raise ValueError(f"columns {name} and {lon_column['name']} differ in length")
    lat_out, lon_out, cells = [0.0] * n, [0.0] * n, [""] * n
    gone: list[int] = []
    removed = 0
    for i, (lat, lon) in enumerate(zip(lats, lons, strict=True)):
        if lat is None or lon is None:
            gone.append(i)
            removed += (lat is not None) + (lon is not None)
            continue
        try:
            flat, flon = float(lat), float(lon)
        except (TypeError, ValueError):
            gone.append(i)
            removed += 2
            continue
        if not valid_position(flat, flon):
            gone.append(i)
            removed += 2
            continue
        cells[i], lat_out[i], lon_out[i] = cell_of(flat, flon, grid.metres)
    outputs: list[Column] = []
    if grid.output in ("centre", "both"):
        outputs.append(columns.make(name, "double", lat_out, gone))
        outputs.append(columns.make(lon_column["name"], "double", lon_out, gone))
    if grid.output in ("cell", "both"):
        cell_name = name if grid.output == "cell" else f"{name}@cell"
        outputs.append(columns.make(cell_name, "string", cells, gone))
    return outputs, 2 * (n - len(gone)), removed


# -- time buckets --------------------------------------------------------------------
@lru_cache(maxsize=16)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def bucket_starts(times_us: list[int | None], seconds: int, timezone: str) -> list[int | None]:
    """The start (UTC µs) of each time's bucket; a day is the local day of ``timezone``.

    Sub-day steps divide an hour, so UTC alignment equals local alignment in
    whole-hour zones. Offsets are looked up once per UTC hour, not per value.
    """
    if seconds < _DAY_S:
        step = seconds * _US
        return [None if t is None else t - t % step for t in times_us]
    tz = _zone(timezone)
    offsets: dict[int, int] = {}
    starts: dict[int, int] = {}
    out: list[int | None] = []
    for t in times_us:
        if t is None:
            out.append(None)
            continue
        hour = t // _HOUR_US
        offset = offsets.get(hour)
        if offset is None:
            moment = _EPOCH + timedelta(microseconds=hour * _HOUR_US)
            offset = offsets[hour] = (
                moment.astimezone(tz).utcoffset() or timedelta(0)
            ) // timedelta(microseconds=1)
        local_day = (t + offset) // (_DAY_S * _US)
        start = starts.get(local_day)
        if start is None:
            midnight = datetime(1970, 1, 1) + timedelta(days=local_day)
            aware = midnight.replace(tzinfo=tz)
            start = starts[local_day] = (aware - _EPOCH) // timedelta(microseconds=1)
        out.append(start)
    return out


def iso_utc(time_us: int) -> str:
    """``2025-01-14T07:00:00Z``."""
    moment = _EPOCH + timedelta(microseconds=time_us)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def bucket_column(column: Column, bucket: Bucket) -> Result:
    """Times (read with the rule's format) to their bucket start, as ISO 8601 UTC text."""
    times, _ = parse_time_column(columns.cells(column), bucket.time)
    starts = bucket_starts(times, bucket.seconds, bucket.time.timezone)
    missing = set(column["missing"])
    texts: dict[int, str] = {}
    out: list[str] = []
    gone: list[int] = []
    removed = 0
    for i, start in enumerate(starts):
        if start is None:
            out.append("")
            gone.append(i)
            removed += i not in missing
            continue
        text = texts.get(start)
        if text is None:
            text = texts[start] = iso_utc(start)
        out.append(text)
    n = len(out)
    return [columns.make(column["name"], "string", out, gone)], n - len(gone), removed


# -- number bands ----------------------------------------------------------------------
def band_column(column: Column, band: Band) -> Result:
    """Numbers to the lower bound of their band; integers stay integers for whole widths."""
    kind = column["kind"]
    width = band.width
    missing = set(column["missing"])
    values = columns.typed(column)
    n = len(values)
    if kind == "long" and width.is_integer():
        w = int(width)
        out_long = [v - v % w for v in values]
        for i in missing:
            out_long[i] = 0
        return [columns.make(column["name"], "long", out_long, missing)], n - len(missing), 0
    out: list[float] = [0.0] * n
    gone = set(missing)
    removed = 0
    for i, v in enumerate(values):
        if i in missing:
            continue
        try:
            number = float(v) if kind in ("string", "double", "long") else math.nan
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            gone.add(i)
            removed += 1
            continue
        out[i] = math.floor(number / width) * width
    return [columns.make(column["name"], "double", out, gone)], n - len(gone), removed


# -- code prefixes ---------------------------------------------------------------------
def prefix_column(column: Column, prefix: Prefix) -> Result:
    """Codes to their first characters (an IRIS code to its commune)."""
    length = prefix.length
    texts = columns.as_text(column)
    out = [text[:length] for text in texts]
    missing = column["missing"]
    for i in missing:
        out[i] = ""
    return [columns.make(column["name"], "string", out, missing)], len(out) - len(missing), 0


def generalise(
    column: Column, rule_generalisation: Any, lon_column: Column | None = None
) -> Result:
    """Apply a quasi-identifier's generalisation to its column."""
    if isinstance(rule_generalisation, Grid):
        return grid_column(column, rule_generalisation, lon_column)
    if isinstance(rule_generalisation, Bucket):
        return bucket_column(column, rule_generalisation)
    if isinstance(rule_generalisation, Band):
        return band_column(column, rule_generalisation)
    if isinstance(rule_generalisation, Prefix):
        return prefix_column(column, rule_generalisation)
    raise TypeError(f"unknown generalisation {type(rule_generalisation).__name__}")
