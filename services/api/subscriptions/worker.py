"""The delivery engine as a worker of the api's subscription service: started once the
store is read back from Kafka, stopped before the store is closed (service.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from services.api.ngsi.context import CONTEXT_PATH
from services.api.reader import FederationReader
from services.api.subscriptions.delivery import DeliverySettings
from services.api.subscriptions.engine import DeliveryEngine
from services.api.subscriptions.notification import Backoff
from services.api.subscriptions.notifier import Notifier, pinned_check
from services.api.subscriptions.service import SubscriptionService
from services.runtime.config import NodeConfig, SubscriptionsSection


def delivery_settings(section: SubscriptionsSection) -> DeliverySettings:
    """``api.subscriptions`` as the engine's bounds."""
    return DeliverySettings(
        max_entities=section.max_batch,
        backoff=Backoff(first_s=section.retry_min_s, max_s=section.retry_max_s),
    )


def context_url(node: NodeConfig) -> str:
    """Where receivers find the @context the notifications name (the api serves it)."""
    host = node.api.host if node.api.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    return f"http://{host}:{node.api.port}{CONTEXT_PATH}"


def install_delivery(
    service: SubscriptionService, reader: FederationReader, node: NodeConfig
) -> None:
    """Deliver the notifications of ``service``'s subscriptions while the api runs."""
    running: dict[str, Any] = {}

    async def start(started: SubscriptionService) -> None:
        if started.store is None:
            return
        settings = started.settings
        notifier = Notifier(pinned_check(started.policy), timeout_s=settings.request_timeout_s)
        engine = DeliveryEngine(
            started.store,
            tuple(n.code for n in reader.nodes),
            reader.client_for,
            reader,
            notifier,
            started.names,
            context_url(node),
            delivery_settings(settings),
            started.deliverable,  # a revoked key's subscriptions stop with it
        )
        await asyncio.get_running_loop().run_in_executor(None, engine.start)
        running["engine"], running["notifier"] = engine, notifier

    async def stop() -> None:
        engine = running.pop("engine", None)
        if engine is not None:
            await asyncio.get_running_loop().run_in_executor(None, engine.close)
            running.pop("notifier").close()

    service.add_worker("notifications", start, stop)
