"""The OpenAPI 3 document of the ingest HTTP API, served at ``/openapi.json``.

Written by hand beside the handlers (http_api.py) it describes, and checked
against them by a fuzzer reading it (tests/integration/test_ingest_openapi.py):
every answer of a live node must match the schema of its status. It names no
city or source: the catalogue itself needs a token.
"""

from __future__ import annotations

from typing import Any

from services.ingest.body import ACCEPTED_ENCODINGS
from services.ingest.limits import MAX_ECHO_CHARS

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "What went wrong and what to do."},
        "retry_after_s": {"type": "number", "minimum": 0},
        "retry_after": {"type": "integer", "minimum": 0},
        "retry": {"type": "boolean", "description": "true: nothing was kept, send it again"},
        "limit": {"type": "integer"},
        "accepted": {"type": "array", "items": {"type": "string"}},
        "entity": {"type": "string", "maxLength": MAX_ECHO_CHARS + 40},
        "rows": {"type": "integer"},
        "size": {"type": "integer"},
    },
}

_REJECTION = {
    "type": "object",
    "required": ["position", "reason", "message", "fields"],
    "properties": {
        "position": {"type": ["string", "null"], "description": "e.g. 'line 5'"},
        "reason": {"type": "string", "description": "a short code: bad-json, bad-number..."},
        "message": {"type": "string"},
        "fields": {"type": "array", "items": {"type": "string"}},
    },
}

_RESULT = {
    "type": "object",
    "required": [
        "city",
        "source",
        "lineage_id",
        "accepted",
        "rejected",
        "entities",
        "errors",
        "errors_truncated",
    ],
    "properties": {
        "city": {"type": "string"},
        "source": {"type": "string"},
        "lineage_id": {"type": "string", "description": "the batch, in every record and letter"},
        "accepted": {"type": "integer", "minimum": 0},
        "rejected": {"type": "integer", "minimum": 0},
        "entities": {"type": "integer", "minimum": 0},
        "skipped_partial_frames": {"type": "integer", "minimum": 0},
        "errors": {
            "type": "array",
            "maxItems": 100,
            "items": {"$ref": "#/components/schemas/Rejection"},
        },
        "errors_truncated": {"type": "boolean"},
    },
}

_CATALOGUE = {
    "type": "object",
    "additionalProperties": {
        "type": "object",
        "required": ["name", "sources"],
        "properties": {
            "name": {"type": "string"},
            "sources": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "format", "dataset", "domain"],
                    "properties": {
                        "id": {"type": "string"},
                        "format": {"type": "string"},
                        "dataset": {"type": "string"},
                        "domain": {"type": "string"},
                    },
                },
            },
        },
    },
}

_HEALTH = {
    "type": "object",
    "required": ["service", "status"],
    "properties": {
        "service": {"const": "ingest"},
        "status": {"type": "string"},
        "commits": {"type": "integer"},
        "failures": {"type": "integer"},
    },
}


def _json(description: str, schema: str, **headers: str) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }
    if headers:
        answer["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in headers.items()
        }
    return answer


def _one_of(description: str, *schemas: str) -> dict[str, Any]:
    refs = [{"$ref": f"#/components/schemas/{name}"} for name in schemas]
    return {
        "description": description,
        "content": {"application/json": {"schema": {"oneOf": refs}}},
    }


_RETRY = "seconds to wait before sending again"
_UNAUTHORIZED = _json(
    "No token or an unknown one (the same answer for every path).",
    "Error",
    **{"WWW-Authenticate": "Bearer"},
)


def _push_responses() -> dict[str, Any]:
    return {
        "200": _json("The batch is committed; some lines may be rejected.", "IngestResult"),
        "400": _json(
            "Empty body, compressed data that is not valid, or an Idempotency-Key that "
            "is not 1 to 255 visible ASCII characters.",
            "Error",
        ),
        "401": _UNAUTHORIZED,
        "403": _json("This token belongs to this node but may not push here.", "Error"),
        "404": _json("No such city or source (told to token holders only).", "Error"),
        "408": _json("The client sent its request too slowly; it was cut.", "Error"),
        "413": _json(
            "The body is larger than the cap once decompressed, or an entity has "
            "more rows than one message can carry. Nothing kept: split the batch.",
            "Error",
        ),
        "415": _json("A Content-Encoding or Content-Type the source cannot take.", "Error"),
        "422": _one_of(
            "Every line was rejected (see errors: an IngestResult), or the "
            "Idempotency-Key was already used for a different body (an Error: new data "
            "needs a new key).",
            "IngestResult",
            "Error",
        ),
        "429": _json(
            "The source is above its rate limit or its requests in progress.",
            "Error",
            **{"Retry-After": _RETRY},
        ),
        "503": _json(
            "Kafka could not commit the batch (nothing kept), or the node is at its "
            "connection or memory bound: send it again after Retry-After.",
            "Error",
            **{"Retry-After": _RETRY},
        ),
    }


def _push_operation() -> dict[str, Any]:
    header = {"in": "header", "required": False, "schema": {"type": "string"}}
    return {
        "operationId": "pushRecords",
        "summary": "Push a batch of one source's records, in the source's declared format.",
        "description": "Answers once Kafka has committed the batch. Rejected lines go to the "
        "dead letters with their reason; the rest of the batch is kept.",
        "security": [{"sourceToken": []}],
        "parameters": [
            {"name": "city", "in": "path", "required": True, "schema": {"type": "string"}},
            {"name": "source", "in": "path", "required": True, "schema": {"type": "string"}},
            {
                **header,
                "name": "Idempotency-Key",
                "description": "Optional, an opaque string such as a UUID, new for each "
                "batch. A retry with the same key gets the first answer and lands nothing new.",
                "schema": {"type": "string"},
            },
            {
                **header,
                "name": "Content-Encoding",
                "description": "How the body is compressed; 415 for any other coding.",
                "schema": {"type": "string", "enum": list(ACCEPTED_ENCODINGS)},
            },
        ],
        "requestBody": {
            "required": True,
            "description": "The source's format (NDJSON, JSON, CSV, NGSI, Linky TIC frames); "
            "a missing or generic Content-Type is accepted.",
            "content": {
                media: {"schema": {"type": "string", "format": "binary"}}
                for media in (
                    "application/x-ndjson",
                    "application/json",
                    "text/csv",
                    "text/plain",
                    "application/octet-stream",
                )
            },
        },
        "responses": _push_responses(),
    }


def _get(operation_id: str, summary: str, answer: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"get": {"operationId": operation_id, "summary": summary, **more, "responses": answer}}


def openapi_document() -> dict[str, Any]:
    """The document (a new dict at each call, so that a caller may change its copy)."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Cité+ ingest",
            "version": "1",
            "description": "City systems and gateways push batches of their sources' "
            "records. Every source pushes with its own bearer token, only to itself.",
        },
        "paths": {
            "/v1/cities/{city}/sources/{source}/records": {"post": _push_operation()},
            "/v1/cities": _get(
                "listSources",
                "The cities and sources of this node (with a source token, unless public).",
                {
                    "200": _json("The catalogue.", "Catalogue"),
                    "401": _UNAUTHORIZED,
                },
                security=[{"sourceToken": []}],
            ),
            "/healthz": _get("health", "Liveness.", {"200": _json("Alive.", "Health")}),
            "/metrics": _get(
                "metrics",
                "Prometheus metrics.",
                {"200": {"description": "Prometheus text format.", "content": {"text/plain": {}}}},
            ),
            "/openapi.json": _get(
                "openapi",
                "This document.",
                {"200": {"description": "OpenAPI 3.", "content": {"application/json": {}}}},
            ),
        },
        "components": {
            "securitySchemes": {"sourceToken": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": _ERROR,
                "Rejection": _REJECTION,
                "IngestResult": _RESULT,
                "Catalogue": _CATALOGUE,
                "Health": _HEALTH,
            },
        },
    }
