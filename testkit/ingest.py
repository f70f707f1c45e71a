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
    own_url: str = ""  # with a shared port: this worker alone (a second, private site)


@contextlib.contextmanager
def serve_ingest(
    core: IngestCore,
    cities: dict[str, CityConfig],
    *,
    max_body: int | None = None,
    bounds: HttpLimits | None = None,
    port: int = 0,
    reuse_port: bool = False,
    workers: int = 1,
) -> Iterator[RunningIngest]:
    """Serve the app on 127.0.0.1 with an OS-chosen port, in a thread of its own,
    as `citeplus service ingest` does (guarded connections, bodies inflated in bounds).

    ``port`` with ``reuse_port``: one of several workers sharing that port, as the
    supervisor starts them; the worker is then also served on a private port
    (``own_url``) so that a test can choose which worker a request reaches."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, object] = {}

    app = make_app(core, cities, bounds=bounds, max_body=max_body, workers=workers)

    async def start() -> None:
        runner, holder["port"] = await start_app(app, "127.0.0.1", port, reuse_port=reuse_port)
        holder["runner"] = runner
        if reuse_port:
            own = web.TCPSite(runner, "127.0.0.1", 0)
            await own.start()
            holder["own"] = own._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
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
        own = f"http://127.0.0.1:{holder['own']}" if "own" in holder else ""
        yield RunningIngest(f"http://127.0.0.1:{holder['port']}", core, app, own)
    finally:
        runner = holder["runner"]
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)  # type: ignore[attr-defined]
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
