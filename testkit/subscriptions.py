"""The api's subscription routes served for tests: the real application (middlewares,
keys, routes) with a real subscription store on prefixed copies of its topics, in a
thread of its own, so a test module shares one server and talks to it over HTTP."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from services.api.app import build_app, default_parts
from services.api.keys import KeyStore
from services.api.subscriptions.service import SubscriptionService
from services.api.subscriptions.store import StoreTopics, SubscriptionStore
from services.runtime.codec import Contracts
from services.runtime.config import NodeConfig, NodeSection, SubscriptionsSection
from services.runtime.provisioning import connect_contracts, provision_topics
from services.runtime.topics import TopicName, load_topics
from testkit.ports import free_port

NAMES = (TopicName.API_SUBSCRIPTIONS, TopicName.API_SUBSCRIPTION_STATE)


def store_topics(node: NodeConfig) -> tuple[StoreTopics, Contracts]:
    """Fresh prefixed copies of the store's two topics, created, with their codecs."""
    prefix = f"test.{uuid.uuid4().hex[:8]}."
    declared = load_topics()
    specs = [replace(declared[n], name=prefix + n) for n in NAMES]
    provision_topics(node, specs)
    return StoreTopics(specs[0].name, specs[1].name), connect_contracts(node, specs)


def new_store(node: NodeConfig, topics: tuple[StoreTopics, Contracts]) -> SubscriptionStore:
    where, contracts = topics
    return SubscriptionStore(
        node, where, contracts.codec(where.definitions), contracts.codec(where.states)
    )


@dataclass
class ServedApi:
    url: str
    keys: KeyStore
    service: SubscriptionService
    node: NodeConfig


@contextmanager
def served_api(
    node: NodeConfig, state_dir: Path, settings: SubscriptionsSection
) -> Iterator[ServedApi]:
    """The api app with subscriptions on a free loopback port until the block ends."""
    config = replace(
        node,
        node=NodeSection(state_dir=str(state_dir)),
        api=replace(node.api, subscriptions=settings),
    )
    parts = default_parts(config, CollectorRegistry())
    keys = parts.keys  # the middleware's own: a key created here is known at once
    service = SubscriptionService(settings, new_store(config, store_topics(config)), keys)
    app = build_app(config, None, parts, service)  # type: ignore[arg-type]
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    ready, stop = threading.Event(), None

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        if not ready.wait(120):
            raise RuntimeError("the api did not start within 120 s")
        yield ServedApi(f"http://127.0.0.1:{port}", keys, service, config)
    finally:
        if stop is not None:
            loop.call_soon_threadsafe(stop.set)
        thread.join(60)
        loop.close()
