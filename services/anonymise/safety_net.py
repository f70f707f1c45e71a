"""The safety net: personal data hidden in values a policy keeps.

A policy says which fields are measures; a city system may still put an e-mail
in a status label or a plate in a comment field named like a code. Every kept
string value is scanned for:

- ``email``: addresses (``jean.dupont@example.fr``);
- ``phone``: French numbers, ``06 12 34 56 78``, ``06.12.34.56.78``,
  ``0612345678``, ``+33 6 12 34 56 78``, ``+33 (0)6 ...``, ``0033 6 ...`` (not
  the decimals of a number: ``45.0512477167`` is a latitude);
- ``plate``: licence plates, SIV ``AB-123-CD`` (also ``AB 123 CD``, ``AB123CD``)
  and the old FNI ``1234 AB 56`` (department 01-95, 2A/2B, 971-976);
- ``iban``: IBANs whose mod-97 check holds (grouped by four or not);
- ``nir``: French social security numbers whose key holds;
- ``card``: payment card numbers written in four groups of four whose Luhn check holds.

Values are scanned column by column, on distinct values only, in two steps:
their *shapes* (digits to 9, letters to A/a) go through one pre-filter
regex, so a column of 144 register readings or timestamps (one or two shapes)
costs one short regex pass; only values of a suspect shape meet the exact
detectors (with their checksums). A value in which any detector finds
something is removed whole (what surrounds an e-mail is often a name) and
counted as an incident of that detector.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Sequence

_SEPARATOR = "\x00"  # joins the values of a column; no detector matches it

_EMAIL = re.compile(
    r"[\w.!#$%&'*+/=?^`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
)
_PHONE = re.compile(
    r"(?<![\w+])(?<!\d[.,])(?:(?:\+|00)33[ .-]?(?:\(0\)[ .-]?)?|0)[1-9](?:[ .-]?\d{2}){4}(?!\d)"
)
_SIV = "[A-HJ-NP-TV-Z]"
_PLATE = re.compile(
    rf"(?<![A-Za-z0-9]){_SIV}{{2}}-?\d{{3}}-?{_SIV}{{2}}(?![A-Za-z0-9])"
    rf"|(?<![A-Za-z0-9]){_SIV}{{2}} \d{{3}} {_SIV}{{2}}(?![A-Za-z0-9])"
    r"|(?<![A-Za-z0-9])[a-hj-np-tv-z]{2}-\d{3}-[a-hj-np-tv-z]{2}(?![A-Za-z0-9])"
    r"|(?<![\w])\d{1,4}[ -][A-Z]{1,3}[ -](?:0[1-9]|[1-8]\d|9[0-5]|2[AB]|97[1-6])(?![\w])"
)
_IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])"
)
_NIR = re.compile(
    r"(?<![\w])[12] ?\d{2} ?(?:0[1-9]|1[0-2]|[2-9]\d) ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}(?![\w])"
)
_CARD = re.compile(r"(?<!\d)\d{4}(?:[ -]\d{4}){3}(?!\d)")


def _iban_ok(text: str) -> bool:
    compact = text.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    digits = "".join(str(int(c, 36)) for c in moved)
    return int(digits) % 97 == 1


def _nir_ok(text: str) -> bool:
    compact = text.replace(" ", "")
    body, key = compact[:13], compact[13:]
    body = body.replace("2A", "19").replace("2B", "18")
    return body.isdigit() and 97 - int(body) % 97 == int(key)


def _luhn_ok(text: str) -> bool:
    digits = [int(c) for c in text if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


DETECTORS: tuple[tuple[str, re.Pattern[str], object], ...] = (
    ("email", _EMAIL, None),
    ("phone", _PHONE, None),
    ("plate", _PLATE, None),
    ("iban", _IBAN, _iban_ok),
    ("nir", _NIR, _nir_ok),
    ("card", _CARD, _luhn_ok),
)
NAMES = tuple(name for name, _, _ in DETECTORS)


# -- the shape pre-filter ----------------------------------------------------------------
# A value's shape maps the digits 1-9 to 9 (0 stays 0: phone numbers start with it)
# and ASCII letters to A or a: 144 readings of a register or 144 timestamps of a
# day have a handful of shapes. SUSPECT is each detector rewritten over shapes
# (\d becomes [09], [1-9] becomes 9, letter classes A or a), so any exact match
# has a suspect shape and only values of suspect shapes meet the exact detectors
# (tests/unit/test_anonymise_safety_net.py checks that it never misses).
_SHAPE = str.maketrans(
    {
        **dict.fromkeys("123456789", "9"),
        **dict.fromkeys("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "A"),
        **dict.fromkeys("abcdefghijklmnopqrstuvwxyz", "a"),
    }
)
_D = "[09]"
_SUSPECT = re.compile(
    r"@"
    rf"|(?<![\w+])(?<!{_D}[.,])(?:(?:\+|00)99[ .-]?(?:\(0\)[ .-]?)?|0)9"
    rf"(?:[ .-]?{_D}{{2}}){{4}}(?!{_D})"
    rf"|(?<![A-Za-z0-9])AA-?{_D}{{3}}-?AA(?![A-Za-z0-9])"
    rf"|(?<![A-Za-z0-9])AA {_D}{{3}} AA(?![A-Za-z0-9])"
    rf"|(?<![A-Za-z0-9])aa-{_D}{{3}}-aa(?![A-Za-z0-9])"
    rf"|(?<![\w]){_D}{{1,4}}[ -]A{{1,3}}[ -](?:09|9{_D}|9A|999)(?![\w])"
    rf"|(?<![A-Za-z0-9])AA{_D}{{2}}(?: ?[A09]{{4}}){{2,7}}(?: ?[A09]{{1,3}})?(?![A-Za-z0-9])"
    rf"|(?<![\w])9 ?{_D}{{2}} ?(?:09|9{_D}) ?(?:{_D}{{2}}|9A)"
    rf" ?{_D}{{3}} ?{_D}{{3}} ?{_D}{{2}}(?![\w])"
    rf"|(?<!{_D}){_D}{{4}}(?:[ -]{_D}{{4}}){{3}}(?!{_D})"
)
_PREFILTER = (("suspect", _SUSPECT, None),)
_DIGIT_RUN_LENGTHS = frozenset((10, 13, 15))


def _hits(values: Sequence[str], detectors: Sequence[tuple]) -> dict[str, set[int]]:
    """For each detector, the indexes of ``values`` in which it found something."""
    blob = _SEPARATOR.join(values)
    starts: list[int] = []
    offset = 0
    for value in values:
        starts.append(offset)
        offset += len(value) + 1
    found: dict[str, set[int]] = {}
    for name, pattern, check in detectors:
        for match in pattern.finditer(blob):
            if check is not None and not check(match.group()):
                continue
            found.setdefault(name, set()).add(bisect_right(starts, match.start()) - 1)
    return found


def _shapes(values: list[str]) -> list[str]:
    blob = _SEPARATOR.join(values)
    if blob.count(_SEPARATOR) == len(values) - 1:
        return blob.translate(_SHAPE).split(_SEPARATOR)
    return [value.translate(_SHAPE) for value in values]  # a value holds the separator


def find(text: str) -> set[str]:
    """The detectors that find personal data in one text (no pre-filter)."""
    return set(_hits([text], DETECTORS)) if text else set()


_VERDICTS: dict[str, bool] = {}  # shape -> suspect; shapes recur from message to message
_VERDICTS_MAX = 50_000
_CACHED_SHAPE_CHARS = 64


def suspects(values: list[str]) -> list[str]:
    """The values whose shape some detector could match."""
    shapes = _shapes(values)
    verdict: dict[str, bool] = {}
    unknown: list[str] = []
    for shape in set(shapes):
        known = _VERDICTS.get(shape)
        if known is None:
            unknown.append(shape)
        else:
            verdict[shape] = known
    if unknown:
        flagged = _hits(unknown, _PREFILTER).get("suspect", set())
        if len(_VERDICTS) > _VERDICTS_MAX:
            _VERDICTS.clear()
        for i, shape in enumerate(unknown):
            verdict[shape] = i in flagged
            if len(shape) <= _CACHED_SHAPE_CHARS:
                _VERDICTS[shape] = verdict[shape]
    if not any(verdict.values()):
        return []
    return [value for value, shape in zip(values, shapes, strict=True) if verdict[shape]]


def scan_values(
    values: Sequence[str], missing: Iterable[int] = ()
) -> tuple[list[int], dict[str, int]]:
    """Positions whose value holds personal data, and the count per detector.

    ``values`` is a string column's array; ``missing`` positions are skipped.
    """
    unique = set(values)  # placeholders at missing positions too: scanning them is harmless
    unique.discard("")
    if not unique:
        return [], {}
    distinct = list(unique)
    if "".join(distinct).isdigit():
        # Registers, codes, counts: only a whole phone number (10 digits, 13 with
        # 0033) or social security number (15) can hide in a run of digits.
        candidates = [v for v in distinct if len(v) in _DIGIT_RUN_LENGTHS]
    else:
        candidates = suspects(distinct)
    if not candidates:
        return [], {}
    hits = _hits(candidates, DETECTORS)
    if not hits:
        return [], {}
    flagged: dict[str, set[str]] = {}
    for name, indexes in hits.items():
        for index in indexes:
            flagged.setdefault(candidates[index], set()).add(name)
    absent = set(missing)
    positions: list[int] = []
    counts: dict[str, int] = {}
    for i, value in enumerate(values):
        names = flagged.get(value)
        if names is None or i in absent:
            continue
        positions.append(i)
        for name in names:
            counts[name] = counts.get(name, 0) + 1
    return positions, counts
