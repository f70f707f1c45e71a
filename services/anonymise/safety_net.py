"""The safety net: personal data hidden in values a policy keeps.

A policy says which fields are measures; a city system may still put an e-mail
in a status label, a tenant's name in a comment field named like a code, or a
social security number in a numeric column. Every kept value (string columns,
numeric columns, nested JSON inside values with its keys, attributes, the
entity type) is scanned for two families of detectors.

*Identifiers*, never a place, always removed:

- ``email``: addresses (``jean.dupont@example.fr``);
- ``phone``: French numbers, ``06 12 34 56 78``, ``06.12.34.56.78``,
  ``0612345678``, ``+33 6 12 34 56 78``, ``+33 (0)6 ...``, ``0033 6 ...`` (not
  the decimals of a number: ``45.0512477167`` is a latitude), and ``33612345678``
  (a +33 number written as a number, in text or in a numeric column);
- ``plate``: licence plates, SIV ``AB-123-CD`` (also ``AB 123 CD``, ``AB123CD``)
  and the old FNI ``1234 AB 56`` (department 01-95, 2A/2B, 971-976);
- ``iban``: IBANs whose mod-97 check holds (grouped by four or not);
- ``nir``: French social security numbers whose key holds, as text or number;
- ``card``: payment card numbers written in four groups of four whose Luhn check holds;
- ``ip``: IPv4 (each byte at most 255) and IPv6 addresses (as ``ipaddress`` reads them);
- ``mac``: MAC addresses (``00:1A:2B:3C:4D:5E``, ``00-1a-...``, ``001a.2b3c.4d5e``);
- ``prm``: 14-digit delivery points (PRM/PDL), as text or number, that are not a
  ``YYYYMMDDhhmmss`` time.

*Places and people*, which public infrastructure legitimately carries (a station
at "12 rue Victor Hugo", a counter's position):

- ``name``: a person's name (:mod:`services.anonymise.names`);
- ``address``: a French street address, number + type of way + name
  (``12 bis rue des Lilas``), with its postcode and commune when they follow;
- ``coordinates``: a precise position, a latitude/longitude pair of at least
  four decimals each (about 10 m), as text, WKT or GeoJSON.

What happens to a finding depends on the source (see :class:`Net`): a source
that carries personal data loses every flagged value; a source that declares
none (public infrastructure) loses values with identifiers but keeps places and
people, which are reported in the audit only, and its declared ``places`` fields
are not searched for them at all.

String values are scanned column by column, on distinct values only. For the
identifiers of the first six kinds, the values' *shapes* (digits to 9, letters to
A/a) go through one pre-filter regex, so a column of 144 register readings or
timestamps (one or two shapes) costs one short regex pass; only values of a
suspect shape meet the exact detectors (with their checksums). The other
detectors are one regex pass each over the column's distinct values (names: a
run finder and set lookups). A value in which any detector finds something is
flagged whole (what surrounds an e-mail is often a name) and counted as an
incident of that detector.
"""

from __future__ import annotations

import ipaddress
import re
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from services.anonymise import names

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


_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
# +33 6 12 34 56 78 written as a number (JSON, a spreadsheet): 33612345678.
_PHONE_NUMBER = re.compile(r"(?<![\w.,+])33[1-9]\d{8}(?![\w]|[.,]\d)")
_SHAPED_PHONE_NUMBER = r"(?<![\w.,+])99[09]{9}(?![\w]|[.,][09])"
_H4 = "[0-9A-Fa-f]{1,4}"
_IPV6 = re.compile(  # eight groups, or fewer around "::" (a time 08:10:00 is neither)
    rf"(?<![\w:.])(?:{_H4}(?::{_H4}){{7}}"
    rf"|(?:{_H4}(?::{_H4}){{0,6}})?::(?:{_H4}(?::{_H4}){{0,6}})?)(?:%\w+)?(?![\w:])"
)
_HEX2 = "[0-9A-Fa-f]{2}"
_MAC = re.compile(
    rf"(?<![\w:-]){_HEX2}(?::{_HEX2}){{5}}(?![\w:-])"
    rf"|(?<![\w:-]){_HEX2}(?:-{_HEX2}){{5}}(?![\w:-])"
    r"|(?<![\w.])[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}(?![\w.])"
)
_PRM = re.compile(r"(?<![\w.,/])\d{14}(?![\w/]|[.,]\w)")  # not a file name in a URL
_TIME14 = re.compile(
    r"(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])(?:[01]\d|2[0-3])[0-5]\d[0-5]\d"
)
_COORD = r"-?\d{1,3}\.\d{4,}"
_COORDINATES = re.compile(rf"(?<![\w.]){_COORD}(?:\s*[,;]\s*|\s+){_COORD}(?![\d.])")
_WAYS = (
    "rue|avenue|av|boulevard|bd|bld|place|pl|chemin|ch|allée|allee|impasse|imp|quai|route|rte"
    "|cours|square|sq|passage|rond-point|voie|sentier|cité|cite|résidence|residence"
    "|lotissement|lot|hameau|lieu-dit|faubourg|fg|esplanade|promenade|parvis|traverse"
    "|montée|montee|ruelle|villa|domaine|quartier|chaussée|chaussee|cour|venelle|mail"
)
_ADDRESS = re.compile(
    rf"(?<![\w.,])\d{{1,4}}(?:[ ]?(?:bis|ter|quater|[A-Da-d])\b)?,?[ \t]+(?:{_WAYS})\.?[ \t]+"
    r"(?:(?:d[eu]s?|la|le|les|l'|d'|l’|d’|aux?)[ \t]*)*[^\W\d_]",
    re.IGNORECASE,
)


def _ipv4_ok(text: str) -> bool:
    return all(
        int(part) <= 255 and (part == "0" or not part.startswith("0")) for part in text.split(".")
    )


def _ipv6_ok(text: str) -> bool:
    if sum(1 for group in re.split(r":+", text.split("%", 1)[0]) if group) < 3:
        return False  # "::", "a::b": too short to be told from text
    try:
        ipaddress.IPv6Address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _prm_ok(text: str) -> bool:
    return _TIME14.fullmatch(text) is None


def _coordinates_ok(text: str) -> bool:
    numbers = [float(n) for n in re.findall(_COORD, text)]
    if len(numbers) != 2:
        return False
    a, b = abs(numbers[0]), abs(numbers[1])
    return a <= 180 and b <= 180 and min(a, b) <= 90 and (a, b) != (0.0, 0.0)


def _name_ok(text: str) -> bool:
    return names.run_has_name(text)


# Identifiers: never a place, removed on every source.
IDENTIFIERS: tuple[tuple[str, re.Pattern[str], object], ...] = (
    ("email", _EMAIL, None),
    ("phone", _PHONE, None),
    ("plate", _PLATE, None),
    ("iban", _IBAN, _iban_ok),
    ("nir", _NIR, _nir_ok),
    ("card", _CARD, _luhn_ok),
)
_UNSHAPED_IDENTIFIERS: tuple[tuple[str, re.Pattern[str], object], ...] = (
    ("phone", _PHONE_NUMBER, None),
    ("ip", _IPV4, _ipv4_ok),
    ("ip", _IPV6, _ipv6_ok),
    ("mac", _MAC, None),
    ("prm", _PRM, _prm_ok),
)
# Places and people: what public infrastructure carries too.
PLACES: tuple[tuple[str, re.Pattern[str], object], ...] = (
    ("name", names.RUN, _name_ok),
    ("address", _ADDRESS, None),
    ("coordinates", _COORDINATES, _coordinates_ok),
)
DETECTORS = IDENTIFIERS + _UNSHAPED_IDENTIFIERS + PLACES
NAMES = tuple(dict.fromkeys(name for name, _, _ in DETECTORS))
PLACE_NAMES = frozenset(name for name, _, _ in PLACES)


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
_DIGIT_RUN_LENGTHS = frozenset((10, 11, 13, 14, 15))


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


def find(text: str, *, places: bool = True) -> set[str]:
    """The detectors that find personal data in one text (no pre-filter);
    ``places=False`` leaves out names, addresses and coordinates."""
    if not text:
        return set()
    detectors = IDENTIFIERS + _UNSHAPED_IDENTIFIERS + (PLACES if places else ())
    return set(_hits([text], detectors))


# Every other detector reads the same on shapes (digits stay digits, ASCII letters
# keep their case, other characters stay): on shapes it matches at least where it
# matches the text. Addresses name their type of way and runs of names their
# particles, which shapes hide: a word stands for the way, one to three lower-case
# letters for a particle.
_SHAPED_ADDRESS = (
    r"(?<![\w.,])[09]{1,4}(?:[ ]?[^\W\d_]{1,6}\b)?,?[ \t]+[^\W\d_][\w-]*\.?[ \t]+[^\W\d_]"
)
_SUSPECT_IDENTIFIERS = re.compile(
    "|".join(
        [
            _SUSPECT.pattern,
            _SHAPED_PHONE_NUMBER,
            *(p.pattern for _, p, _ in _UNSHAPED_IDENTIFIERS if p is not _PHONE_NUMBER),
        ]
    )
)
_SUSPECT_PLACES = re.compile(
    "|".join((names.SHAPED_RUN.pattern, _SHAPED_ADDRESS, _COORDINATES.pattern))
)
_VERDICTS: dict[str, tuple[bool, bool]] = {}  # shape -> (identifiers?, places?); shapes recur
_VERDICTS_MAX = 50_000
_CACHED_SHAPE_CHARS = 64


def suspects(values: list[str], places: bool = True) -> list[str]:
    """The values whose shape some detector could match."""
    shapes = _shapes(values)
    verdict: dict[str, tuple[bool, bool]] = {}
    unknown: list[str] = []
    for shape in set(shapes):
        known = _VERDICTS.get(shape)
        if known is None:
            unknown.append(shape)
        else:
            verdict[shape] = known
    if unknown:
        ids = _hits(unknown, (("i", _SUSPECT_IDENTIFIERS, None),)).get("i", set())
        where = _hits(unknown, (("p", _SUSPECT_PLACES, None),)).get("p", set())
        if len(_VERDICTS) > _VERDICTS_MAX:
            _VERDICTS.clear()
        for i, shape in enumerate(unknown):
            verdict[shape] = (i in ids, i in where)
            if len(shape) <= _CACHED_SHAPE_CHARS:
                _VERDICTS[shape] = verdict[shape]
    chosen = {shape for shape, (ids_, where_) in verdict.items() if ids_ or (places and where_)}
    if not chosen:
        return []
    return [value for value, shape in zip(values, shapes, strict=True) if shape in chosen]


def _flag(candidates: list[str], detectors: Sequence[tuple]) -> dict[str, set[str]]:
    """value -> the detectors that found something in it."""
    flagged: dict[str, set[str]] = {}
    if not candidates:
        return flagged
    for name, indexes in _hits(candidates, detectors).items():
        for index in indexes:
            flagged.setdefault(candidates[index], set()).add(name)
    return flagged


def scan(
    values: Sequence[str], missing: Iterable[int] = (), *, places: bool = True
) -> dict[int, set[str]]:
    """Position -> detectors, for the values of a string column holding personal data.

    ``missing`` positions are skipped; ``places=False`` leaves out names, addresses
    and coordinates (a public source's declared place fields).
    """
    unique = set(values)  # placeholders at missing positions too: scanning them is harmless
    unique.discard("")
    if not unique:
        return {}
    distinct = list(unique)
    if "".join(distinct).isdigit():
        # Registers, codes, counts: only a whole phone number (10 digits, 11 for
        # 33..., 13 with 0033), delivery point (14) or social security number (15)
        # can hide in a run of digits.
        candidates = [v for v in distinct if len(v) in _DIGIT_RUN_LENGTHS]
        flagged = _flag(candidates, IDENTIFIERS + _UNSHAPED_IDENTIFIERS)
    else:
        detectors = IDENTIFIERS + _UNSHAPED_IDENTIFIERS + (PLACES if places else ())
        flagged = _flag(suspects(distinct, places), detectors)
    if not flagged:
        return {}
    absent = set(missing)
    return {
        i: flagged[value] for i, value in enumerate(values) if value in flagged and i not in absent
    }


def scan_values(
    values: Sequence[str], missing: Iterable[int] = (), *, places: bool = True
) -> tuple[list[int], dict[str, int]]:
    """Positions whose value holds personal data, and the count per detector."""
    found = scan(values, missing, places=places)
    return sorted(found), count(found)


def count(found: dict[int, set[str]]) -> dict[str, int]:
    """Values per detector."""
    counts: dict[str, int] = {}
    for names_found in found.values():
        for name in names_found:
            counts[name] = counts.get(name, 0) + 1
    return counts


# -- numbers -----------------------------------------------------------------------------
_NUMBER_MIN = 10**10  # below 11 digits no identifier survives as a number


def _number_detectors(digits: str) -> set[str]:
    if len(digits) == 15 and _NIR.fullmatch(digits) and _nir_ok(digits):
        return {"nir"}
    if len(digits) == 14 and _prm_ok(digits):
        return {"prm"}
    if len(digits) == 11 and digits.startswith("33") and digits[2] != "0":
        return {"phone"}  # +33 6 12 34 56 78 sent as the number 33612345678
    return set()


def scan_numbers(values: Sequence[float | int], missing: Iterable[int] = ()) -> dict[int, set[str]]:
    """Position -> detectors for a numeric column: a social security number, a
    delivery point or an international phone number sent as a JSON number.

    Only whole numbers of 11 digits or more are read as text, so a column of
    readings costs one comparison per value.
    """
    if not values or (max(values) < _NUMBER_MIN and min(values) > -_NUMBER_MIN):
        return {}  # the usual column: one pass in C, no value read as text
    found: dict[int, set[str]] = {}
    verdicts: dict[float | int, set[str]] = {}
    for i, value in enumerate(values):
        if not (value >= _NUMBER_MIN or value <= -_NUMBER_MIN):
            continue
        verdict = verdicts.get(value)
        if verdict is None:
            whole = isinstance(value, int) or (value == value and float(value).is_integer())
            verdict = _number_detectors(str(abs(int(value)))) if whole else set()
            verdicts[value] = verdict
        if verdict:
            found[i] = verdict
    if found and missing:
        for i in missing:
            found.pop(i, None)
    return found


@dataclass(frozen=True)
class Net:
    """How the net treats one source's findings.

    ``personal``: the source carries personal data; every finding is removed.
    Otherwise identifiers are removed, places and people are reported (kept), and
    the ``places`` fields (declared place names and positions) are not searched
    for places and people at all.
    """

    personal: bool = True
    places: frozenset[str] = frozenset()

    def split(self, found: dict[int, set[str]]) -> tuple[list[int], list[int]]:
        """(positions to remove, positions only reported)."""
        if self.personal:
            return sorted(found), []
        removed = sorted(i for i, names_found in found.items() if names_found - PLACE_NAMES)
        gone = set(removed)
        return removed, sorted(i for i in found if i not in gone)

    def searches_places(self, field: str) -> bool:
        return self.personal or field not in self.places
