"""NGSI-LD errors as ProblemDetails (RFC 7807 members type, title, status, detail).

Every client mistake becomes one of these with a detail that says what to do; the
routes raise :class:`NgsiError` and one place turns it into a response. NGSI-LD
(CIM 009 clause 6.3.2) answers errors in ``application/json``; the type URIs are the
ETSI ones. 406 has no ETSI error type: it is named in the same namespace.
"""

from __future__ import annotations

import json

from aiohttp import web

ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
KINDS: dict[str, tuple[int, str]] = {
    "InvalidRequest": (400, "Invalid request"),
    "BadRequestData": (400, "Bad request data"),
    "ResourceNotFound": (404, "Resource not found"),
    "AlreadyExists": (409, "Already exists"),
    "NotAcceptable": (406, "Not acceptable"),
    "OperationNotSupported": (422, "Operation not supported"),
    "TooManyResults": (403, "Too many results"),
    "InternalError": (500, "Internal error"),
}
MAX_DETAIL = 500


class NgsiError(Exception):
    """A request the API answers with a ProblemDetails; ``kind`` is an ETSI error name."""

    def __init__(self, kind: str, detail: str, status: int | None = None):
        if kind not in KINDS:
            raise ValueError(f"unknown NGSI-LD error kind {kind!r}")
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status or KINDS[kind][0]

    def body(self) -> dict[str, object]:
        return {
            "type": ERRORS + self.kind,
            "title": KINDS[self.kind][1],
            "status": self.status,
            "detail": _clip(self.detail),
        }

    def response(self) -> web.Response:
        return web.Response(
            status=self.status,
            text=json.dumps(self.body(), ensure_ascii=False),
            content_type="application/json",
        )


def bad_data(detail: str) -> NgsiError:
    return NgsiError("BadRequestData", detail)


def invalid(detail: str) -> NgsiError:
    return NgsiError("InvalidRequest", detail)


def not_found(detail: str) -> NgsiError:
    return NgsiError("ResourceNotFound", detail)


def shown(value: str, limit: int = 60) -> str:
    """A client's value quoted back in a detail, cut so a huge input stays a short error."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _clip(detail: str) -> str:
    return detail if len(detail) <= MAX_DETAIL else detail[: MAX_DETAIL - 3] + "..."
