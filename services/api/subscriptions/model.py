"""An NGSI-LD subscription as this node keeps it, and the state of its deliveries.

:class:`Subscription` is the validated definition (ETSI GS CIM 009 V1.8.1 §5.2.12):
what the owner asked for, checked once by the routes and stored as is. The
delivery engine reads it and never changes it; :class:`DeliveryState` is what the
engine writes back (times sent, last success and failure, its positions in the
published feeds), kept apart so that a notification never rewrites a definition
and a definition's PATCH never races a delivery.

Both travel on compacted Kafka topics as JSON documents inside ``StateEntry``
records (services/api/subscriptions/store.py); :func:`subscription_to_json` and
friends are that JSON, with a ``v`` version so a later field can be added and an
older document still read (missing fields take their defaults).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

SCHEMA_VERSION = 1
FORMATS = ("normalized", "keyValues", "concise")
ACCEPTS = ("application/json", "application/ld+json")
STATUS_OK, STATUS_FAILED = "ok", "failed"


@dataclass(frozen=True)
class EntitySelector:
    """One member of ``entities``: a type, and optionally an id or an id pattern."""

    type: str
    id: str | None = None
    id_pattern: str | None = None


@dataclass(frozen=True)
class GeoQ:
    """``geoQ`` as given (coordinates kept as the JSON text the API's parser reads)."""

    georel: str
    geometry: str
    coordinates: str
    geoproperty: str | None = None


@dataclass(frozen=True)
class Subscription:
    """The validated definition of one subscription.

    ``owner`` is the key id that created it (only that key sees or changes it);
    ``audience`` the federation identity its notifications are read on behalf of
    (the key's partner code at creation, else ``public``): a key later bound to
    another partner does not widen what an existing subscription receives.
    Times are ISO 8601 UTC text (what NGSI-LD shows and JSON carries).
    """

    id: str
    owner: str
    audience: str
    endpoint_uri: str
    created_at: str
    entities: tuple[EntitySelector, ...] = ()
    watched_attributes: tuple[str, ...] = ()
    q: str | None = None
    geo_q: GeoQ | None = None
    accept: str = "application/json"
    format: str = "normalized"
    attributes: tuple[str, ...] = ()  # notification.attributes: what a notification carries
    throttling_s: float = 0.0
    time_interval_s: float | None = None  # periodic subscription; None: on change
    expires_at: str | None = None
    is_active: bool = True
    name: str | None = None
    description: str | None = None
    modified_at: str | None = None

    def expired(self, now: dt.datetime) -> bool:
        return self.expires_at is not None and parse_time(self.expires_at) <= now

    def status(self, now: dt.datetime) -> str:
        """NGSI-LD's ``status``: expired beats paused, paused beats active."""
        if self.expired(now):
            return "expired"
        return "active" if self.is_active else "paused"

    def delivering(self, now: dt.datetime) -> bool:
        """Whether the engine should send anything for it now."""
        return self.status(now) == "active"


@dataclass(frozen=True)
class DeliveryState:
    """What the delivery engine has done for one subscription (written by the engine
    through ``SubscriptionStore.save_state``, shown in the subscription's status).

    ``positions`` is per node then per dataset the federation Subscribe position the
    engine resumes from (a Position message as a dict), so a restarted api goes on
    where the last saved state left off. ``status`` is NGSI-LD's notification status
    (ok / failed); ``last_failure_reason`` says why the last attempt failed (shown
    to the owner, never a stack trace).
    """

    times_sent: int = 0
    last_notification: str | None = None
    last_success: str | None = None
    last_failure: str | None = None
    last_failure_reason: str | None = None
    status: str | None = None
    positions: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(moment: dt.datetime) -> str:
    """The form every time of this package is kept and shown in (UTC, ``Z``)."""
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> dt.datetime:
    """ISO 8601 with a zone (``Z`` or an offset) -> aware UTC datetime; ValueError else."""
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone (end it with Z)")
    return moment.astimezone(dt.UTC)


# -- JSON for Kafka -----------------------------------------------------------------------

_SUBSCRIPTION_FIELDS = frozenset(f.name for f in fields(Subscription))
_STATE_FIELDS = frozenset(f.name for f in fields(DeliveryState))


def subscription_to_json(sub: Subscription) -> str:
    document = asdict(sub)
    document["v"] = SCHEMA_VERSION
    return json.dumps(document, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def subscription_from_json(text: str) -> Subscription:
    """The definition a document holds; unknown members (a newer writer's) are ignored,
    missing ones take their defaults. ValueError when it is not a subscription."""
    document = _object(text, "subscription")
    values = {k: v for k, v in document.items() if k in _SUBSCRIPTION_FIELDS}
    try:
        values["entities"] = tuple(EntitySelector(**e) for e in values.get("entities") or ())
        values["watched_attributes"] = tuple(values.get("watched_attributes") or ())
        values["attributes"] = tuple(values.get("attributes") or ())
        if values.get("geo_q") is not None:
            values["geo_q"] = GeoQ(**values["geo_q"])
        return Subscription(**values)
    except TypeError as exc:
        raise ValueError(f"not a subscription document: {exc}") from exc


def state_to_json(state: DeliveryState) -> str:
    document = asdict(state)
    document["v"] = SCHEMA_VERSION
    return json.dumps(document, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def state_from_json(text: str) -> DeliveryState:
    document = _object(text, "delivery state")
    try:
        return DeliveryState(**{k: v for k, v in document.items() if k in _STATE_FIELDS})
    except TypeError as exc:
        raise ValueError(f"not a delivery state document: {exc}") from exc


def _object(text: str, what: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"a {what} is a JSON document: {exc}") from exc
    if not isinstance(document, dict):
        raise ValueError(f"a {what} is a JSON object, got {type(document).__name__}")
    return document


def touched(sub: Subscription, now: dt.datetime, **changes: Any) -> Subscription:
    """``sub`` with ``changes`` and its modification time set."""
    return replace(sub, **changes, modified_at=iso(now))
