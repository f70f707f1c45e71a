"""A notification receiver on loopback for the subscription tests and bench.

Records every NGSI-LD Notification POSTed to it (per path: one path per
subscription), can answer 503 for a while (``down``), or stop listening and
start again on the same port (a receiver killed and restarted). The time each
notification arrived is kept for latency figures.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float  # time.time() when it arrived


@dataclass
class Receiver:
    port: int = 0
    down: bool = False
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length)
                if receiver.down:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.loads(data)
                with receiver._lock:
                    receiver.received.append(
                        Received(self.path, body, dict(self.headers.items()), time.time())
                    )
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, name="receiver", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == "/" + path.lstrip("/")]

    def entities(self, path: str) -> list[tuple[str, dict[str, Any]]]:
        """(notification id, entity) of every entity received at ``path``."""
        return [(r.body["id"], e) for r in self.at(path) for e in r.body["data"]]
