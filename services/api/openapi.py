"""The OpenAPI 3.1 document of the common API, served at ``/openapi.json``.

Written from tables, not by hand per path: each operation names the parameters it
takes (declared once in :data:`PARAMETERS`, with NGSI-LD's names and meanings) and
every operation gets the same refusals of the service shell (401, 414, 429, 431,
500), so the document and the middlewares cannot drift apart. It imports nothing
of the routes, so it describes them even in a build without them (the documentation
page then shows what the API will answer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.api import openapi_subscriptions

NGSI_LD = "ETSI GS CIM 009 V1.8.1"
PREFIX = "/ngsi-ld/v1"
JSON_TYPES = ("application/json", "application/ld+json")


def _query(name: str, description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": schema, **extra}


def _path(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1, "maxLength": 512},
    }


# Bounded so that a request built from the document stays within the HTTP parser's
# ceiling (64 KiB) even percent-encoded: anything longer than api.max_url_bytes is a
# documented 414 ProblemDetails, never the parser's bare 400.
TEXT = {"type": "string", "minLength": 1, "maxLength": 256}
QUERY_TEXT = {"type": "string", "minLength": 1, "maxLength": 1024}
PARAMETERS: dict[str, dict[str, Any]] = {
    "type": _query("type", "Entity types, comma-separated (e.g. AirQualityObserved)", TEXT),
    "id": _query("id", "Entity ids (urn:ngsi-ld:<Type>:<city>:<key>), comma-separated", TEXT),
    "idPattern": _query("idPattern", "A regular expression the entity ids match", TEXT),
    "attrs": _query("attrs", "Only these attributes, comma-separated", TEXT),
    "q": _query("q", "A query on attribute values (NGSI-LD query language)", QUERY_TEXT),
    "georel": _query(
        "georel",
        "Geo relation: near;maxDistance==<m>, near;minDistance==<m>, within, intersects",
        TEXT,
    ),
    "geometry": _query("geometry", "Geometry of the geo query", {"enum": ["Point", "Polygon"]}),
    "coordinates": _query("coordinates", "GeoJSON coordinates of the geometry (JSON)", TEXT),
    "geoproperty": _query("geoproperty", "The geo-property queried (default location)", TEXT),
    "limit": _query(
        "limit", "Entities per page", {"type": "integer", "minimum": 0, "maximum": 1000}
    ),
    "temporalLimit": _query(
        "limit",
        "Temporal entities per page (each carries its series)",
        {"type": "integer", "minimum": 0, "maximum": 100},
    ),
    "offset": _query("offset", "Entities skipped (paging)", {"type": "integer", "minimum": 0}),
    "count": _query("count", "Give the total in NGSILD-Results-Count", {"type": "boolean"}),
    "options": _query(
        "options",
        "Representation: keyValues, concise, normalized; temporalValues, aggregatedValues",
        TEXT,
    ),
    "format": _query("format", "Representation (V1.8): simplified, concise, normalized", TEXT),
    "details": _query("details", "Full descriptions instead of a list", {"type": "boolean"}),
    "timerel": _query("timerel", "Temporal relation", {"enum": ["before", "after", "between"]}),
    "timeAt": _query("timeAt", "Instant of the temporal relation (ISO 8601, UTC)", TEXT),
    "endTimeAt": _query("endTimeAt", "End instant, with timerel=between (ISO 8601)", TEXT),
    "lastN": _query(
        "lastN",
        "Only the last N instances of each attribute",
        {"type": "integer", "minimum": 1, "maximum": 10000},
    ),
    "timeproperty": _query(
        "timeproperty", "The time property of timerel (default observedAt)", TEXT
    ),
    "aggrMethods": _query("aggrMethods", "Aggregation: sum, avg, min, max (comma-separated)", TEXT),
    "aggrPeriodDuration": _query(
        "aggrPeriodDuration", "Aggregation period, ISO 8601 duration (e.g. PT1H)", TEXT
    ),
    "entityId": _path("entityId", "The entity id (urn:ngsi-ld:<Type>:<city>:<key>)"),
    "entityType": _path("entityType", "The entity type (short name or IRI)"),
    "attrId": _path("attrId", "The attribute name (short name or IRI)"),
}
QUERY = ("type", "id", "idPattern", "attrs", "q", "georel", "geometry", "coordinates")
PAGING = ("geoproperty", "limit", "offset", "count", "options", "format")
TEMPORAL_PAGING = ("geoproperty", "temporalLimit", "offset", "count", "options", "format")
TEMPORAL = (
    "timerel",
    "timeAt",
    "endTimeAt",
    "timeproperty",
    "lastN",
    "aggrMethods",
    "aggrPeriodDuration",
)
# The JSON-LD @context the answers name (served by the NGSI-LD routes).
CONTEXT_PATH = f"{PREFIX}/jsonldContexts/citeplus.jsonld"


@dataclass(frozen=True)
class Operation:
    """One GET operation: where, what it answers, which parameters it takes."""

    path: str
    operation_id: str
    summary: str
    schema: str  # a components.schemas name for the 200 answer
    parameters: tuple[str, ...] = ()
    tag: str = "NGSI-LD"
    found: bool = False  # a path naming one resource: 404 when it does not exist
    media: tuple[str, ...] = JSON_TYPES


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        f"{PREFIX}/entities",
        "queryEntities",
        "Entities of every city of the federation (open data; a partner key adds what is "
        "shared with that partner)",
        "EntityList",
        QUERY + PAGING,
    ),
    Operation(
        f"{PREFIX}/entities/{{entityId}}",
        "retrieveEntity",
        "One entity by its id",
        "Entity",
        ("entityId", "type", "attrs", "options", "format"),
        found=True,
    ),
    Operation(f"{PREFIX}/types", "retrieveEntityTypes", "The entity types", "Types", ("details",)),
    Operation(
        f"{PREFIX}/types/{{entityType}}",
        "retrieveEntityTypeInfo",
        "One entity type: its attributes and entity count",
        "Description",
        ("entityType",),
        found=True,
    ),
    Operation(
        CONTEXT_PATH,
        "getContext",
        "The JSON-LD @context the answers name (Smart Data Models terms, Cité+ types)",
        "Context",
        media=("application/ld+json", "application/json"),
    ),
    Operation(
        f"{PREFIX}/attributes", "retrieveAttrTypes", "The attribute names", "Types", ("details",)
    ),
    Operation(
        f"{PREFIX}/attributes/{{attrId}}",
        "retrieveAttrTypeInfo",
        "One attribute: the types that carry it",
        "Description",
        ("attrId",),
        found=True,
    ),
    Operation(
        f"{PREFIX}/temporal/entities",
        "queryTemporalEntities",
        "Temporal values of entities (temporal or aggregated representation)",
        "EntityList",
        QUERY + TEMPORAL + TEMPORAL_PAGING,
    ),
    Operation(
        f"{PREFIX}/temporal/entities/{{entityId}}",
        "retrieveTemporalEntity",
        "Temporal values of one entity",
        "Entity",
        ("entityId", "attrs", *TEMPORAL, "options", "format"),
        found=True,
    ),
)

PROBLEM = {
    "type": "object",
    "required": ["type", "title"],
    "properties": {
        "type": {"type": "string", "description": "ETSI NGSI-LD error type URI (or urn:citeplus)"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "What went wrong and what to do"},
    },
}
ENTITY = {
    "type": "object",
    "required": ["id", "type"],
    "description": "An NGSI-LD entity (normalized, concise or keyValues representation; "
    "temporal routes give attribute instances as arrays)",
    "properties": {
        "id": {"type": "string"},
        "type": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "@context": {},
    },
    "additionalProperties": True,
}
SCHEMAS: dict[str, Any] = {
    "ProblemDetails": PROBLEM,
    "Entity": ENTITY,
    "EntityList": {"type": "array", "items": {"$ref": "#/components/schemas/Entity"}},
    "Types": {
        "description": "A list (EntityTypeList / AttributeList), or full descriptions with "
        "details=true",
        "anyOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}],
    },
    "Description": {"type": "object", "required": ["id", "type"], "additionalProperties": True},
    "OpenApi": {"type": "object", "required": ["openapi", "paths"]},
    "Context": {"type": "object", "required": ["@context"]},
}
HEADERS: dict[str, Any] = {
    "Link": {
        "description": "The @context of an application/json answer (rel=http://www.w3.org/ns/"
        "json-ld#context)",
        "schema": {"type": "string"},
    },
    "NGSILD-Results-Count": {
        "description": "Total number of matching entities (with count=true)",
        "schema": {"type": "integer"},
    },
    "Citeplus-Peers": {
        "description": "Each node asked and its outcome (<node>=<outcome>, comma-separated, "
        "e.g. lyon=answered, paris=timeout): a partial answer names the nodes missing",
        "schema": {"type": "string"},
    },
    "ETag": {"description": "Strong validator of the body", "schema": {"type": "string"}},
    "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}},
}


PROBLEM_REF = {"$ref": "#/components/schemas/ProblemDetails"}


def _problem(description: str, headers: tuple[str, ...] = ()) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": PROBLEM_REF}},
    }
    if headers:
        answer["headers"] = {name: {"$ref": f"#/components/headers/{name}"} for name in headers}
    return answer


RESPONSES: dict[str, Any] = {
    "NotModified": {
        "description": "The entity tag of If-None-Match still matches: keep your copy",
        "headers": {"ETag": {"$ref": "#/components/headers/ETag"}},
    },
    "BadRequest": _problem("A parameter is malformed (BadRequestData, InvalidRequest)"),
    "Unauthorized": _problem(
        "The key sent is not valid on this node (never served as anonymous instead)"
    ),
    "TooManyResults": _problem("The query would answer too much; narrow it or page"),
    "NotFound": _problem("No such resource (ResourceNotFound)"),
    "NotAcceptable": _problem("The Accept header asks for a type this API does not give"),
    "NotSupported": _problem("A parameter this API does not support (OperationNotSupported)"),
    "NodesUnavailable": _problem(
        "No node of the federation could answer; Citeplus-Peers names each one's outcome",
        ("Citeplus-Peers",),
    ),
    "UriTooLong": _problem("The request target is longer than the node accepts"),
    "TooManyRequests": _problem("Over the caller's quota", ("Retry-After",)),
    "HeadersTooLarge": _problem("The request headers are larger than the node accepts"),
    "InternalError": _problem("An unexpected error, logged by the node under an incident id"),
}
SHELL_REFUSALS = {
    "401": "Unauthorized",
    "414": "UriTooLong",
    "429": "TooManyRequests",
    "431": "HeadersTooLarge",
    "500": "InternalError",
}
SECURITY_SCHEMES = {
    "bearerKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "Authorization: Bearer <key_id>.<secret> (citeplus api keys create)",
    },
    "apiKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "The same key in X-API-Key, for clients that cannot set Authorization",
    },
}


def _ok(schema: str, headers: tuple[str, ...], media: tuple[str, ...]) -> dict[str, Any]:
    ref = {"schema": {"$ref": f"#/components/schemas/{schema}"}}
    return {
        "description": "The answer",
        "headers": {name: {"$ref": f"#/components/headers/{name}"} for name in headers},
        "content": {kind: ref for kind in media},
    }


def _refs(codes: dict[str, str]) -> dict[str, Any]:
    return {code: {"$ref": f"#/components/responses/{name}"} for code, name in codes.items()}


def ngsi_operation(op: Operation) -> dict[str, Any]:
    """One NGSI-LD GET of :data:`OPERATIONS` as an OpenAPI operation object."""
    headers = ("Link", "ETag", "Citeplus-Peers")
    if "count" in op.parameters:
        headers += ("NGSILD-Results-Count",)
    codes = {"304": "NotModified", "400": "BadRequest", "406": "NotAcceptable"}
    if op.found:
        codes["404"] = "NotFound"
    if op.parameters:
        codes["422"] = "NotSupported"
        codes["503"] = "NodesUnavailable"
    if "limit" in op.parameters or "temporalLimit" in op.parameters:
        codes["403"] = "TooManyResults"
    return {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": [{"$ref": f"#/components/parameters/{name}"} for name in op.parameters],
        "responses": {
            "200": _ok(op.schema, headers, op.media),
            **_refs({**codes, **SHELL_REFUSALS}),
        },
    }


def _documentation(
    operation_id: str, summary: str, answers: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """A GET of the service's own documents, with the shell's refusals."""
    refusals = _refs({"304": "NotModified", **SHELL_REFUSALS})
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "tags": ["Documentation"],
            **extra,
            "responses": {**answers, **refusals},
        }
    }


def shell_paths() -> dict[str, Any]:
    """The service's own documents: this one, the documentation page and its assets."""
    text = {"schema": {"type": "string"}}
    document = {"schema": {"$ref": "#/components/schemas/OpenApi"}}
    asset = {
        "name": "asset",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "maxLength": 64},
    }
    moved = {"description": "To /docs", "headers": {"Location": {"schema": {"type": "string"}}}}
    return {
        "/": _documentation("getRoot", "Leads to the documentation page", {"302": moved}),
        "/openapi.json": _documentation(
            "getOpenApi",
            "This document",
            {"200": {"description": "OpenAPI 3.1", "content": {"application/json": document}}},
        ),
        "/docs": _documentation(
            "getDocs",
            "The documentation page (this document, rendered in the browser)",
            {"200": {"description": "HTML", "content": {"text/html": text}}},
        ),
        "/docs/{asset}": _documentation(
            "getDocsAsset",
            "A script or style sheet of the documentation page",
            {
                "200": {
                    "description": "The file",
                    "content": {"text/javascript": text, "text/css": text},
                },
                **_refs({"404": "NotFound"}),
            },
            parameters=[asset],
        ),
    }


def openapi_document(server_url: str | None = None) -> dict[str, Any]:
    """The whole document; ``server_url`` (as the caller reached this node) if known."""
    paths = shell_paths()
    for op in OPERATIONS:
        paths[op.path] = {"get": ngsi_operation(op)}
    paths.update(openapi_subscriptions.subscription_paths(SHELL_REFUSALS))
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Cité+ common API",
            "version": "1.0.0",
            "summary": "Every city's open data through one NGSI-LD API",
            "description": f"NGSI-LD consumption ({NGSI_LD}), federated: any node "
            "answers for every city of the federation; read only but for subscriptions, "
            "which push new data to an http(s) endpoint of a key's owner. Without a key: "
            "open data, at a lower rate per client address. With a key (`citeplus api keys "
            "create` on a node): the key's quota and, for a key bound to a partner, what "
            "the cities share with that partner. Errors are NGSI-LD ProblemDetails whose "
            "detail says what to do.",
            "license": {"name": "EUPL-1.2", "identifier": "EUPL-1.2"},
        },
        "tags": [
            {"name": "NGSI-LD", "description": "Entities, types, attributes, temporal values"},
            {"name": "Subscriptions", "description": "Notifications of new data over HTTP"},
            {"name": "Documentation", "description": "This document and its page"},
        ],
        "paths": paths,
        "components": {
            "schemas": {**SCHEMAS, **openapi_subscriptions.SCHEMAS},
            "parameters": PARAMETERS,
            "headers": HEADERS,
            "responses": {**RESPONSES, **openapi_subscriptions.responses()},
            "securitySchemes": SECURITY_SCHEMES,
        },
        "security": [{}, {"bearerKey": []}, {"apiKeyHeader": []}],
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document
