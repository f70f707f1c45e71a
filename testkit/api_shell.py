"""The common API's service shell in-process, for tests: its real middlewares, documents
and key store, an injected clock, and a probe route that answers what the shell decided
(the audience a request is served for), so tests need no federation and no NGSI-LD route.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from services.api.app import Parts, build_app, default_parts
from services.api.middlewares import AUDIENCE
from services.runtime.config import ApiSection, NodeConfig, NodeSection

T = TypeVar("T")
PROBE = "/probe"
BIG = "/probe/big"


class Clock:
    """A clock the test moves: quotas and key reloads read it instead of waiting."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def shell_node(state_dir: Path, **api: Any) -> NodeConfig:
    """Default node settings with ``state_dir`` and the given ``api:`` values."""
    return replace(NodeConfig(), node=NodeSection(state_dir=str(state_dir)), api=ApiSection(**api))


async def _probe(request: web.Request) -> web.Response:
    audience = request[AUDIENCE]
    return web.json_response(
        {
            "key_id": audience.key_id,
            "application": audience.application,
            "partner": audience.partner,
            "on_behalf_of": audience.on_behalf_of,
        }
    )


async def _big(request: web.Request) -> web.Response:
    return web.json_response({"id": "urn:ngsi-ld:Probe:x:1", "type": "Probe", "v": "x" * 4000})


async def _boom(request: web.Request) -> web.Response:
    raise RuntimeError("secret internal detail /srv/citeplus/state")


def shell_app(node: NodeConfig, clock: Clock) -> tuple[web.Application, Parts]:
    """The real application, plus probe routes (/probe, /probe/big, /probe/boom)."""
    parts = default_parts(node, CollectorRegistry(), clock)
    app = build_app(node, reader=None, parts=parts)  # type: ignore[arg-type]
    app.router.add_get(PROBE, _probe)
    app.router.add_get(BIG, _big)
    app.router.add_get("/probe/boom", _boom)
    return app, parts


def drive(app: web.Application, scenario: Callable[[TestClient], Awaitable[T]]) -> T:
    """Run ``scenario`` against ``app`` served on a loopback port; returns its result."""

    async def main() -> T:
        async with TestClient(TestServer(app)) as client:
            return await scenario(client)

    return asyncio.run(main())
