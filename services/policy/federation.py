"""Federation settings of a node, validated once at start.

Two places, one object: the ``federation:`` section of the node file (scalars that
differ per node and may be overridden by ``CITEPLUS_FEDERATION_*`` variables) and
the peers file it names (``deploy/federation.yaml``: partner nodes and the sharing
of energy aggregates). Errors name the file and the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from services.policy.limits import FederationLimits
from services.policy.sharing import PUBLIC_AUDIENCE, SharingPolicy, parse_sharing
from services.runtime.config import NodeConfig
from services.runtime.errors import ConfigError
from services.runtime.paths import REPO_ROOT
from services.runtime.yaml_config import parse_strict

CODE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
DEFAULT_AGGREGATES = SharingPolicy("open", (), "Licence-Ouverte-2.0")


@dataclass(frozen=True)
class Peer:
    """A partner node: the identity its certificate must carry, where it listens,
    and the cities it answers for."""

    code: str
    address: str
    cities: tuple[str, ...]


@dataclass(frozen=True)
class CertificatePaths:
    ca: Path
    cert: Path
    key: Path

    def missing(self) -> list[Path]:
        return [path for path in (self.ca, self.cert, self.key) if not path.exists()]


@dataclass(frozen=True)
class FederationConfig:
    identity: str
    listen: str
    certs_dir: Path
    peers: tuple[Peer, ...]
    energy_aggregates: SharingPolicy
    peer_timeout_s: float
    enabled: bool
    source: str
    limits: FederationLimits = field(default_factory=FederationLimits)

    @property
    def certificates(self) -> CertificatePaths:
        return certificate_paths(self.certs_dir, self.identity)

    def peer(self, code: str) -> Peer:
        for peer in self.peers:
            if peer.code == code:
                return peer
        known = ", ".join(p.code for p in self.peers) or "none"
        raise ConfigError(f"no peer {code!r} (configured: {known})", source=self.source)


def certificate_paths(directory: Path, identity: str) -> CertificatePaths:
    """Where ``citeplus certs`` writes, and where a node looks: ca.pem, <code>.pem, <code>.key."""
    return CertificatePaths(
        directory / "ca.pem", directory / f"{identity}.pem", directory / f"{identity}.key"
    )


def _path(value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else REPO_ROOT / path


def load_federation(node: NodeConfig) -> FederationConfig:
    section = node.federation
    identity = section.identity or node.node.id
    if not CODE.match(identity) or identity == PUBLIC_AUDIENCE:
        reserved = " (reserved for the common API's public audience)"
        raise ConfigError(
            f"the node's identity must be a lowercase code (city or syndicate), got {identity!r}"
            + (reserved if identity == PUBLIC_AUDIENCE else ""),
            source=node.source,
            key="federation.identity" if section.identity else "node.id",
        )
    certs_dir = _path(section.certs_dir) if section.certs_dir else node.state_dir / "federation"
    if not section.certs_dir:
        certs_dir = certs_dir / "certs"
    peers_path = _path(section.peers_file)
    peers, aggregates = load_peers_file(peers_path, identity)
    limits = load_limits(peers_path)
    return FederationConfig(
        identity=identity,
        listen=section.listen,
        certs_dir=certs_dir,
        peers=peers,
        energy_aggregates=aggregates,
        peer_timeout_s=section.peer_timeout_s,
        enabled=section.enabled,
        source=str(peers_path),
        limits=limits,
    )


def load_peers_file(path: Path, identity: str) -> tuple[tuple[Peer, ...], SharingPolicy]:
    source = str(path)
    try:
        document = parse_strict(path.read_text(encoding="utf-8"), source) or {}
    except FileNotFoundError:
        raise ConfigError(
            "federation file not found (see deploy/federation.yaml)", source=source
        ) from None
    if not isinstance(document, dict):
        raise ConfigError("expected a mapping at the top level", source=source)
    unknown = set(document) - {"peers", "energy_aggregates", "limits"}
    if unknown:
        raise ConfigError(
            f"unknown keys {sorted(unknown)} (allowed: energy_aggregates, limits, peers)",
            source=source,
        )
    raw_peers = document.get("peers") or []
    if not isinstance(raw_peers, list):
        raise ConfigError("expected a list", source=source, key="peers")
    peers: list[Peer] = []
    for index, raw in enumerate(raw_peers):
        peers.append(_peer(raw, source, f"peers[{index}]", identity))
    codes = [p.code for p in peers]
    if len(set(codes)) != len(codes):
        raise ConfigError("a peer is listed twice", source=source, key="peers")
    aggregates = (
        parse_sharing(document["energy_aggregates"], source=source, key="energy_aggregates")
        if "energy_aggregates" in document
        else DEFAULT_AGGREGATES
    )
    return tuple(peers), aggregates


def load_limits(path: Path) -> FederationLimits:
    """The ``limits:`` section of the federation file (defaults when absent); the file
    itself was checked by ``load_peers_file``."""
    document = parse_strict(path.read_text(encoding="utf-8"), str(path)) or {}
    return _limits(document.get("limits"), str(path))


def _limits(raw: object, source: str) -> FederationLimits:
    """Per-caller quotas and stream life; every key optional, each a positive number."""
    if raw is None:
        return FederationLimits()
    if not isinstance(raw, dict):
        raise ConfigError("expected a mapping", source=source, key="limits")
    allowed = {f.name: f.type for f in fields(FederationLimits)}
    unknown = set(raw) - set(allowed)
    if unknown:
        raise ConfigError(
            f"unknown keys {sorted(unknown)} (allowed: {', '.join(sorted(allowed))})",
            source=source,
            key="limits",
        )
    values: dict[str, float | int] = {}
    for key, value in raw.items():
        integral = key != "stream_max_life_s"
        if isinstance(value, bool) or not isinstance(value, int if integral else (int, float)):
            kind = "a whole number" if integral else "a number of seconds"
            raise ConfigError(f"expected {kind}", source=source, key=f"limits.{key}")
        if value <= 0:
            raise ConfigError("must be above 0", source=source, key=f"limits.{key}")
        values[key] = value
    limits = FederationLimits(**values)
    for kind in ("subscriptions", "queries"):
        if getattr(limits, f"{kind}_per_caller") > getattr(limits, f"{kind}_total"):
            raise ConfigError(f"{kind}_per_caller above {kind}_total", source=source, key="limits")
    if limits.subscriptions_own > limits.subscriptions_total:
        raise ConfigError(
            "subscriptions_own above subscriptions_total", source=source, key="limits"
        )
    return limits


def _peer(raw: object, source: str, key: str, identity: str) -> Peer:
    if not isinstance(raw, dict):
        raise ConfigError("expected a mapping {code, address, cities}", source=source, key=key)
    unknown = set(raw) - {"code", "address", "cities"}
    if unknown:
        raise ConfigError(f"unknown keys {sorted(unknown)}", source=source, key=key)
    code = raw.get("code")
    if not isinstance(code, str) or not CODE.match(code):
        raise ConfigError("expected a lowercase code", source=source, key=f"{key}.code")
    if code == identity:
        raise ConfigError("a node is not its own peer", source=source, key=f"{key}.code")
    if code == PUBLIC_AUDIENCE:
        raise ConfigError(
            f"{PUBLIC_AUDIENCE!r} is reserved for the common API's public audience",
            source=source,
            key=f"{key}.code",
        )
    address = raw.get("address")
    if not isinstance(address, str) or not re.match(r"^[A-Za-z0-9.\[\]:-]+:\d{1,5}$", address):
        raise ConfigError("expected host:port", source=source, key=f"{key}.address")
    cities = raw.get("cities", [code])
    if not isinstance(cities, list) or not all(
        isinstance(c, str) and CODE.match(c) for c in cities
    ):
        raise ConfigError("expected a list of city codes", source=source, key=f"{key}.cities")
    return Peer(code, address, tuple(cities))
