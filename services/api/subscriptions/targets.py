"""Where notifications may go: public HTTP(S) addresses only, unless the operator says.

A subscription makes this node send HTTP requests to a URL a caller chose. Left
unchecked that is a server-side request forgery: a caller could make the node
post to its own admin ports (127.0.0.1), to the cloud metadata service
(169.254.169.254) or to machines of the city's private network. So a target is
refused unless EVERY address its host resolves to is a global unicast address,
or lies in a range the operator allowed (``api.subscriptions.allow_targets``;
tests allow 127.0.0.1). Addresses are judged after unwrapping the IPv6 forms that
carry an IPv4 address (``::ffff:127.0.0.1``, 6to4, NAT64, Teredo).

Hosts written as numbers other than the dotted quad (``2130706433``, ``0x7f.1``,
``017700000001``) are refused outright: resolvers and HTTP clients disagree on
what they mean, and no honest receiver needs them. A URL with userinfo
(``http://user@host``) is refused as well: it is how a reader is fooled about
which host a URL names.

Checking at creation is not enough, as DNS can change between the check and the
send (rebinding). The notifier therefore connects *only* to addresses checked in
the same resolution: :class:`CheckedResolver` is the resolver of its aiohttp
connector, it resolves, checks every address and hands aiohttp only those, so
there is no window between check and connect. IP-literal hosts never reach a
resolver in aiohttp, which is why :func:`check_target` is also called at send
time (cheap: no DNS for literals). The notifier must not follow redirects (a
3xx could point anywhere): a redirect is a failed delivery.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

from aiohttp import TCPConnector
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from services.runtime.errors import ConfigError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
SCHEMES = ("http", "https")
MAX_URI = 2048
# A host made of numbers and dots, or with a 0x label: an IPv4 literal in some spelling.
NUMERIC_HOST = re.compile(r"^(?:0x[0-9a-f]*|\d+)(?:\.(?:0x[0-9a-f]*|\d+))*\.?$", re.IGNORECASE)
OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
DOTTED_QUAD = re.compile(rf"^{OCTET}(?:\.{OCTET}){{3}}$")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
HOW_TO_ALLOW = (
    "the node's operator may allow an address or range with api.subscriptions.allow_targets"
)


class TargetRefused(ValueError):
    """A notification target this node will not send to; the message says why."""


@dataclass(frozen=True)
class TargetPolicy:
    """The operator's exceptions to the rule (addresses or ranges, nothing by default)."""

    allowed: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, text: str, source: str = "api.subscriptions.allow_targets") -> TargetPolicy:
        """``127.0.0.1, 10.0.0.0/24, ::1`` -> a policy; ConfigError naming a bad entry."""
        networks: list[Network] = []
        for entry in (part.strip() for part in text.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ConfigError(
                    f"{entry!r} is neither an IP address nor a range (like 10.0.0.0/24); "
                    "names are not accepted, as what they resolve to may change",
                    key=source,
                ) from None
        return cls(tuple(networks))

    def allows(self, address: Address) -> bool:
        return any(address in network for network in self.allowed)


@dataclass(frozen=True)
class Target:
    """A URL that passed the syntactic checks: scheme, host (lowercase, no brackets), port."""

    uri: str
    scheme: str
    host: str
    port: int
    literal: Address | None  # the host when it is an IP address


def parse_target(uri: str) -> Target:
    """The URL's parts, or TargetRefused: http(s), a host, no userinfo, no odd numbers."""
    if len(uri) > MAX_URI:
        raise TargetRefused(f"the endpoint URI is longer than {MAX_URI} characters")
    if any(c.isspace() or ord(c) < 0x20 for c in uri):
        raise TargetRefused("the endpoint URI contains spaces or control characters")
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"the endpoint URI is not a valid URL ({exc})") from None
    if parts.scheme.lower() not in SCHEMES:
        raise TargetRefused(
            f"notifications are sent over http or https only, not {parts.scheme or 'no'} scheme"
        )
    if port == 0:
        raise TargetRefused("port 0 is no port to send to; give the receiver's port (1-65535)")
    if "@" in parts.netloc:
        raise TargetRefused("the endpoint URI may not carry a user or password (user@host)")
    host = _host(parts)
    literal = _literal(host)
    default = 443 if parts.scheme.lower() == "https" else 80
    return Target(uri, parts.scheme.lower(), host, port or default, literal)


def _host(parts: SplitResult) -> str:
    host = (parts.hostname or "").lower()
    if not host:
        raise TargetRefused("the endpoint URI has no host (http://host[:port]/path)")
    if NUMERIC_HOST.match(host) and not DOTTED_QUAD.match(host):
        raise TargetRefused(
            f"host {host!r} is an IPv4 address in an unusual spelling; write it as a.b.c.d "
            "(or better, use a host name)"
        )
    return host


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64, Teredo), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def why_forbidden(address: Address, policy: TargetPolicy) -> str | None:
    """None when notifications may go to ``address``, else what kind of address it is."""
    if policy.allows(address):
        return None
    inner = embedded_ipv4(address)
    if inner is not None:
        reason = why_forbidden(inner, policy)
        return f"{reason} (inside {address})" if reason else None
    for kind, test in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("not globally routable", not address.is_global),
    ):
        if test:
            return f"{address} is {kind}"
    return None


def web_port(port: int) -> bool:
    """80, 443 or an unprivileged port: where a web receiver listens. Below 1024 lie
    mail, directory and shell services an HTTP POST of the node should never reach."""
    return port in (80, 443) or port >= 1024


def check_addresses(target: Target, addresses: list[Address], policy: TargetPolicy) -> None:
    """Every resolved address must be allowed (one bad one is enough to refuse: a
    client connects to any of them)."""
    if not addresses:
        raise TargetRefused(f"host {target.host!r} resolves to no address")
    for address in addresses:
        reason = why_forbidden(address, policy)
        if reason:
            if target.literal is None:
                # A name: say what kind of address it has, never which one (else any
                # key holder could read the node's private DNS through the refusals).
                reason = f"it resolves to an address that is {reason.split(' is ', 1)[1]}"
                reason = reason.split(" (inside ", 1)[0]
            raise TargetRefused(
                f"notifications may not go to {target.host!r}: {reason}; use a public "
                f"address ({HOW_TO_ALLOW})"
            )
    if not web_port(target.port) and not all(policy.allows(a) for a in addresses):
        raise TargetRefused(
            f"port {target.port} is the port of other services than the web (mail, "
            "directories, shells): notifications go to port 80, 443 or 1024-65535"
        )


async def resolve(host: str, port: int) -> list[Address]:
    """Every address ``host`` has (IPv4 and IPv6), TargetRefused when it has none."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"host {host!r} cannot be resolved ({exc}); check its name") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


async def check_target(uri: str, policy: TargetPolicy) -> Target:
    """The whole check (syntax, then every address), as at creation and before a send."""
    target = parse_target(uri)
    addresses = [target.literal] if target.literal else await resolve(target.host, target.port)
    check_addresses(target, addresses, policy)
    return target


class CheckedResolver(AbstractResolver):
    """aiohttp's resolver for the notifier: resolves, refuses the host if any address
    is forbidden, and returns only checked addresses, so the connection goes where the
    check looked (no DNS rebinding between the two)."""

    def __init__(self, policy: TargetPolicy, inner: AbstractResolver | None = None):
        self.policy = policy
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        inner = self._inner or ThreadedResolver()
        found: list[Any] = await inner.resolve(host, port, family)
        target = Target(f"//{host}", "", host.lower(), port, None)
        check_addresses(target, [ipaddress.ip_address(r["host"]) for r in found], self.policy)
        return found

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


def checked_connector(policy: TargetPolicy, limit: int = 100) -> TCPConnector:
    """The notifier's connector: every name resolved through :class:`CheckedResolver`,
    TLS certificates verified (aiohttp's default, never turned off here). IP literals
    bypass resolvers in aiohttp: call :func:`check_target` before each send as well."""
    return TCPConnector(resolver=CheckedResolver(policy), limit=limit)
