"""The JSON-LD @context of Cité+ and content negotiation (``Accept``).

Served locally at :data:`CONTEXT_PATH`: nothing is fetched from the network. Terms of
Smart Data Models expand under ``https://smartdatamodels.org/`` (its ``@vocab``), Cité+
terms under ``https://citeplus.eu/ns/``; the ETSI core context is referenced by URL.
``application/json`` answers name the context in a ``Link`` header, ``application/ld+json``
answers carry it in the body (``@context``), any other ``Accept`` is a 406.
"""

from __future__ import annotations

import re

from aiohttp import web

from services.api.ngsi.problems import NgsiError

CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
CONTEXT_PATH = "/ngsi-ld/v1/jsonldContexts/citeplus.jsonld"
CITEPLUS = "https://citeplus.eu/ns/"
CITEPLUS_TERMS = (
    "CitePlusEnergyAggregate",
    "energy_kwh",
    "meter_count",
    "peak_kw",
    "suppressed",
    "suppressionReason",
    "windowStart",
    "zone",
    "carrier",
    "sector",
    "granularity",
)
# A Host header as RFC 9110 allows it: a name (RFC 3986 unreserved characters: compose
# service names carry "_"), an IPv4 or a bracketed IPv6 address, an optional port.
# Anything else is not echoed into the answer (see context_url).
_HOST = re.compile(r"^(?:[A-Za-z0-9._~-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::([0-9]{1,5}))?$")
JSON = "application/json"
LD_JSON = "application/ld+json"


def context_document() -> dict:
    terms: dict[str, str] = {"@vocab": "https://smartdatamodels.org/"}
    terms.update({term: CITEPLUS + term for term in CITEPLUS_TERMS})
    return {"@context": [terms, CORE_CONTEXT]}


def context_url(request: web.Request) -> str:
    """The context's URL on the host the client asked: absolute, as NGSI-LD clients
    expect, when the Host header is a host; else only its path (a relative reference).
    A Host is the client's to choose: echoed as it came, quotes or commas in it would
    add parameters or links to a cacheable answer, and a port yarl cannot parse made
    the request fail with a 500."""
    if not valid_host(request.host or ""):
        return CONTEXT_PATH
    return str(request.url.with_path(CONTEXT_PATH).with_query(None))


def valid_host(host: str) -> bool:
    """A Host header that names a host (and a port that exists): safe to echo."""
    found = _HOST.match(host)
    return found is not None and int(found.group(1) or 0) <= 65535


def link_header(request: web.Request) -> str:
    return (
        f'<{context_url(request)}>; rel="http://www.w3.org/ns/json-ld#context"; '
        f'type="application/ld+json"'
    )


def negotiate(accept: str | None) -> str:
    """``application/json`` or ``application/ld+json`` by the client's preference
    (q-values; a tie goes to JSON); 406 when it accepts neither."""
    if not accept or not accept.strip():
        return JSON
    best, best_q = None, 0.0
    for part in accept.split(",")[:50]:
        media, *params = (p.strip() for p in part.split(";"))
        q = _quality(params)
        choice = {
            "application/ld+json": LD_JSON,
            "application/json": JSON,
            "application/*": JSON,
            "*/*": JSON,
        }.get(media.lower())
        if choice and q > 0 and (q > best_q or (q == best_q and choice == JSON)):
            best, best_q = choice, q
    if best is None:
        raise NgsiError(
            "NotAcceptable",
            f"Accept {accept[:80]!r}: this API answers application/json or application/ld+json",
        )
    return best


def _quality(params: list[str]) -> float:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip() == "q":
            try:
                return max(0.0, min(1.0, float(value)))
            except ValueError:
                return 0.0
    return 1.0
