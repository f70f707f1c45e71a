"""Prometheus metrics and a health endpoint for one service process.

Operators watch lag, errors and dead letters per service; the same numbers feed
`citeplus status`. One small HTTP server per process serves both `/metrics`
and `/healthz`, on loopback unless configured otherwise.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class ServiceMetrics:
    """The counters every stage keeps; a private registry so tests can build many."""

    def __init__(self, service: str):
        self.service = service
        self.registry = CollectorRegistry()
        labels = ["service"]
        self.records_in = Counter(
            "citeplus_records_in", "Messages consumed", labels, registry=self.registry
        )
        self.records_out = Counter(
            "citeplus_records_out", "Messages produced", [*labels, "topic"], registry=self.registry
        )
        self.readings_out = Counter(
            "citeplus_readings_out",
            "Readings (values) carried by produced messages",
            labels,
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "citeplus_dead_letters",
            "Records sent to the dead-letter topic",
            [*labels, "reason"],
            registry=self.registry,
        )
        self.errors = Counter(
            "citeplus_errors",
            "Infrastructure errors (aborted batches)",
            [*labels, "kind"],
            registry=self.registry,
        )
        self.transactions = Counter(
            "citeplus_transactions",
            "Kafka transactions",
            [*labels, "outcome"],
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "citeplus_batch_seconds",
            "Time to process and commit one batch",
            labels,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "citeplus_consumer_lag",
            "Messages not yet consumed (high watermark - position)",
            [*labels, "topic", "partition"],
            registry=self.registry,
        )
        self.last_progress = time.monotonic()
        self.ready = False

    def mark_progress(self) -> None:
        """Called by the loop on every iteration, so health can tell a stuck process."""
        self.last_progress = time.monotonic()

    def health(self, stale_after_s: float = 60.0) -> tuple[bool, dict[str, object]]:
        age = time.monotonic() - self.last_progress
        healthy = self.ready and age < stale_after_s
        return healthy, {
            "service": self.service,
            "status": "ok" if healthy else ("starting" if not self.ready else "stalled"),
            "seconds_since_progress": round(age, 3),
        }

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


MAX_POST_BYTES = 1024 * 1024  # a query, not data: larger bodies are refused unread

# (body, request headers) -> (status, content type, body, extra response headers)
PostHandler = Callable[[bytes, Mapping[str, str]], tuple[int, str, bytes, dict[str, str]]]
# () -> (healthy, JSON body of /healthz)
HealthCheck = Callable[[], tuple[bool, dict[str, object]]]


class MetricsServer:
    """Serves `/metrics` (Prometheus text) and `/healthz` (JSON, 200 or 503).

    ``health`` replaces :meth:`ServiceMetrics.health` for a process that is no loop:
    an HTTP server has no iteration to mark progress with, and an idle one is not a
    stalled one."""

    def __init__(
        self,
        metrics: ServiceMetrics,
        host: str,
        port: int,
        post_routes: dict[str, PostHandler] | None = None,
        health: HealthCheck | None = None,
    ):
        self.metrics = metrics
        handler = self._handler(metrics, post_routes or {}, health or metrics.health)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name="metrics")

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @staticmethod
    def _handler(
        metrics: ServiceMetrics, post_routes: dict[str, PostHandler], health: HealthCheck
    ) -> type[BaseHTTPRequestHandler]:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                route = post_routes.get(self.path.split("?")[0])
                if route is None:
                    self._send(404, "text/plain", b"no such endpoint\n")
                    return
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if not 0 <= length <= MAX_POST_BYTES:
                    self._send(413, "text/plain", b"a body of at most 1 MiB, with its length\n")
                    return
                status, content_type, body, extra = route(self.rfile.read(length), self.headers)
                self._send(status, content_type, body, extra)

            def do_GET(self) -> None:
                if self.path.startswith("/metrics"):
                    self._send(200, CONTENT_TYPE_LATEST, metrics.exposition())
                elif self.path.startswith("/healthz"):
                    healthy, body = health()
                    self._send(
                        200 if healthy else 503, "application/json", json.dumps(body).encode()
                    )
                else:
                    self._send(404, "text/plain", b"try /metrics or /healthz\n")

            def _send(
                self,
                status: int,
                content_type: str,
                body: bytes,
                extra: Mapping[str, str] | None = None,
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                for name, value in (extra or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        return Handler
