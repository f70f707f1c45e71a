"""Sending one notification over HTTP: POST, TLS verified, no redirect, bounded.

A receiver is someone else's server: its address is checked again right before each
attempt (the name may now resolve elsewhere than when the subscription was made) and
the connection goes to the address checked,
certificates are verified, a redirect is a failure (a 3xx could point the node at
its own network), the answer is not read beyond its status, and each attempt has a
timeout. Any non-2xx is a failure with a reason the owner sees in the
subscription's status (``lastFailure``), never a stack trace.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from services.api.subscriptions.deadline import attempt, deadline_transport
from services.api.subscriptions.targets import (
    Address,
    TargetPolicy,
    TargetRefused,
    check_addresses,
    parse_target,
)

# The checked form of a target: the URL to dial (its host replaced by the address
# checked), the Host header and the TLS name to present; TargetRefused when refused.
Pinned = tuple[str, dict[str, str], dict[str, Any]]
TargetCheck = Callable[[str], Pinned]
MAX_ANSWER = 64 * 1024  # bytes of a receiver's answer read at most (it is not used)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: int | None = None
    reason: str = ""


def _resolve(host: str, port: int) -> list[Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"host {host!r} cannot be resolved ({exc}); check its name") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def pinned_check(policy: TargetPolicy) -> TargetCheck:
    """Check a target as the routes did at creation (services/api/subscriptions/
    targets.py), again before every attempt, and dial the address that was checked:
    the name cannot resolve elsewhere between the check and the connection (DNS
    rebinding). TLS still verifies the certificate against the host name (SNI)."""

    def check(uri: str) -> Pinned:
        target = parse_target(uri)
        addresses = [target.literal] if target.literal else _resolve(target.host, target.port)
        check_addresses(target, addresses, policy)
        if target.literal is not None:
            return uri, {}, {}
        address = addresses[0]
        shown = f"[{address}]" if address.version == 6 else str(address)
        parts = urlsplit(uri)
        netloc = shown + (f":{parts.port}" if parts.port else "")
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        return urlunsplit(parts._replace(netloc=netloc)), {"Host": parts.netloc}, extensions

    return check


class Notifier:
    """One HTTP client for every receiver (connection reuse), thread-safe."""

    def __init__(self, check: TargetCheck, timeout_s: float = 10.0, max_connections: int = 200):
        self.check = check
        self.timeout_s = timeout_s
        self.client = httpx.Client(
            transport=deadline_transport(httpx.Limits(max_connections=max_connections)),
            follow_redirects=False,
            timeout=httpx.Timeout(timeout_s),
            trust_env=False,
        )

    def close(self) -> None:
        self.client.close()

    def send(self, uri: str, body: dict[str, Any], headers: dict[str, str]) -> Outcome:
        try:
            url, host, extensions = self.check(uri)
        except TargetRefused as exc:
            return Outcome(False, None, f"target refused: {exc}")
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        request = self.client.build_request(
            "POST", url, content=data, headers={**headers, **host}, extensions=extensions
        )
        try:
            # stream=True: the status line and headers, then at most MAX_ANSWER bytes
            # (a short answer read to its end keeps the connection for the next
            # notification); closing an unread rest drops the connection, so a
            # receiver answering a huge (or endless) body costs the node nothing.
            with attempt(self.timeout_s):  # the whole attempt, however the receiver trickles
                answer = self.client.send(request, stream=True)
                try:
                    read = 0
                    for chunk in answer.iter_raw():
                        read += len(chunk)
                        if read > MAX_ANSWER:
                            break
                finally:
                    answer.close()
        except httpx.TimeoutException:
            return Outcome(False, None, "the receiver did not answer in time")
        except httpx.HTTPError as exc:
            return Outcome(False, None, f"cannot reach the receiver: {type(exc).__name__}")
        if 200 <= answer.status_code < 300:
            return Outcome(True, answer.status_code)
        if 300 <= answer.status_code < 400:
            return Outcome(False, answer.status_code, "redirects are not followed")
        return Outcome(False, answer.status_code, f"the receiver answered {answer.status_code}")
