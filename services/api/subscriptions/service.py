"""The subscriptions side of the api process: its store, its rules, and what runs beside.

:class:`SubscriptionService` is what :func:`services.api.app.build_app` starts and
stops with the application (aiohttp ``on_startup`` / ``on_cleanup``): it reads the
store back from Kafka before the first request is served, then starts the workers
plugged into it (the delivery engine registers itself with :meth:`add_worker`), and
on the way down stops them before it closes the store, so a last state saved by a
worker still reaches Kafka.

Without a store (an api built for tests without a broker) the routes answer 503
saying subscriptions need the api service; nothing else is affected.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from services.api.keys import KeyStore
from services.api.ngsi.names import Names, load_names
from services.api.subscriptions.model import Subscription, utc_now
from services.api.subscriptions.store import SubscriptionStore
from services.api.subscriptions.targets import TargetPolicy
from services.runtime.config import SubscriptionsSection

log = logging.getLogger(__name__)
Starter = Callable[["SubscriptionService"], Awaitable[None]]
Stopper = Callable[[], Awaitable[None]]


@dataclass
class Worker:
    """Something that runs while the api serves (the delivery engine): started after the
    store is read back, stopped before it is closed."""

    name: str
    start: Starter
    stop: Stopper


@dataclass
class SubscriptionService:
    settings: SubscriptionsSection
    store: SubscriptionStore | None
    keys: KeyStore | None = None
    names: Names = field(default_factory=load_names)
    clock: Callable[[], dt.datetime] = utc_now
    workers: list[Worker] = field(default_factory=list)
    # One change of the store at a time: a quota check and the write it allows are one step.
    writing: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        # A bad allow-list stops the api at start (ConfigError naming the entry).
        self.policy = TargetPolicy.parse(self.settings.allow_targets)

    def add_worker(self, name: str, start: Starter, stop: Stopper) -> None:
        """Run ``start(service)`` once the store is ready, ``stop()`` at shutdown."""
        self.workers.append(Worker(name, start, stop))

    def limit_for(self, key_id: str) -> int:
        """How many subscriptions ``key_id`` may hold: its own limit, else the node's."""
        key = (self.keys.keys().get(key_id) if self.keys is not None else None) or None
        own = getattr(key, "max_subscriptions", None)
        return self.settings.per_key if own is None else own

    def deliverable(self, sub: Subscription) -> bool:
        """Whether the engine may send for ``sub`` now: active, not expired, and its
        owner's key still valid (a revoked key's subscriptions stop with it, within
        ``api.keys_reload_s``; the engine asks before every send)."""
        if not sub.delivering(self.clock()):
            return False
        if self.keys is None:
            return True
        key = self.keys.keys().get(sub.owner)
        return key is not None and key.active

    async def startup(self, _app: web.Application) -> None:
        if self.store is None:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.store.start)
        for worker in self.workers:
            await worker.start(self)
            log.info("subscription worker started", extra={"worker": worker.name})

    async def cleanup(self, _app: web.Application) -> None:
        for worker in reversed(self.workers):
            try:
                await worker.stop()
            except Exception:
                log.exception("subscription worker failed to stop", extra={"worker": worker.name})
        if self.store is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.store.close)


SUBSCRIPTIONS = web.AppKey("subscriptions", SubscriptionService)


def attach(app: web.Application, service: SubscriptionService) -> None:
    """Start and stop ``service`` with ``app``."""
    app[SUBSCRIPTIONS] = service
    app.on_startup.append(service.startup)
    app.on_cleanup.append(service.cleanup)
