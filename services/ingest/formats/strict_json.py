"""JSON as ingest accepts it: no NaN or infinities, no repeated keys, no lone
surrogates, at most ``MAX_DEPTH`` levels of nesting.

Python's ``json`` reads all of these without a word (NaN and ``1e999`` become
floats that spoil every sum; the last of two keys wins; ``"\\ud800"`` becomes a
string no encoder will write; 100,000 nested brackets raise RecursionError), so
a batch could be half-stored or answered 500. Here each is a reason given for
the one line or item that holds it.

Two ways through, for speed: :func:`fast_loads` plus :func:`looks_clean` read a
clean batch with the C decoder and a few scans of the text (bench/parsers.py
gives their cost); anything they cannot vouch for goes to :func:`strict_loads`
and :func:`problem`, which mark every fault and name it (about twice the cost).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 64

# A \uD800-\uDFFF escape: a surrogate, lone or half of a pair (decided later).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# The end of an object key: a quote, optional blanks, a colon.
_KEY_END = re.compile(r'"[ \t\r\n]*:')
_SPACED_KEY_END = re.compile(r'"[ \t\r\n]+:')


class NonFinite:
    """What a NaN, Infinity or overflowing number reads as in the strict decoder."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


class DuplicateKeys(dict):
    """An object that named a key twice (the last value kept, as ``json`` does)."""

    repeated: str = ""


class TooDeep(ValueError):
    """Nesting past what the decoder can recurse into (RecursionError)."""


@dataclass(frozen=True)
class Problem:
    """Why a decoded value is refused: a reason code, a message quoting nothing of
    the input, and a detail that may (raw dead letters only)."""

    reason: str
    message: str
    detail: str


def _refuse_constant(text: str) -> float:
    raise ValueError(f"{text} is not a number JSON allows")


def _finite_float(text: str) -> float:
    """float(), refusing what overflows to an infinity (``1e999``): called for
    numbers with a fraction or exponent only, so integer batches pay nothing."""
    value = float(text)
    if value - value == 0.0:
        return value
    raise ValueError(f"{text[:40]} overflows a double")


def _strict_float(text: str) -> float | NonFinite:
    value = float(text)
    return value if math.isfinite(value) else NonFinite(text[:40])


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) == len(pairs):
        return value
    marked = DuplicateKeys(value)
    seen: set[str] = set()
    marked.repeated = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
    return marked


_FAST = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
_STRICT = json.JSONDecoder(
    parse_constant=NonFinite, parse_float=_strict_float, object_pairs_hook=_pairs
)


def fast_loads(text: str) -> Any:
    """The C decoder refusing NaN/Infinity literals; ValueError (TooDeep included)
    for anything it cannot read. Pair with :func:`looks_clean`."""
    try:
        return _FAST.decode(text)
    except RecursionError as exc:
        raise TooDeep("nested too deep") from exc


def strict_loads(text: str) -> Any:
    """Decode marking every fault in place (NonFinite, DuplicateKeys, lone
    surrogates left in strings) for :func:`problem` to name; ValueError for syntax
    and TooDeep for nesting the decoder cannot recurse into."""
    try:
        return _STRICT.decode(text)
    except RecursionError as exc:
        raise TooDeep("nested too deep") from exc


def looks_clean(text: str, records: list[Any]) -> bool:
    """Whether ``records``, fast-decoded from ``text``, certainly hold no fault.

    The decode itself refused NaN, Infinity and overflowing numbers. The rest is
    read from the text with C-speed string methods (regular expressions without a
    literal prefix cost as much as the decode): no surrogate escape, as many
    colons, or else key ends (``":``), as keys decoded (the text holds at least
    one per key; a repeated key decodes to one, so equal counts mean none; one
    inside a string only makes them differ, and the careful path decides), and
    no nesting deeper than MAX_DEPTH.
    """
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        return False
    top = sum(len(r) for r in records if type(r) is dict)
    marks = text.count(":")  # every key's colon, and those inside strings (times)
    if marks != top:
        spaced = _SPACED_KEY_END.search(text) is not None
        marks = len(_KEY_END.findall(text)) if spaced else text.count('":')
    if marks == top and text.count("[") < MAX_DEPTH - 2:
        # No nested object has a key, so nesting is arrays (and an empty object at
        # the bottom): fewer brackets than the limit in the whole text bound it.
        return True
    keys, deepest = _shape(records)
    return deepest <= MAX_DEPTH and marks == keys


def problem(value: Any) -> Problem | None:
    """The first fault of a strictly decoded value, or None."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list) and depth > MAX_DEPTH:
            return too_deep()
        if isinstance(node, NonFinite):
            return Problem(
                "bad-number",
                "a number is NaN, infinite or too large for a double; send finite numbers "
                "(or null for no value)",
                f"{node.text!r} is not a finite number",
            )
        if isinstance(node, DuplicateKeys):
            return Problem(
                "duplicate-key",
                "an object repeats a key; each key may appear once per object",
                f"key {node.repeated!r} appears twice in one object",
            )
        if isinstance(node, dict):
            for key, item in node.items():
                if not _encodable(key):
                    return lone_surrogate()
                stack.append((item, depth + 1))
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)
        elif isinstance(node, str) and not _encodable(node):
            return lone_surrogate()
    return None


def too_deep() -> Problem:
    message = f"nested deeper than {MAX_DEPTH} levels of objects and arrays"
    return Problem("too-deep", message, message)


def lone_surrogate() -> Problem:
    message = (
        "a string holds a lone UTF-16 surrogate escape (\\ud800-\\udfff without its pair), "
        "which is not text"
    )
    return Problem("bad-unicode", message, message)


def _encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shape(records: list[Any]) -> tuple[int, int]:
    """(keys at every level, deepest level) of decoded records, level by level,
    stopping past MAX_DEPTH. It runs on every batch whose records hold a nested
    value (a GeoJSON location): one comprehension per container, no call per value."""
    keys = 0
    level = [r for r in records if type(r) is dict or type(r) is list]
    depth = 0
    while level and depth <= MAX_DEPTH:
        depth += 1
        below: list[Any] = []
        for node in level:
            if type(node) is dict:
                keys += len(node)
                node = node.values()
            below += [v for v in node if type(v) is dict or type(v) is list]
        level = below
    return keys, depth
