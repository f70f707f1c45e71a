"""What a city file says about its data for catalogues (DCAT-AP, the developer portal).

City level: ``contact:`` (an e-mail address people write to about the data),
``insee:`` (the territory the data covers: a commune's code officiel géographique,
5 characters such as ``69123`` or ``2A004``, or an EPCI's 9-digit SIREN such as
``200046977``) and ``siren:`` (the publishing body's SIREN, 9 digits with its Luhn
key). Source level: ``frequency:``, a code of the EU frequency vocabulary. All are
optional; each given one is checked at start so a typo never reaches a national
portal (docs/api.md, Catalogue).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FREQUENCY_BASE = "http://publications.europa.eu/resource/authority/frequency/"
# The codes of the EU frequency vocabulary a city may declare (the ones that make
# sense for data streams and their releases).
FREQUENCIES = (
    "CONT",
    "UPDATE_CONT",
    "1MIN",
    "5MIN",
    "10MIN",
    "15MIN",
    "30MIN",
    "HOURLY",
    "DAILY",
    "WEEKLY",
    "MONTHLY",
    "QUARTERLY",
    "ANNUAL",
    "IRREG",
    "UNKNOWN",
)
_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_COMMUNE = re.compile(r"^(\d{2}|2A|2B)\d{3}$")
_SIREN = re.compile(r"^\d{9}$")


@dataclass(frozen=True)
class CityMetadata:
    """The city-level catalogue facts (None: not declared)."""

    contact: str | None = None
    insee: str | None = None
    siren: str | None = None


def luhn_ok(digits: str) -> bool:
    """SIREN numbers carry a Luhn key: a mistyped digit is caught here."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def check_contact(value: object) -> str | None:
    """The problem with a ``contact:`` value, or None when it is a usable address."""
    if not isinstance(value, str) or not _EMAIL.match(value):
        return f"expected an e-mail address such as opendata@lyon.fr, got {value!r}"
    return None


def check_insee(value: object) -> str | None:
    """The problem with an ``insee:`` value (a commune code or an EPCI SIREN)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"write the code as a quoted string ({str(value)!r} loses a leading zero)"
    if isinstance(value, str) and _COMMUNE.match(value):
        return None
    if isinstance(value, str) and _SIREN.match(value):
        return None if luhn_ok(value) else f"{value!r} is not a valid SIREN (its key digit)"
    return (
        "expected a commune's INSEE code (5 characters, e.g. '69123', '06088') or an "
        f"EPCI's SIREN (9 digits, e.g. '200046977'), got {value!r}"
    )


def check_siren(value: object) -> str | None:
    if isinstance(value, str) and _SIREN.match(value) and luhn_ok(value):
        return None
    return f"expected a SIREN, 9 digits as a quoted string with a valid key, got {value!r}"


def check_frequency(value: object) -> str | None:
    if value in FREQUENCIES:
        return None
    return (
        f"{value!r} is not a code of the EU frequency vocabulary this node takes; "
        f"use one of {', '.join(FREQUENCIES)}"
    )


def is_epci(insee: str) -> bool:
    """An EPCI is named by its SIREN (9 digits); a commune by its 5-character code."""
    return len(insee) == 9
