"""A subscription as NGSI-LD shows it: its definition and the standard status members.

``status`` (active / paused / expired) comes from the definition and the clock;
``notification.timesSent``, ``lastNotification``, ``lastSuccess``, ``lastFailure`` and
``notification.status`` (ok / failed) from the delivery engine's saved
:class:`DeliveryState`. ``lastFailureReason`` is this API's addition: what went
wrong the last time, so an owner can fix the receiver without asking anyone.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from services.api.subscriptions.model import DeliveryState, Subscription
from services.api.subscriptions.validate import definition_body


def represent(sub: Subscription, state: DeliveryState, now: dt.datetime) -> dict[str, Any]:
    body = definition_body(sub)
    body["status"] = sub.status(now)
    notification = body["notification"]
    notification["timesSent"] = state.times_sent
    for member, value in (
        ("status", state.status),
        ("lastNotification", state.last_notification),
        ("lastSuccess", state.last_success),
        ("lastFailure", state.last_failure),
        ("lastFailureReason", state.last_failure_reason),
    ):
        if value is not None:
            notification[member] = value
    body["createdAt"] = sub.created_at
    if sub.modified_at:
        body["modifiedAt"] = sub.modified_at
    return body
