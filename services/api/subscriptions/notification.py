"""The NGSI-LD Notification a receiver gets, and when a failed one is tried again.

Pure: building the body and headers, and the back-off between attempts. The id of a
notification (``urn:ngsi-ld:Notification:<uuid>``) is chosen once per batch of
entities and kept across every retry of that batch, and across a restart of the api
(it is saved with the batch's end before the first attempt): a receiver that got it
once drops the copies by id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from services.api.ngsi.context import CORE_CONTEXT

LD_JSON = "application/ld+json"
CONTEXT_LINK_REL = "http://www.w3.org/ns/json-ld#context"


def new_id() -> str:
    return f"urn:ngsi-ld:Notification:{uuid.uuid4()}"


def payload(
    notification_id: str,
    sub_id: str,
    notified_at: str,
    entities: list[dict[str, Any]],
    accept: str,
    context_url: str,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The body and headers of one notification. ``application/ld+json`` carries the
    @context in the body; ``application/json`` names it in a Link header."""
    body: dict[str, Any] = {
        "id": notification_id,
        "type": "Notification",
        "subscriptionId": sub_id,
        "notifiedAt": notified_at,
        "data": entities,
    }
    headers = {"Content-Type": accept, "User-Agent": "citeplus-notifier"}
    if accept == LD_JSON:
        body["@context"] = [context_url, CORE_CONTEXT]
    else:
        headers["Link"] = f'<{context_url}>; rel="{CONTEXT_LINK_REL}"; type="application/ld+json"'
    return body, headers


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off between attempts of one batch: ``first_s`` doubled after
    each failure up to ``max_s``, and tried forever (the backlog is the topic: nothing
    is dropped while it holds the records)."""

    first_s: float = 0.5
    max_s: float = 60.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failures (>= 1)."""
        if failures <= 0:
            return 0.0
        return min(self.max_s, self.first_s * 2 ** min(failures - 1, 30))
