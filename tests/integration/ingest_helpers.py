"""Running the real ingest HTTP app on a loopback port for tests."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from aiohttp import web

from services.ingest.core import IngestCore
from services.ingest.service import make_app
from services.runtime.cities import CityConfig


@dataclass
class RunningIngest:
    url: str
    core: IngestCore


@contextlib.contextmanager
def serve_ingest(
    core: IngestCore, cities: dict[str, CityConfig], *, max_body: int = 32 * 1024 * 1024
) -> Iterator[RunningIngest]:
    """Serve the app on 127.0.0.1 with an OS-chosen port, in a thread of its own."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, object] = {}

    async def start() -> None:
        runner = web.AppRunner(make_app(core, cities, max_body=max_body))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["runner"] = runner
        holder["port"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("ingest app did not start")
    try:
        yield RunningIngest(f"http://127.0.0.1:{holder['port']}", core)
    finally:
        runner = holder["runner"]
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)  # type: ignore[attr-defined]
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
