"""The socket side of the HTTP interface: a threaded HTTP/1.1 server (one thread per
connection, kept alive as clients' pools expect) that reads a request, bounded,
and hands it to the SqlDoor."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from services.publish.clickhouse_http.errors import (
    BAD_ARGUMENTS,
    TOO_MANY_SIMULTANEOUS_QUERIES,
    ClickHouseError,
)
from services.publish.clickhouse_http.exchange import Request, Response
from services.publish.clickhouse_http.handler import SqlDoor

log = logging.getLogger(__name__)


# A connection silent this long (between requests, or in the middle of one) is
# closed, as ClickHouse's keep_alive_timeout does: else a client sending half a
# request held a thread and a socket of publish (the sink's process) for ever.
IDLE_TIMEOUT_S = 30.0


class BodyTooLarge(Exception):
    pass


# Connections served at once (each holds a thread and a socket of publish, the
# sink's process); beyond it a connection gets ClickHouse's 503 and is closed.
MAX_CONNECTIONS = 128


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    slots: threading.BoundedSemaphore
    refusal: bytes

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread for the connection if a slot is free, else the 503 at once."""
        if not self.slots.acquire(blocking=False):
            try:
                request.settimeout(1.0)
                request.sendall(self.refusal)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up (a pool closing an idle connection) is no error."""
        log.debug("SQL connection closed by the client", exc_info=True)


class ClickHouseHttpServer:
    """Serves ``door`` on host:port until ``stop``."""

    def __init__(
        self,
        door: SqlDoor,
        host: str,
        port: int,
        *,
        max_body_bytes: int,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        max_connections: int = MAX_CONNECTIONS,
    ):
        self.door = door
        handler = _handler(door, max_body_bytes, idle_timeout_s)
        self.httpd = _Server((host, port), handler)
        self.httpd.slots = threading.BoundedSemaphore(max_connections)
        self.httpd.refusal = _raw(_too_many(door, max_connections))
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, daemon=True, name="clickhouse-http"
        )

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> ClickHouseHttpServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _read_body(handler: BaseHTTPRequestHandler, limit: int) -> bytes:
    """Content-Length or chunked (the JDBC driver streams its query), at most ``limit``."""
    if "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower():
        return _read_chunked(handler, limit)
    try:
        length = int(handler.headers.get("Content-Length") or 0)
    except ValueError:
        length = -1
    if length < 0:
        raise ClickHouseError(BAD_ARGUMENTS, "Content-Length is not a number")
    if length > limit:
        raise BodyTooLarge
    return handler.rfile.read(length)


def _read_chunked(handler: BaseHTTPRequestHandler, limit: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        line = handler.rfile.readline(1024).split(b";")[0].strip()
        try:
            size = int(line, 16)
        except ValueError:
            raise ClickHouseError(BAD_ARGUMENTS, "malformed chunked body") from None
        if size == 0:
            while handler.rfile.readline(1024).strip():  # trailers
                pass
            return b"".join(parts)
        total += size
        if total > limit:
            raise BodyTooLarge
        parts.append(handler.rfile.read(size))
        handler.rfile.readline(8)


def _handler(
    door: SqlDoor, max_body_bytes: int, idle_timeout_s: float
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = idle_timeout_s  # each read of the socket; see IDLE_TIMEOUT_S
        # Headers and body leave in two writes: with Nagle's algorithm on, the body
        # waited for the client's delayed ACK (~40 ms per query, measured).
        disable_nagle_algorithm = True
        server_version = "CitePlus-ClickHouse-HTTP"

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def _serve(self, method: str) -> None:
            url = urlsplit(self.path)
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            try:
                body = _read_body(self, max_body_bytes) if method == "POST" else b""
            except BodyTooLarge:
                self.close_connection = True  # the rest of the body is not read
                self._send(_too_large(door, max_body_bytes))
                return
            except ClickHouseError as error:
                self.close_connection = True
                self._send(door.error_response(error, ""))
                return
            request = Request(method, url.path or "/", params, self.headers, body)
            try:
                response = door.answer(request)
            except Exception:
                log.exception("SQL request failed")
                response = door.error_response(
                    ClickHouseError(1001, "internal error; see the log"), ""
                )
            self._send(response)

        def _send(self, response: Response) -> None:
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


def _too_large(door: SqlDoor, limit: int) -> Response:
    error = ClickHouseError(
        BAD_ARGUMENTS,
        f"the request body is larger than {limit} bytes; this endpoint takes queries, "
        "not data (raise sql.max_query_kb if a query really is that long)",
    )
    response = door.error_response(error, "")
    response.status = 413
    return response


def _too_many(door: SqlDoor, cap: int) -> Response:
    error = ClickHouseError(
        TOO_MANY_SIMULTANEOUS_QUERIES,
        f"the node serves {cap} connections at once; close idle ones (a client pool's "
        "size) and retry in a moment",
    )
    response = door.error_response(error, "")
    response.headers["Connection"] = "close"
    return response


def _raw(response: Response) -> bytes:
    """A whole HTTP/1.1 answer as bytes, for a connection given no thread."""
    reason = {503: "Service Unavailable"}.get(response.status, "Error")
    lines = [f"HTTP/1.1 {response.status} {reason}"]
    lines += [f"{name}: {value}" for name, value in response.headers.items()]
    lines.append(f"Content-Length: {len(response.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body
