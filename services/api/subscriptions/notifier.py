"""Sending one notification over HTTP: POST, TLS verified, no redirect, bounded.

A receiver is someone else's server: its address is checked again right before each
attempt (the name may now resolve elsewhere than when the subscription was made),
certificates are verified, a redirect is a failure (a 3xx could point the node at
its own network), the answer is not read beyond its status, and each attempt has a
timeout. Any non-2xx is a failure with a reason the owner sees in the
subscription's status (``lastFailure``), never a stack trace.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

TargetCheck = Callable[[str], None]  # raises TargetRefused when the uri may not be called


class TargetRefused(Exception):
    """The notification target is not allowed (any more): a private, loopback or
    link-local address the operator did not allow."""


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: int | None = None
    reason: str = ""


def address_check(allowed: Sequence[str] = ()) -> TargetCheck:
    """Refuse a target whose host resolves to a non-public address, unless it lies in
    one of ``allowed`` (addresses or ranges, ``api.subscriptions.allow_targets``)."""
    networks = tuple(ipaddress.ip_network(a, strict=False) for a in allowed)

    def check(uri: str) -> None:
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TargetRefused(f"not an http(s) URL: {uri[:200]}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            found = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
        except OSError as exc:
            raise TargetRefused(f"{parts.hostname} does not resolve ({exc.strerror})") from exc
        for *_, sockaddr in found:
            address = ipaddress.ip_address(sockaddr[0])
            if any(address in n for n in networks):
                continue
            if not address.is_global:
                raise TargetRefused(
                    f"{parts.hostname} resolves to {address}, a non-public address; "
                    "the operator may allow it in api.subscriptions.allow_targets"
                )

    return check


class Notifier:
    """One HTTP client for every receiver (connection reuse), thread-safe."""

    def __init__(self, check: TargetCheck, timeout_s: float = 10.0, max_connections: int = 200):
        self.check = check
        self.client = httpx.Client(
            verify=True,
            follow_redirects=False,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=max_connections),
            trust_env=False,
        )

    def close(self) -> None:
        self.client.close()

    def send(self, uri: str, body: dict[str, Any], headers: dict[str, str]) -> Outcome:
        try:
            self.check(uri)
        except TargetRefused as exc:
            return Outcome(False, None, f"target refused: {exc}")
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        try:
            answer = self.client.post(uri, content=data, headers=headers)
        except httpx.TimeoutException:
            return Outcome(False, None, "the receiver did not answer in time")
        except httpx.HTTPError as exc:
            return Outcome(False, None, f"cannot reach the receiver: {type(exc).__name__}")
        answer.close()
        if 200 <= answer.status_code < 300:
            return Outcome(True, answer.status_code)
        if 300 <= answer.status_code < 400:
            return Outcome(False, answer.status_code, "redirects are not followed")
        return Outcome(False, answer.status_code, f"the receiver answered {answer.status_code}")
