"""NGSI-LD entity ids of Cité+: ``urn:ngsi-ld:<EntityType>:<city>:<entity key>``.

The entity key is percent-encoded whole (``quote(key, safe="")``) so that any key a
source publishes (colons, slashes, spaces, a pseudonym) gives one id and parses back
to the same key; the type and city are codes and never need encoding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

PREFIX = "urn:ngsi-ld:"
TYPE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
CITY_CODE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
MAX_ID_LENGTH = 2048
# The key part as build_id writes it (every byte but unreserved ones escaped), or as
# it reaches us after a client or a URL library unescaped what a path allows (":",
# "@", sub-delimiters): both decode to the same key. A "%" not followed by two hex
# digits, a space or a control character is not an id.
ENCODED_KEY = re.compile(r"(?:[A-Za-z0-9_.~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})+")


@dataclass(frozen=True)
class EntityId:
    entity_type: str
    city: str
    key: str

    def __str__(self) -> str:
        return build_id(self.entity_type, self.city, self.key)


def build_id(entity_type: str, city: str, key: str) -> str:
    """The NGSI-LD id of one entity (pure; the inverse of :func:`parse_id`)."""
    return f"{PREFIX}{entity_type}:{city}:{quote(key, safe='')}"


def parse_id(value: str) -> EntityId | None:
    """The parts of a Cité+ id, or None when ``value`` is not one (another broker's
    URN, a malformed or over-long string): such an id names no entity here. The key
    is percent-decoded whatever escapes the client kept."""
    if len(value) > MAX_ID_LENGTH or not value.startswith(PREFIX):
        return None
    parts = value[len(PREFIX) :].split(":", 2)
    if len(parts) != 3:
        return None
    entity_type, city, encoded = parts
    if not TYPE_NAME.match(entity_type) or not CITY_CODE.match(city) or not encoded:
        return None
    if not ENCODED_KEY.fullmatch(encoded):
        return None
    try:
        key = unquote(encoded, errors="strict")
    except UnicodeDecodeError:
        return None
    return EntityId(entity_type, city, key)


def is_uri(value: str) -> bool:
    """NGSI-LD ids are URIs: a scheme, a colon, no spaces or controls."""
    return re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s\x00-\x1f\x7f]+", value) is not None
