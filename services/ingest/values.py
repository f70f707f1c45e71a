"""Cell conversions shared by the parsers: numbers, nested JSON, ISO 8601 times.

They are strict on purpose: a value that is not clearly a number or a time
with a UTC offset is refused (or left as text) rather than guessed, because a
wrong guess would travel silently through every later stage.

Their error texts quote the value refused: parsers put them in a rejection's
``detail`` (raw dead letters only), never in its ``message``.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from services.ingest.batch import Cell

# Groups 1-3 are the decimal mark and exponent: all empty means an integer.
_NUMBER = re.compile(r"[+-]?(?:\d+(\.\d*)?|(\.\d+))([eE][+-]?\d+)?")
# Spaces French exports use as thousands separators: space, no-break, narrow no-break.
_GROUPING = str.maketrans("", "", " \u00a0\u202f")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def parse_number(text: str, decimal: str = ".") -> int | float:
    """Read a number written with ``decimal`` as decimal mark; ValueError if not one.

    Integers stay ``int`` (counts, indexes in Wh) so that no precision is lost;
    anything with a decimal mark or exponent becomes a finite ``float``.
    """
    cleaned = text.strip()
    if decimal != ".":
        if "." in cleaned:
            raise ValueError(
                f"{text!r} uses '.' but the source declares {decimal!r} as decimal mark"
            )
        cleaned = cleaned.replace(decimal, ".")
    match = _NUMBER.fullmatch(cleaned)
    if match is None:
        cleaned = cleaned.translate(_GROUPING)
        match = _NUMBER.fullmatch(cleaned)
        if match is None:
            raise ValueError(f"{text!r} is not a number")
    if match.lastindex is None:
        return int(cleaned)
    value = float(cleaned)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is out of range")
    return value


def json_cell(value: Any) -> Cell:
    """Keep JSON scalars as they are; nested objects and arrays become JSON text.

    A column holds scalars only, so structure (a GeoJSON location, an address)
    is carried as compact JSON that a later stage can decode if it needs to.
    """
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return value


def iso_time_us(value: Any) -> int | None:
    """UTC epoch microseconds of an ISO 8601 date-time WITH offset or Z, else None.

    Naive local times are not converted here: the city's time zone and the DST
    rules are applied once, in normalise.
    """
    if not isinstance(value, str) or len(value) < 16 or value[10:11] not in ("T", "t", " "):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return (moment - _EPOCH) // _MICROSECOND


def json_error(exc: ValueError) -> tuple[str, str]:
    """(message quoting nothing of the input, detail) of a JSON syntax error.

    ``JSONDecodeError.msg`` is one of the json module's fixed phrases ("Expecting
    ',' delimiter"); a decoding error says where, not which bytes.
    """
    if isinstance(exc, json.JSONDecodeError):
        where = f"line {exc.lineno} column {exc.colno}" if exc.lineno > 1 else f"column {exc.colno}"
        return f"not valid JSON: {exc.msg} at {where}", f"not valid JSON: {exc}"
    if isinstance(exc, UnicodeDecodeError):
        return f"not valid UTF-8 at byte {exc.start}", f"not valid JSON: {exc}"
    return "not valid JSON", f"not valid JSON: {exc}"
