"""The delivery engine of the api: every stored subscription delivered, from start.

It follows the store (services/api/subscriptions/store.py): at start every
subscription there gets its delivery, resuming from its saved state; a created or
changed one is (re)started, a deleted one stopped. On-change subscriptions are fed
by shared feeds (feeds.py), one per node, topic and audience; periodic ones
(``timeInterval``) are answered every interval by the API's own entity query
(services/api/reader.py), one notification each time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from services.api.audience import PUBLIC_AUDIENCE, Audience
from services.api.ngsi.names import Names
from services.api.ngsi.params import Page, Selection
from services.api.ngsi.query import entity_query
from services.api.subscriptions.delivery import Delivery, DeliverySettings
from services.api.subscriptions.feeds import Feed
from services.api.subscriptions.matching import Matcher
from services.api.subscriptions.model import (
    STATUS_FAILED,
    STATUS_OK,
    DeliveryState,
    Subscription,
    iso,
    utc_now,
)
from services.api.subscriptions.notification import new_id, payload
from services.api.subscriptions.notifier import Notifier
from services.api.subscriptions.saver import GroupSaver
from services.api.subscriptions.store import DELETE, PUT, Change, SubscriptionStore
from services.federation.client import FederationClient

log = logging.getLogger(__name__)
PERIODIC_LIMIT = 1000  # entities in one periodic notification
CATALOG_RETRY_S = 15.0

ClientFor = Callable[[str, str], FederationClient]  # (node code, audience) -> client


@dataclass
class _Audience:
    """The feeds of one audience, per node (a node not reached yet: retried)."""

    feeds: dict[tuple[str, str], Feed] = field(default_factory=dict)
    reached: set[str] = field(default_factory=set)


def keeps_delivery(running: Subscription, changed: Subscription) -> bool:
    """Whether a running on-change delivery can take ``changed`` as it is (same
    audience, still on change); else it is stopped and the right kind started."""
    return running.audience == changed.audience and not changed.time_interval_s


class DeliveryEngine:
    def __init__(
        self,
        store: SubscriptionStore,
        nodes: tuple[str, ...],
        client_for: ClientFor,
        reader: Any,
        notifier: Notifier,
        names: Names,
        context_url: str,
        settings: DeliverySettings | None = None,
        deliverable: Callable[[Subscription], bool] | None = None,
    ):
        self.store = store
        self.nodes = nodes
        self.client_for = client_for
        self.reader = reader
        self.notifier = notifier
        self.names = names
        self.context_url = context_url
        self.settings = settings or DeliverySettings()
        self.deliverable = deliverable or (lambda sub: sub.delivering(utc_now()))
        self.saver = GroupSaver(store)
        self.deliveries: dict[str, Delivery] = {}
        self.periodic: dict[str, _Periodic] = {}
        self.audiences: dict[str, _Audience] = {}
        self._lock = threading.RLock()
        self._stopped = threading.Event()
        self._retry = threading.Thread(target=self._retry_nodes, name="feeds-retry", daemon=True)

    def start(self) -> DeliveryEngine:
        self.store.on_change(self._changed)
        for sub in self.store.list():
            self.apply(sub)
        self._retry.start()
        return self

    def close(self) -> None:
        self._stopped.set()
        with self._lock:
            workers = [*self.deliveries.values(), *self.periodic.values()]
            feeds = [f for a in self.audiences.values() for f in a.feeds.values()]
            self.deliveries.clear()
            self.periodic.clear()
        for worker in workers:
            worker.stop()
        for feed in feeds:
            feed.stop()
        self.saver.close()

    # -- following the store ----------------------------------------------------------
    def _changed(self, change: Change) -> None:
        if change.kind == DELETE:
            self.remove(change.sub_id)
        elif change.kind == PUT and change.subscription is not None:
            self.apply(change.subscription)

    def apply(self, sub: Subscription) -> None:
        """Start (or update) the delivery of ``sub``."""
        matcher = Matcher.of(sub, self.names)
        with self._lock:
            current = self.deliveries.get(sub.id)
            if current is not None and keeps_delivery(current.sub, sub):
                current.update(sub, matcher)
                return
        self.remove(sub.id)
        if sub.time_interval_s:
            periodic = _Periodic(self, sub, matcher)
            with self._lock:
                self.periodic[sub.id] = periodic
            periodic.start()
            return
        delivery = Delivery(
            sub,
            matcher,
            self.store.state(sub.id),
            self.saver.save,
            self.notifier,
            self.context_url,
            self.settings,
            self.attach,
            self.deliverable,
        )
        with self._lock:
            self.deliveries[sub.id] = delivery
        delivery.start()
        # Reaching the nodes' catalogues may take a peer's timeout: never in the way of
        # the api's start or of the request that created the subscription.
        threading.Thread(target=self.attach, args=(delivery,), daemon=True).start()

    def remove(self, sub_id: str) -> None:
        with self._lock:
            delivery = self.deliveries.pop(sub_id, None)
            periodic = self.periodic.pop(sub_id, None)
            feeds = [f for a in self.audiences.values() for f in a.feeds.values()]
        for feed in feeds:
            feed.detach(sub_id)
        if delivery is not None:
            delivery.stop()
        if periodic is not None:
            periodic.stop()

    def attach(self, delivery: Delivery) -> None:
        """Offer ``delivery`` every feed of its audience (from its own position)."""
        for feed in self._feeds(delivery.sub.audience):
            feed.attach(delivery)

    # -- feeds ------------------------------------------------------------------------
    def _feeds(self, audience: str) -> list[Feed]:
        with self._lock:
            known = self.audiences.setdefault(audience, _Audience())
            missing = [n for n in self.nodes if n not in known.reached]
        for node in missing:
            self._open_node(audience, node)
        with self._lock:
            return list(known.feeds.values())

    def _open_node(self, audience: str, node: str) -> None:
        """One feed per topic the node serves the audience (its catalogue on its behalf)."""
        client = self.client_for(node, audience)
        try:
            catalog = client.catalog()
        except Exception as exc:  # retried by _retry_nodes
            log.warning(
                "a node's catalogue is not available for subscriptions",
                extra={"node": node, "audience": audience, "why": str(exc)[:200]},
            )
            return
        licences = {d.id: d.licence for d in catalog.datasets}
        by_topic: dict[str, str] = {}
        for dataset in catalog.datasets:
            by_topic.setdefault(dataset.topic, dataset.id)
        with self._lock:
            known = self.audiences[audience]
            for topic, dataset in sorted(by_topic.items()):
                key = (node, topic)
                if key not in known.feeds:
                    feed = Feed(key, audience, client, dataset, licences)
                    known.feeds[key] = feed.start()
            known.reached.add(node)

    def _retry_nodes(self) -> None:
        while not self._stopped.wait(CATALOG_RETRY_S):
            with self._lock:
                unreached = [
                    a for a, known in self.audiences.items() if set(self.nodes) - known.reached
                ]
                deliveries = list(self.deliveries.values())
            for audience in unreached:
                self._feeds(audience)
                for delivery in deliveries:
                    if delivery.sub.audience == audience:
                        self.attach(delivery)

    def feed_count(self) -> int:
        with self._lock:
            return sum(len(a.feeds) for a in self.audiences.values())


class _Periodic:
    """A ``timeInterval`` subscription: every interval, the matching entities now."""

    def __init__(self, engine: DeliveryEngine, sub: Subscription, matcher: Matcher):
        self.engine = engine
        self.sub = sub
        self.matcher = matcher
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"periodic-{sub.id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        interval = float(self.sub.time_interval_s or 60.0)
        while not self._stopped.wait(interval):
            if self.engine.deliverable(self.sub):
                try:
                    self.once()
                except Exception:
                    log.exception("a periodic notification failed", extra={"id": self.sub.id})

    def once(self) -> None:
        types = tuple(sorted({s.type for s in self.sub.entities if s.type}))
        query = entity_query(Selection(types=types), Page(limit=PERIODIC_LIMIT))
        partner = None if self.sub.audience == PUBLIC_AUDIENCE else self.sub.audience
        merged = self.engine.reader.entities(query, Audience(self.sub.owner, None, partner))
        bodies = [b for b in (self.matcher.body(e) for e in merged.items) if b is not None]
        if not bodies:  # nothing matches now: no empty notification
            return
        body, headers = payload(
            new_id(),
            self.sub.id,
            iso(utc_now()),
            bodies,
            self.sub.accept,
            self.engine.context_url,
        )
        outcome = self.engine.notifier.send(self.sub.endpoint_uri, body, headers)
        if self._stopped.is_set():  # deleted meanwhile: its id may name a new one
            return
        now = iso(utc_now())
        state: DeliveryState = self.engine.store.state(self.sub.id)
        state = replace(state, times_sent=state.times_sent + 1, last_notification=now)
        if outcome.ok:
            state = replace(state, last_success=now, status=STATUS_OK)
        else:
            state = replace(
                state, last_failure=now, last_failure_reason=outcome.reason, status=STATUS_FAILED
            )
        self.engine.store.save_state(self.sub.id, state)
