"""One subscription's deliveries: its own worker thread, fed by the shared feeds.

Nothing lost: the position of a feed moves (``store.save_state``) only after the
receiver answered 2xx for every record before it. Before the first attempt of a
batch, its id and its end are saved with the state (``pending``): a restarted api
resumes from the saved position and sends those same records again under that
same id, so a receiver drops copies by id. Attempts of a batch follow the back-off
until the receiver takes it (or the subscription is deleted, paused or expires);
meanwhile the feeds keep flowing for the other subscriptions: past a bounded
backlog this one is detached, and attached again from its position once its
receiver is back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from services.api.subscriptions.feeds import Item
from services.api.subscriptions.matching import Matcher
from services.api.subscriptions.model import (
    STATUS_FAILED,
    STATUS_OK,
    DeliveryState,
    Subscription,
    iso,
    utc_now,
)
from services.api.subscriptions.notification import Backoff, new_id, payload
from services.api.subscriptions.notifier import Notifier
from services.api.subscriptions.positions import (
    FeedKey,
    Offsets,
    Positions,
    advance,
    after_delivery,
    from_state,
    reached,
    to_state,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliverySettings:
    """Bounds of one subscription's deliveries (``api.subscriptions`` settings)."""

    max_entities: int = 500  # entities per notification
    linger_s: float = 0.05  # a partial batch waits this long for more
    backlog: int = 20_000  # matched entities held before the feeds detach it
    save_every_s: float = 5.0  # a position moved without a notification is saved this often
    replay_wait_s: float = 60.0  # how long a pending batch waits for its records after a restart
    backoff: Backoff = field(default_factory=Backoff)


@dataclass
class _Queued:
    feed: FeedKey
    item: Item
    body: dict[str, Any]
    arrived: float  # time.monotonic() when the feed offered it


@dataclass
class _Pending:
    """The batch in flight: its id, where it ends per feed, and its records."""

    id: str
    end: Positions
    queued: list[_Queued] = field(default_factory=list)
    ready: bool = False  # its records are in hand (False: replaying after a restart)


def pending_from_state(raw: dict[str, Any]) -> _Pending | None:
    """The batch that was in flight when the state was saved, if one was."""
    ends: Positions = {}
    found_id = None
    for node, topics in (raw or {}).items():
        for topic, position in (topics or {}).items():
            pending = (position or {}).get("pending")
            if pending:
                found_id = pending["id"]
                ends[(node, topic)] = {int(p): int(o) for p, o in pending["end"].items()}
    return _Pending(found_id, ends) if found_id else None


def state_positions(acked: Positions, pending: _Pending | None) -> dict[str, Any]:
    """DeliveryState.positions: the acknowledged positions, the pending batch beside."""
    feeds = dict(acked)
    if pending is not None:
        for key in pending.end:
            feeds.setdefault(key, {})
    state = to_state(feeds)
    if pending is not None:
        for (node, topic), end in pending.end.items():
            state[node][topic]["pending"] = {
                "id": pending.id,
                "end": {str(p): o for p, o in sorted(end.items())},
            }
    return state


def batch_end(taken: list[_Queued]) -> Positions:
    """Where a batch ends in each feed: past its last record of each partition."""
    end: Positions = {}
    for q in taken:
        feed_end = end.setdefault(q.feed, {})
        feed_end[q.item.partition] = max(feed_end.get(q.item.partition, 0), q.item.offset + 1)
    return end


class Delivery:
    """The subscriber of the feeds for one subscription, and its sending worker."""

    def __init__(
        self,
        sub: Subscription,
        matcher: Matcher,
        state: DeliveryState,
        save: Callable[[str, DeliveryState], None],
        notifier: Notifier,
        context_url: str,
        settings: DeliverySettings,
        reattach: Callable[[Delivery], None],
        deliverable: Callable[[Subscription], bool] | None = None,
    ):
        self.key = sub.id
        self.sub = sub
        self.matcher = matcher
        self.state = state
        self.save = save
        self.notifier = notifier
        self.context_url = context_url
        self.settings = settings
        self.reattach = reattach
        # Active, not expired, and its owner's key still valid (the service's rule).
        self.deliverable = deliverable or (lambda sub: sub.delivering(utc_now()))
        self.acked: Positions = from_state(state.positions)
        self.seen: Positions = {k: dict(v) for k, v in self.acked.items()}
        self.pending = pending_from_state(state.positions)
        self.pending_since = time.monotonic()
        self.queue: deque[_Queued] = deque()
        self.detached = False
        self.failures = 0
        self.retry_at = 0.0
        self.delivered = 0  # entities the receiver took (for benches and tests)
        self.last_sent = 0.0
        self.last_saved = time.monotonic()
        self.dirty = False
        self._lock = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=f"notify-{sub.id}", daemon=True)

    # -- what the feeds call ----------------------------------------------------------
    def cursor(self, feed: FeedKey) -> Offsets | None:
        with self._lock:
            seen = self.seen.get(feed)
            return dict(seen) if seen is not None else None

    def offer(self, feed: FeedKey, items: list[Item], position: Offsets) -> bool:
        queued = []
        for item in items:
            body = self.matcher.body(item.entity)
            if body is not None:
                queued.append(_Queued(feed, item, body, time.monotonic()))
        with self._lock:
            if self.detached:
                return False
            if len(self.queue) + len(queued) > self.settings.backlog:
                self._detach()
                return False
            self.queue.extend(queued)
            self.seen[feed] = advance(self.seen.get(feed, {}), position)
            self.dirty = True
            self._lock.notify_all()
        return True

    def since(self) -> str:
        return self.sub.created_at

    def out_of_range(self, feed: FeedKey, reason: str) -> None:
        with self._lock:
            self.seen.pop(feed, None)
            self.acked.pop(feed, None)
            now = iso(utc_now())
            self.state = replace(self.state, last_failure=now, last_failure_reason=reason)
            self.dirty = True

    def _detach(self) -> None:
        """Drop what is queued beyond the batch in flight: it is read again from the
        position once the receiver is back (the feed is rewound for it)."""
        self.detached = True
        self.queue.clear()
        self.seen = {k: dict(v) for k, v in self.acked.items()}
        if self.pending is not None and self.pending.queued:  # in hand: not read again
            for feed, end in self.pending.end.items():
                self.seen[feed] = advance(self.seen.get(feed, {}), end)

    # -- life -------------------------------------------------------------------------
    def start(self) -> Delivery:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify_all()
        self._thread.join(timeout=5.0)

    def update(self, sub: Subscription, matcher: Matcher) -> None:
        with self._lock:
            self.sub, self.matcher = sub, matcher
            self._lock.notify_all()

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._stopped:
                    return
                batch, wait_s = self._next_batch()
                if batch is None:
                    save = self._idle_save()
                    reattach = self.detached and self.pending is None and self.deliverable(self.sub)
                    if reattach:
                        self.detached = False
                    if save is None and not reattach:
                        self._lock.wait(wait_s)
            if batch is not None:
                self._deliver(batch)
            else:
                if save is not None:
                    self._save(save)
                if reattach:
                    self.reattach(self)

    def _idle_save(self) -> DeliveryState | None:
        """A position moved without a notification (records that match nothing): saved
        now and then, so that a restart does not read them all again."""
        first = not self.acked and bool(self.seen)  # the first position: saved at once
        if not self.dirty or (
            not first and time.monotonic() - self.last_saved < self.settings.save_every_s
        ):
            return None
        if not self.queue and self.pending is None:
            self.acked = {k: dict(v) for k, v in self.seen.items()}
        self.dirty = False
        self.last_saved = time.monotonic()
        return self._state_locked()

    def _next_batch(self) -> tuple[_Pending | None, float]:
        """The batch to send now, or None and how long to wait (under the lock)."""
        now = time.monotonic()
        if not self.deliverable(self.sub):  # paused or expired: off the feeds, the
            if not self.detached:  # position kept for when it is active again
                self._detach()
            return None, 0.5
        if now < self.retry_at:
            return None, self.retry_at - now
        if self.pending is not None:
            return self._replay(), self.settings.linger_s
        if not self.queue:
            return None, 0.5
        linger = self.settings.linger_s - (now - self.queue[0].arrived)
        throttle = self.sub.throttling_s - (now - self.last_sent)
        full = len(self.queue) >= self.settings.max_entities
        if (not full and linger > 0) or throttle > 0:
            return None, max(0.005, linger if throttle <= 0 else throttle)
        count = min(len(self.queue), self.settings.max_entities)
        taken = [self.queue.popleft() for _ in range(count)]
        self.pending = _Pending(new_id(), batch_end(taken), taken, ready=False)
        return self.pending, 0.0

    def _replay(self) -> _Pending | None:
        """The pending batch: in hand, or (after a restart) once the feeds offered its
        records again, the same records under the same id; given up after
        replay_wait_s (then they go out in a batch of a new id)."""
        pending = self.pending
        assert pending is not None
        if pending.queued or pending.ready:
            return pending
        if not all(reached(self.seen.get(f, {}), end) for f, end in pending.end.items()):
            if time.monotonic() - self.pending_since > self.settings.replay_wait_s:
                log.warning("a pending notification was not found again", extra={"id": self.key})
                self.pending = None
            return None
        inside, rest = [], deque()
        for q in self.queue:
            limit = pending.end.get(q.feed, {}).get(q.item.partition, -1)
            (inside if q.item.offset < limit else rest).append(q)
        self.queue = rest
        pending.queued, pending.ready = inside, True
        if not inside:  # nothing of it matches any more: nothing to send again
            self.pending = None
            return None
        return pending

    # -- sending ----------------------------------------------------------------------
    def _deliver(self, batch: _Pending) -> None:
        if not batch.ready:  # its id and end are saved before the first attempt
            with self._lock:
                batch.ready = True
                first = self._state_locked()
            self._save(first)
        body, headers = payload(
            batch.id,
            self.sub.id,
            iso(utc_now()),
            [q.body for q in batch.queued],
            self.sub.accept,
            self.context_url,
        )
        outcome = self.notifier.send(self.sub.endpoint_uri, body, headers)
        now = iso(utc_now())
        with self._lock:
            self.last_sent = time.monotonic()
            state = replace(self.state, times_sent=self.state.times_sent + 1, last_notification=now)
            if outcome.ok:
                self.failures, self.pending = 0, None
                self._acknowledge()
                self._chain()
                self.state = replace(state, last_success=now, status=STATUS_OK)
            else:
                self.failures += 1
                self.retry_at = time.monotonic() + self.settings.backoff.delay(self.failures)
                self.state = replace(
                    state,
                    last_failure=now,
                    last_failure_reason=outcome.reason,
                    status=STATUS_FAILED,
                )
            self.delivered += len(batch.queued) if outcome.ok else 0
            self.dirty = False
            self.last_saved = time.monotonic()
            saved = self._state_locked()
        self._save(saved)

    def _chain(self) -> None:
        """Under load, the next batch is taken at once and its id and end go out in the
        same write as the position just reached: one Kafka write per notification."""
        if not self.queue or self.sub.throttling_s > 0:
            return
        count = min(len(self.queue), self.settings.max_entities)
        taken = [self.queue.popleft() for _ in range(count)]
        self.pending = _Pending(new_id(), batch_end(taken), taken, ready=True)
        self.pending_since = time.monotonic()

    def _acknowledge(self) -> None:
        """Positions once a batch was taken: what the feeds offered, but no further
        than the first queued record not yet sent (per partition)."""
        for feed, seen in self.seen.items():
            remaining = [(q.item.partition, q.item.offset) for q in self.queue if q.feed == feed]
            self.acked[feed] = after_delivery(seen, remaining)

    def _state_locked(self) -> DeliveryState:
        self.state = replace(self.state, positions=state_positions(self.acked, self.pending))
        return self.state

    def _save(self, state: DeliveryState) -> None:
        """Kafka confirms it before this returns (store.save_state); a broker down is
        logged and the next save carries the state on. Nothing once stopped (the
        subscription was deleted or replaced while an attempt was in flight): its id
        may already name a new subscription, which must not inherit this state; the
        batch's id and end were saved before the attempt, so a restart sends it again."""
        if self._stopped:
            return
        try:
            self.save(self.sub.id, state)
        except Exception as exc:
            log.warning(
                "a delivery state could not be saved",
                extra={"id": self.key, "why": str(exc)[:200]},
            )
