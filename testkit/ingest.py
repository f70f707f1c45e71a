"""Running the real ingest HTTP app on a loopback port for tests."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from aiohttp import web

from services.ingest.core import IngestCore
from services.ingest.limits import HttpLimits
from services.ingest.service import make_app, start_app
from services.runtime.cities import CityConfig


@dataclass
class RunningIngest:
    url: str
    core: IngestCore
    app: web.Application


@contextlib.contextmanager
def serve_ingest(
    core: IngestCore,
    cities: dict[str, CityConfig],
    *,
    max_body: int | None = None,
    bounds: HttpLimits | None = None,
) -> Iterator[RunningIngest]:
    """Serve the app on 127.0.0.1 with an OS-chosen port, in a thread of its own,
    as `citeplus service ingest` does (guarded connections, bodies inflated in bounds)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, object] = {}

    app = make_app(core, cities, bounds=bounds, max_body=max_body)

    async def start() -> None:
        holder["runner"], holder["port"] = await start_app(app, "127.0.0.1", 0)
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
        yield RunningIngest(f"http://127.0.0.1:{holder['port']}", core, app)
    finally:
        runner = holder["runner"]
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)  # type: ignore[attr-defined]
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
