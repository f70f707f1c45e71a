"""The subscription operations of the OpenAPI document (services/api/openapi.py merges
them): ``/ngsi-ld/v1/subscriptions`` and ``/ngsi-ld/v1/subscriptions/{subscriptionId}``.

Kept apart because they are the API's only writes: request bodies, 201/204 answers
and refusals (401 without a key, 403 over the key's quota, 409, 415, 503 when Kafka
cannot confirm a change) that the read-only operations never give.
"""

from __future__ import annotations

from typing import Any

PATH = "/ngsi-ld/v1/subscriptions"
BODY_TYPES = ("application/json", "application/ld+json")
SECONDS = {"type": "number", "minimum": 0}
NAMES = {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 50}

ENDPOINT = {
    "type": "object",
    "required": ["uri"],
    "properties": {
        "uri": {
            "type": "string",
            "format": "uri",
            "description": "http(s) URL notifications are POSTed to; its host must resolve to "
            "public addresses only, unless the node's operator allowed the address "
            "(api.subscriptions.allow_targets)",
        },
        "accept": {"enum": list(BODY_TYPES)},
    },
}
NOTIFICATION = {
    "type": "object",
    "required": ["endpoint"],
    "properties": {
        "attributes": {**NAMES, "description": "Only these attributes in notifications"},
        "format": {"enum": ["normalized", "keyValues", "simplified", "concise"]},
        "endpoint": {"$ref": "#/components/schemas/Endpoint"},
        "status": {"enum": ["ok", "failed"], "readOnly": True},
        "timesSent": {"type": "integer", "readOnly": True},
        "lastNotification": {"type": "string", "format": "date-time", "readOnly": True},
        "lastSuccess": {"type": "string", "format": "date-time", "readOnly": True},
        "lastFailure": {"type": "string", "format": "date-time", "readOnly": True},
        "lastFailureReason": {"type": "string", "readOnly": True},
    },
}
SUBSCRIPTION = {
    "type": "object",
    "required": ["type", "notification"],
    "description": "An NGSI-LD subscription (CIM 009 §5.2.12): entities and/or "
    "watchedAttributes, q, geoQ; on change (throttling) or periodic (timeInterval)",
    "properties": {
        "id": {"type": "string", "description": "A URI; given by the node when left out"},
        "type": {"const": "Subscription"},
        "subscriptionName": {"type": "string"},
        "description": {"type": "string"},
        "entities": {
            "type": "array",
            "minItems": 1,
            "maxItems": 50,
            "items": {
                "type": "object",
                "required": ["type"],
                "properties": {
                    "type": {"type": "string"},
                    "id": {"type": "string"},
                    "idPattern": {"type": "string"},
                },
            },
        },
        "watchedAttributes": NAMES,
        "q": {"type": "string", "description": "NGSI-LD query language, as on /entities"},
        "geoQ": {
            "type": "object",
            "required": ["georel", "geometry", "coordinates"],
            "properties": {
                "georel": {"type": "string"},
                "geometry": {"enum": ["Point", "Polygon"]},
                "coordinates": {},
                "geoproperty": {"type": "string"},
            },
        },
        "notification": {"$ref": "#/components/schemas/Notification"},
        "throttling": {**SECONDS, "description": "Seconds between two notifications at least"},
        "timeInterval": {**SECONDS, "description": "Periodic: seconds between notifications"},
        "expiresAt": {"type": "string", "format": "date-time"},
        "isActive": {"type": "boolean"},
        "status": {"enum": ["active", "paused", "expired"], "readOnly": True},
        "createdAt": {"type": "string", "format": "date-time", "readOnly": True},
        "modifiedAt": {"type": "string", "format": "date-time", "readOnly": True},
        "@context": {},
    },
    "additionalProperties": True,
}
SCHEMAS: dict[str, Any] = {
    "Subscription": SUBSCRIPTION,
    "SubscriptionList": {"type": "array", "items": {"$ref": "#/components/schemas/Subscription"}},
    "Notification": NOTIFICATION,
    "Endpoint": ENDPOINT,
}
ID = {
    "name": "subscriptionId",
    "in": "path",
    "required": True,
    "description": "The subscription's id (its Location after POST)",
    "schema": {"type": "string", "minLength": 1, "maxLength": 256},
}
RESPONSES: dict[str, Any] = {
    "KeyRequired": "Subscriptions belong to an API key: send one (citeplus api keys create)",
    "SubscriptionQuota": "The key holds as many subscriptions as it may; delete some",
    "AlreadyExists": "A subscription with this id exists",
    "UnsupportedMediaType": "The body is not application/json or application/ld+json",
    "StoreUnavailable": "Kafka could not confirm the change; nothing changed, retry",
}


def _problem(description: str) -> dict[str, Any]:
    schema = {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}
    return {"description": description, "content": {"application/json": schema}}


def _refs(codes: dict[str, str]) -> dict[str, Any]:
    return {code: {"$ref": f"#/components/responses/{name}"} for code, name in codes.items()}


def _body(schema: str, media: tuple[str, ...]) -> dict[str, Any]:
    ref = {"schema": {"$ref": f"#/components/schemas/{schema}"}}
    return {"required": True, "content": {kind: ref for kind in media}}


def _operation(
    operation_id: str, summary: str, answers: dict[str, Any], refusals: dict[str, str]
) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["Subscriptions"],
        "responses": {**answers, **_refs(refusals)},
    }


def subscription_paths(shell_refusals: dict[str, str]) -> dict[str, Any]:
    """The two paths, each operation with the shell's refusals (``shell_refusals``)."""
    mine = {**shell_refusals, "401": "KeyRequired", "503": "StoreUnavailable"}
    changes = {**mine, "400": "BadRequest", "415": "UnsupportedMediaType", "422": "NotSupported"}
    listed = {"description": "The key's subscriptions", **_ok("SubscriptionList")}
    listed["headers"] = {
        "NGSILD-Results-Count": {"$ref": "#/components/headers/NGSILD-Results-Count"}
    }
    created = {"description": "Created", "headers": {"Location": {"schema": {"type": "string"}}}}
    done = {"204": {"description": "Done"}}
    post = _operation(
        "createSubscription",
        "Subscribe: notifications POSTed to an http(s) endpoint (at least once, with ids)",
        {"201": created},
        {**changes, "403": "SubscriptionQuota", "409": "AlreadyExists"},
    )
    post["requestBody"] = _body("Subscription", BODY_TYPES)
    listing = _operation(
        "listSubscriptions",
        "The key's own subscriptions, with their status",
        {"200": listed},
        {**mine, "400": "BadRequest", "403": "TooManyResults", "406": "NotAcceptable"},
    )
    listing["parameters"] = [
        {"$ref": f"#/components/parameters/{name}"} for name in ("limit", "offset", "count")
    ]
    one = {**mine, "400": "BadRequest", "404": "NotFound"}
    patch = _operation(
        "updateSubscription", "Change members (merged)", done, {**changes, "404": "NotFound"}
    )
    patch["requestBody"] = _body("Subscription", (*BODY_TYPES, "application/merge-patch+json"))
    retrieve = _operation(
        "retrieveSubscription",
        "One subscription of the key (404 for another key's)",
        {"200": {"description": "The subscription", **_ok("Subscription")}},
        {**one, "406": "NotAcceptable"},
    )
    remove = _operation("deleteSubscription", "Unsubscribe", done, one)
    for operation in (retrieve, patch, remove):
        operation["parameters"] = [ID]  # per operation: the documentation page reads them there
    return {
        PATH: {"post": post, "get": listing},
        PATH + "/{subscriptionId}": {"get": retrieve, "patch": patch, "delete": remove},
    }


def _ok(schema: str) -> dict[str, Any]:
    ref = {"schema": {"$ref": f"#/components/schemas/{schema}"}}
    return {"content": {kind: ref for kind in BODY_TYPES}}


def responses() -> dict[str, Any]:
    return {name: _problem(text) for name, text in RESPONSES.items()}
