"""The city and source of a batch message, in its Kafka headers.

A stage may have nothing to do with a whole message because of where it comes from
(publish's republisher: an internal source goes to no partner). Decoding a message to
read two of its fields cost the republisher a decode of every observations.v2 message
the sink decodes too. The writer names them in headers; a reader may pass over a
message from them alone (:meth:`services.runtime.stage.Stage.passes_over`).

Headers only ever let a reader do *less*: a message without them, or with headers it
cannot read, is decoded and decided from its own fields, as before; a reader never
sends a record anywhere because of a header.
"""

from __future__ import annotations

from collections.abc import Sequence

CITY = "citeplus-city"
SOURCE = "citeplus-source"

Headers = Sequence[tuple[str, bytes | None]]


def source_headers(city: str, source: str) -> tuple[tuple[str, bytes], ...]:
    """The headers naming a message's city and source."""
    return ((CITY, city.encode()), (SOURCE, source.encode()))


def source_of(headers: Headers | None) -> tuple[str, str] | None:
    """(city, source) named by ``headers``; None when they do not name both, once each,
    in UTF-8 (the message is then decided from its fields)."""
    if not headers:
        return None
    found: dict[str, list[bytes | None]] = {}
    for name, value in headers:
        found.setdefault(name, []).append(value)
    city, source = found.get(CITY), found.get(SOURCE)
    if city is None or source is None or len(city) != 1 or len(source) != 1:
        return None
    try:
        return city[0].decode(), source[0].decode()  # type: ignore[union-attr]
    except (AttributeError, UnicodeDecodeError):
        return None
