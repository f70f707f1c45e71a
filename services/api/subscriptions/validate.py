"""A subscription body (NGSI-LD JSON) checked and turned into a :class:`Subscription`.

Pure: no clock, no DNS, no store (the routes pass ``now`` and check the endpoint's
addresses afterwards, services/api/subscriptions/targets.py). Every refusal is a
400 BadRequestData naming the member (``notification.endpoint.uri``) and saying
what is accepted; a member of NGSI-LD this API does not implement is a 422
OperationNotSupported, never ignored, so a subscriber is not left believing a
filter applies when it does not. The rules on ids, patterns, ``q`` and ``geoQ``
are the entity queries' own (services/api/ngsi), so a subscription selects what
the same query would.

A PATCH is the stored definition written back as a body, the fragment merged into
it (``notification`` and ``notification.endpoint`` member by member), and the
result checked again by the same rules: one path, so a PATCH can never store what
a POST would refuse.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, replace
from typing import Any

from services.api.ids import TYPE_NAME, is_uri, parse_id
from services.api.ngsi.geo import parse_geo
from services.api.ngsi.names import Names
from services.api.ngsi.params import id_pattern
from services.api.ngsi.problems import NgsiError, bad_data, shown
from services.api.ngsi.q import FALSE, parse_q
from services.api.ngsi.represent import DESCRIPTIVE
from services.api.subscriptions.model import (
    ACCEPTS,
    EntitySelector,
    GeoQ,
    Subscription,
    iso,
    parse_time,
)
from services.api.subscriptions.targets import TargetRefused, parse_target

MAX_ENTITIES = 50
MAX_ATTRIBUTES = 50
MAX_TEXT = 1000
MAX_ID = 256
MAX_SECONDS = 365 * 86400.0
FORMATS = {"normalized": "normalized", "keyValues": "keyValues", "simplified": "keyValues"}
FORMATS["concise"] = "concise"
TOP = frozenset(
    {
        "id",
        "type",
        "@context",
        "subscriptionName",
        "description",
        "entities",
        "watchedAttributes",
        "q",
        "geoQ",
        "notification",
        "throttling",
        "timeInterval",
        "expiresAt",
        "isActive",
    }
)
NOTIFICATION = frozenset({"attributes", "format", "endpoint"})
ENDPOINT = frozenset({"uri", "accept"})
READ_ONLY = frozenset(
    {
        "status",
        "createdAt",
        "modifiedAt",
        "timesSent",
        "lastNotification",
        "lastSuccess",
        "lastFailure",
        "lastFailureReason",
    }
)
UNSUPPORTED = frozenset(
    {
        "temporalQ",
        "scopeQ",
        "lang",
        "csf",
        "datasetId",
        "notificationTrigger",
        "jsonldContext",
        "showChanges",
        "sysAttrs",
        "receiverInfo",
        "notifierInfo",
        "join",
        "joinLevel",
        "pick",
        "omit",
        "coordinates",
        "geoproperty",
    }
)


@dataclass(frozen=True)
class Identity:
    """What the caller does not choose: the id (when not given), owner, audience, time."""

    id: str
    owner: str
    audience: str
    created_at: str


@dataclass(frozen=True)
class Rules:
    """The node's bounds on what a subscription may ask."""

    names: Names
    min_time_interval_s: float = 1.0


def parse_body(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 saying what is wrong with it."""
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise NgsiError("InvalidRequest", f"the body is not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise NgsiError("InvalidRequest", "the body is one JSON object (a subscription)")
    return document


def new_subscription(
    body: dict[str, Any], identity: Identity, rules: Rules, now: dt.datetime
) -> Subscription:
    """A POST body checked: the subscription to store (its ``id`` if the body gives one)."""
    _members(body, TOP, "")
    if body.get("type") != "Subscription":
        raise bad_data('type: a subscription has "type": "Subscription"')
    sub_id = _sub_id(body["id"]) if "id" in body else identity.id
    entities = _entities(body.get("entities"))
    types = tuple(dict.fromkeys(e.type for e in entities))
    watched = _attributes(body.get("watchedAttributes"), "watchedAttributes", rules.names, types)
    notification = _object(body.get("notification"), "notification", required=True)
    _members(notification, NOTIFICATION, "notification.")
    endpoint = _object(notification.get("endpoint"), "notification.endpoint", required=True)
    _members(endpoint, ENDPOINT, "notification.endpoint.")
    timing = _timing(body, bool(watched), bool(entities), rules)
    return Subscription(
        id=sub_id,
        owner=identity.owner,
        audience=identity.audience,
        endpoint_uri=_endpoint_uri(endpoint.get("uri")),
        created_at=identity.created_at,
        entities=entities,
        watched_attributes=watched,
        q=_q(body.get("q"), rules.names, types),
        geo_q=_geo_q(body.get("geoQ")),
        accept=_choice(endpoint.get("accept", "application/json"), ACCEPTS, "endpoint.accept"),
        format=_format(notification.get("format", "normalized")),
        attributes=_attributes(
            notification.get("attributes"), "notification.attributes", rules.names, types
        ),
        throttling_s=timing[0],
        time_interval_s=timing[1],
        expires_at=_expires(body.get("expiresAt"), now),
        is_active=_boolean(body.get("isActive", True), "isActive"),
        name=_text(body.get("subscriptionName"), "subscriptionName"),
        description=_text(body.get("description"), "description"),
    )


def patched(
    sub: Subscription, fragment: dict[str, Any], rules: Rules, now: dt.datetime
) -> Subscription:
    """``sub`` with a PATCH fragment merged and checked again (its id, owner, audience
    and creation time kept)."""
    if "id" in fragment and fragment["id"] != sub.id:
        raise bad_data("id: a subscription's id cannot change; create a new one instead")
    if "type" in fragment and fragment["type"] != "Subscription":
        raise bad_data('type: a subscription has "type": "Subscription"')
    _members(fragment, TOP, "")
    body = definition_body(sub)
    for name, value in fragment.items():
        if name == "notification" and isinstance(value, dict):
            _members(value, NOTIFICATION, "notification.")
            value = _merged_notification(body["notification"], value)
        if value is None:
            body.pop(name, None)  # null removes an optional member (JSON merge patch)
        else:
            body[name] = value
    kept_expiry = "expiresAt" not in fragment
    if kept_expiry:
        body.pop("expiresAt", None)  # checked when it was set; it may have passed since
    identity = Identity(sub.id, sub.owner, sub.audience, sub.created_at)
    result = new_subscription(body, identity, rules, now)
    return replace(result, expires_at=sub.expires_at) if kept_expiry else result


def _merged_notification(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    merged = {**old, **new}
    if isinstance(new.get("endpoint"), dict):
        _members(new["endpoint"], ENDPOINT, "notification.endpoint.")
        merged["endpoint"] = {**old.get("endpoint", {}), **new["endpoint"]}
    return {k: v for k, v in merged.items() if v is not None}


def definition_body(sub: Subscription) -> dict[str, Any]:
    """The definition as NGSI-LD members (what a POST of it would say; no status)."""
    body: dict[str, Any] = {"id": sub.id, "type": "Subscription"}
    optional = {
        "subscriptionName": sub.name,
        "description": sub.description,
        "entities": [_entity_body(e) for e in sub.entities] or None,
        "watchedAttributes": list(sub.watched_attributes) or None,
        "q": sub.q,
        "geoQ": _geo_body(sub.geo_q),
        "timeInterval": sub.time_interval_s,
        "expiresAt": sub.expires_at,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if sub.throttling_s:
        body["throttling"] = sub.throttling_s
    body["isActive"] = sub.is_active
    notification: dict[str, Any] = {
        "format": sub.format,
        "endpoint": {"uri": sub.endpoint_uri, "accept": sub.accept},
    }
    if sub.attributes:
        notification["attributes"] = list(sub.attributes)
    body["notification"] = notification
    return body


def _entity_body(entity: EntitySelector) -> dict[str, str]:
    body = {"type": entity.type}
    if entity.id:
        body["id"] = entity.id
    if entity.id_pattern:
        body["idPattern"] = entity.id_pattern
    return body


def _geo_body(geo: GeoQ | None) -> dict[str, Any] | None:
    if geo is None:
        return None
    body: dict[str, Any] = {
        "georel": geo.georel,
        "geometry": geo.geometry,
        "coordinates": json.loads(geo.coordinates),
    }
    if geo.geoproperty:
        body["geoproperty"] = geo.geoproperty
    return body


# -- members ------------------------------------------------------------------------------


def _members(body: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    for name in body:
        if name in allowed:
            continue
        if name in READ_ONLY:
            raise bad_data(
                f"{where}{name} is read-only (the node keeps it); leave it out "
                "(isActive: false pauses a subscription)"
            )
        if name in UNSUPPORTED:
            raise NgsiError(
                "OperationNotSupported",
                f"{where}{name} of NGSI-LD is not supported by this API; leave it out "
                f"(accepted here: {', '.join(sorted(allowed))})",
            )
        raise bad_data(
            f"unknown member {where}{shown(name)} (accepted here: {', '.join(sorted(allowed))})"
        )


def _object(value: Any, where: str, required: bool = False) -> dict[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        missing = "is required: " if value is None else "is "
        raise bad_data(f"{where} {missing}a JSON object")
    return value


def _sub_id(value: Any) -> str:
    if not isinstance(value, str) or not is_uri(value) or len(value) > MAX_ID:
        raise bad_data(
            f"id is a URI of at most {MAX_ID} characters, like urn:ngsi-ld:Subscription:my-sub "
            "(leave it out and the node names the subscription)"
        )
    return value


def _entities(value: Any) -> tuple[EntitySelector, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not value or len(value) > MAX_ENTITIES:
        raise bad_data(f"entities is a list of 1 to {MAX_ENTITIES} objects with a type")
    return tuple(dict.fromkeys(_entity(item, f"entities[{i}]") for i, item in enumerate(value)))


def _entity(item: Any, where: str) -> EntitySelector:
    if not isinstance(item, dict):
        raise bad_data(f"{where} is an object: {{'type': ..., 'id' or 'idPattern'}}")
    _members(item, frozenset({"type", "id", "idPattern"}), where + ".")
    entity_type = item.get("type")
    if not isinstance(entity_type, str) or not TYPE_NAME.match(entity_type):
        raise bad_data(f"{where}.type is required: an entity type name (letters, digits, _)")
    if "id" in item and "idPattern" in item:
        raise bad_data(f"{where}: give id or idPattern, not both")
    entity_id, pattern = item.get("id"), item.get("idPattern")
    if entity_id is not None:
        parsed = parse_id(entity_id) if isinstance(entity_id, str) else None
        if parsed is None or parsed.entity_type != entity_type:
            raise bad_data(
                f"{where}.id is an entity id of this API of type {entity_type} "
                f"(urn:ngsi-ld:{entity_type}:<city>:<key>)"
            )
    if pattern is not None:
        if not isinstance(pattern, str):
            raise bad_data(f"{where}.idPattern is a regular expression (text)")
        _checked_pattern(pattern, where)
    return EntitySelector(entity_type, entity_id, pattern)


def _checked_pattern(pattern: str, where: str) -> None:
    try:
        id_pattern(pattern)
    except NgsiError as error:
        raise bad_data(f"{where}.{error.detail}") from None


def _attributes(value: Any, where: str, names: Names, types: tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        return ()
    if (
        not isinstance(value, list)
        or not value
        or len(value) > MAX_ATTRIBUTES
        or not all(isinstance(v, str) for v in value)
    ):
        raise bad_data(f"{where} is a list of 1 to {MAX_ATTRIBUTES} attribute names")
    for name in value:
        if not names.metrics(name, types) and name not in DESCRIPTIVE:
            scope = f" of {', '.join(types)}" if types else ""
            raise bad_data(
                f"{where}: no entity{scope} has an attribute {shown(name)}; "
                "GET /ngsi-ld/v1/attributes lists those served"
            )
    return tuple(dict.fromkeys(value))


def _q(value: Any, names: Names, types: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_data("q is a query text, like temperature>20;no2<=40")
    try:
        parsed = parse_q(value, lambda a: names.metrics(a, types))
    except NgsiError as error:
        raise bad_data(f"q: {error.detail}") from None
    if parsed == FALSE:
        raise bad_data(
            "q names only attributes no entity of these types carries, so it would never "
            "match; GET /ngsi-ld/v1/attributes lists those served"
        )
    return value


def _geo_q(value: Any) -> GeoQ | None:
    if value is None:
        return None
    geo = _object(value, "geoQ")
    _members(geo, frozenset({"georel", "geometry", "coordinates", "geoproperty"}), "geoQ.")
    parts = [geo.get(k) for k in ("georel", "geometry", "coordinates", "geoproperty")]
    coordinates = parts[2]
    if coordinates is not None and not isinstance(coordinates, str):
        coordinates = json.dumps(coordinates)
    if not all(p is None or isinstance(p, str) for p in (parts[0], parts[1], parts[3])):
        raise bad_data("geoQ: georel, geometry and geoproperty are text")
    if parts[0] is None:
        raise bad_data("geoQ.georel is required (near;maxDistance==<m> or within)")
    try:
        parse_geo(parts[0], parts[1], coordinates, parts[3])
    except NgsiError as error:
        raise bad_data(f"geoQ: {error.detail}") from None
    return GeoQ(parts[0], parts[1] or "", coordinates or "", parts[3])


def _endpoint_uri(value: Any) -> str:
    if not isinstance(value, str):
        raise bad_data("notification.endpoint.uri is required: the http(s) URL to POST to")
    try:
        parse_target(value)
    except TargetRefused as refused:
        raise bad_data(f"notification.endpoint.uri: {refused}") from None
    return value


def _choice(value: Any, allowed: tuple[str, ...], where: str) -> str:
    if value not in allowed:
        raise bad_data(f"notification.{where} is {' or '.join(allowed)}")
    return value


def _format(value: Any) -> str:
    if value not in FORMATS:
        raise bad_data("notification.format is normalized, keyValues (or simplified) or concise")
    return FORMATS[value]


def _seconds(value: Any, where: str, low: float, inclusive: bool) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value > MAX_SECONDS or (value < low if inclusive else value <= low):
        bound = f">= {low:g}" if inclusive else f"> {low:g}"
        raise bad_data(f"{where} is a number of seconds {bound} and at most {MAX_SECONDS:g}")
    return float(value)


def _timing(
    body: dict[str, Any], watched: bool, entities: bool, rules: Rules
) -> tuple[float, float | None]:
    """(throttling, timeInterval): on change (throttled or not) or periodic, never both."""
    throttling = _seconds(body.get("throttling", 0), "throttling", 0, True)
    if "timeInterval" not in body or body["timeInterval"] is None:
        if not watched and not entities:
            raise bad_data("give entities or watchedAttributes (what to be notified of)")
        return throttling, None
    interval = _seconds(body["timeInterval"], "timeInterval", 0, False)
    if interval < rules.min_time_interval_s:
        raise bad_data(f"timeInterval is at least {rules.min_time_interval_s:g} s on this node")
    if watched:
        raise bad_data(
            "timeInterval (periodic) and watchedAttributes (on change) exclude each other"
        )
    if "throttling" in body:
        raise bad_data("throttling goes with on-change subscriptions, not with timeInterval")
    if not entities:
        raise bad_data("a periodic subscription (timeInterval) needs entities")
    return 0.0, interval


def _expires(value: Any, now: dt.datetime) -> str | None:
    if value is None:
        return None
    try:
        moment = parse_time(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None:
        raise bad_data("expiresAt is a date-time with its zone, like 2027-01-01T00:00:00Z")
    if moment <= now:
        raise bad_data(f"expiresAt {value} is not in the future (now is {iso(now)})")
    return iso(moment)


def _boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise bad_data(f"{where} is true or false")
    return value


def _text(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise bad_data(f"{where} is a text of 1 to {MAX_TEXT} characters")
    return value
