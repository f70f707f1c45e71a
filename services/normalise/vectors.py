"""Column-wise helpers of normalise's batch fast path: numpy over the
rows of many entities at once, each giving exactly what the per-record code gives
(``transform.py``), so that the fast path can be proven equal to it.

Two things need care to be *exact*, not only close:

* rounding: Python's ``round(x, d)`` is correctly rounded (the double nearest to
  the decimal rounding of ``x``); numpy's ``round`` multiplies by ``10**d`` first,
  which can land a value just across a half. :func:`exact_round` uses numpy and
  hands the few values near a half back to Python's ``round``;
* repeated text (time stamps, unit names, zones): a function of one value is
  computed once per distinct value (:func:`distinct`) with the per-record code
  itself, then spread back over the rows with numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_ARRAYS = {"string": "strings", "double": "doubles", "long": "longs", "boolean": "booleans"}
# Beyond this a double has no fraction left to round at 12 decimals: Python decides.
_EXACT_LIMIT = float(2**51)


def exact_round(values: np.ndarray, decimals: int) -> np.ndarray:
    """``[round(v, decimals) for v in values]`` without a Python call per value.

    ``rint(v * 10**d) / 10**d`` gives Python's answer whenever the product's
    rounding error cannot cross a half (the division of two exact integers is
    correctly rounded, like Python's decimal round trip); the values where it
    could (within one ulp of a half, huge or not finite) are rounded by Python.
    """
    scale = 10.0**decimals
    with np.errstate(over="ignore", invalid="ignore"):  # huge values: Python decides
        scaled = values * scale
        out = np.rint(scaled) / scale
        fraction = np.abs(scaled - np.floor(scaled) - 0.5)
        ulp = np.abs(np.spacing(scaled))
    doubtful = ~(np.abs(scaled) < _EXACT_LIMIT) | ~(fraction > 2 * ulp)
    if doubtful.any():
        for k in np.flatnonzero(doubtful).tolist():
            out[k] = round(float(values[k]), decimals)
    return out


def row_values(column: dict[str, Any]) -> list[Any]:
    """A column's values as Python objects, None where missing (``column_values``)."""
    values = list(column[_ARRAYS[column["kind"]]])
    for i in column.get("missing") or ():
        values[i] = None
    return values


def distinct(column: dict[str, Any]) -> tuple[np.ndarray, list[Any]]:
    """(codes, values): row ``i`` holds ``values[codes[i]]`` (None where missing).

    The rows of a batch of single readings mostly share their time stamp, unit and
    zone. Text is looked up in a dict of its distinct values (``map`` of a dict's
    own method: no Python code per row), numbers by numpy; doubles by their bits,
    so that -0.0 and 0.0 stay two values as they are two texts."""
    kind = column["kind"]
    raw = column[_ARRAYS[kind]]
    if kind in ("string", "boolean"):
        values: list[Any] = list(dict.fromkeys(raw))
        lookup = {value: i for i, value in enumerate(values)}
        codes = np.fromiter(map(lookup.__getitem__, raw), dtype=np.int64, count=len(raw))
    elif kind == "long":
        found, codes = np.unique(np.asarray(raw, dtype=np.int64), return_inverse=True)
        values = found.tolist()
    else:
        doubles = np.asarray(raw, dtype=np.float64)
        _, first, codes = np.unique(doubles.view(np.int64), return_index=True, return_inverse=True)
        values = doubles[first].tolist()
    codes = np.asarray(codes, dtype=np.int64).reshape(-1)
    missing = column.get("missing") or []
    if missing:
        codes[np.asarray(missing, dtype=np.int64)] = len(values)
        values.append(None)
    return codes, values


def numeric(column: dict[str, Any]) -> np.ndarray | None:
    """A numeric column as float64 when every row has a finite value (what the
    per-record ``numbers`` reads without a drop); None: a row is missing, not a
    number or not finite, which the per-record path counts and drops."""
    kind = column["kind"]
    if column.get("missing") or kind == "boolean":
        return None
    if kind == "string":  # text read by float() once per distinct value, as per record
        codes, texts = distinct(column)
        try:
            found = np.asarray([float(text) for text in texts], dtype=np.float64)
        except ValueError:
            return None
        values = found[codes] if len(found) else np.zeros(0)
    else:
        values = np.asarray(column[_ARRAYS[kind]], dtype=np.float64)
    if not np.isfinite(values).all():
        return None
    return values
