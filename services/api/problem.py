"""NGSI-LD ProblemDetails (RFC 7807 with ETSI's error types) for what the service
shell refuses: a bad key, a quota, an oversized request, an unexpected failure.

The NGSI-LD routes use the same body form for their own errors; both say what
the caller should do next in ``detail``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from aiohttp import web

ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
# Refusals NGSI-LD has no type for (a bad key, a quota, an oversized request).
CITEPLUS_ERRORS = "urn:citeplus:errors:"
CITEPLUS_KINDS = frozenset(
    {
        "InvalidKey",
        "KeyRequired",
        "TooManyRequests",
        "TooManySubscriptions",
        "UriTooLong",
        "HeadersTooLarge",
    }
)
PROBLEM_JSON = "application/json"


def problem(
    status: int,
    kind: str,
    title: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """A ProblemDetails answer; ``kind`` is an ETSI error type (BadRequestData,
    ResourceNotFound, ...) or a Cité+ one under the same base."""
    base = CITEPLUS_ERRORS if kind in CITEPLUS_KINDS else ERRORS
    body = {"type": base + kind, "title": title, "status": status, "detail": detail}
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type=PROBLEM_JSON,
        headers=dict(headers or {}),
    )
