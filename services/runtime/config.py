"""Typed node configuration from ``deploy/node.yaml`` plus environment overrides.

All configuration is read and validated here, once, so that a bad value stops a
service at start with the file (or variable), the key and what is expected,
instead of failing later somewhere deep in a Kafka callback.
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from services.runtime.errors import ConfigError
from services.runtime.paths import NODE_FILE, REPO_ROOT
from services.runtime.yaml_config import parse_strict

ENV_PREFIX = "CITEPLUS"

# Metrics port offsets: one node runs every service on one machine.
SERVICE_PORT_OFFSETS: dict[str, int] = {
    "ingest": 1,
    "anonymise": 2,
    "normalise": 3,
    "energy-analytics": 4,
    "publish": 5,
}


@dataclass(frozen=True)
class NodeSection:
    id: str = "dev-node"
    state_dir: str = "var"


@dataclass(frozen=True)
class KafkaSection:
    bootstrap: str = "127.0.0.1:9092"
    replication_factor: int = 1


@dataclass(frozen=True)
class RegistrySection:
    url: str = "http://127.0.0.1:8081/apis/ccompat/v7"


@dataclass(frozen=True)
class ProcessingSection:
    batch_size: int = 500
    batch_timeout_s: float = 0.5
    transaction_timeout_ms: int = 60000
    # energy-analytics: a city x carrier that received nothing for this long has its
    # days older than the lateness closed and released by the wall clock (0: never).
    idle_close_s: float = 600.0


@dataclass(frozen=True)
class MetricsSection:
    host: str = "127.0.0.1"
    base_port: int = 9400


@dataclass(frozen=True)
class IngestSection:
    """Where ingest listens, and the bounds a hostile or clumsy client meets
    (services/ingest/limits.py says what each one does)."""

    host: str = "127.0.0.1"
    port: int = 8000
    header_timeout_s: float = 10.0  # a request's headers complete within this, or 408
    body_window_s: float = 10.0  # a body slower than body_min_rate over a window: 408
    body_min_rate: int = 1024  # bytes/s on the wire, per request
    max_connections: int = 256  # open connections; beyond, 503 with Retry-After
    max_requests_per_source: int = 32  # one source's requests in progress; beyond, 429
    body_memory_mb: int = 96  # request bodies held at once, all requests; beyond, 503
    keepalive_timeout_s: float = 30.0  # an idle kept-alive connection is closed after it
    public_catalogue: bool = False  # GET /v1/cities without a token


@dataclass(frozen=True)
class FederationSection:
    """The gRPC federation API (services/federation): where it listens, who this node
    is to its partners, its certificates and the file listing its partner nodes."""

    enabled: bool = True  # served inside publish when this node has a certificate
    identity: str = ""  # this node's city or syndicate code; empty: node.id
    listen: str = "127.0.0.1:7443"
    certs_dir: str = ""  # empty: <state_dir>/federation/certs
    peers_file: str = "deploy/federation.yaml"
    peer_timeout_s: float = 5.0


@dataclass(frozen=True)
class NodeConfig:
    """Everything a service of this node needs to reach Kafka, the registry and disk."""

    node: NodeSection = NodeSection()
    kafka: KafkaSection = KafkaSection()
    registry: RegistrySection = RegistrySection()
    processing: ProcessingSection = ProcessingSection()
    metrics: MetricsSection = MetricsSection()
    ingest: IngestSection = IngestSection()
    federation: FederationSection = FederationSection()
    source: str = "<defaults>"

    @property
    def state_dir(self) -> Path:
        path = Path(self.node.state_dir)
        return path if path.is_absolute() else REPO_ROOT / path

    def metrics_port(self, service: str) -> int:
        return self.metrics.base_port + SERVICE_PORT_OFFSETS.get(service, 0)


T = TypeVar("T")


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_REFUSED = object()  # a coercer's answer for a value it cannot convert


def _to_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    return _REFUSED


def _to_int(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return _REFUSED


def _to_float(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return _REFUSED


def _to_str(value: Any) -> Any:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    return _REFUSED


# The declared types a value is converted to (environment values are all text);
# any other type (unions, paths...) takes the value as it is.
_COERCERS: dict[Any, Callable[[Any], Any]] = {
    bool: _to_bool,
    int: _to_int,
    float: _to_float,
    str: _to_str,
}


def _coerce(value: Any, kind: Any, where: str, source: str) -> Any:
    """Convert a YAML or environment value to the declared type, or explain why not."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return value
    coercer = _COERCERS.get(kind)
    if coercer is None:
        return value
    converted = coercer(value)
    if converted is _REFUSED:
        raise ConfigError(f"expected {kind.__name__}, got {value!r}", source=source, key=where)
    return converted


def _section(cls: type[T], raw: Any, name: str, source: str, env: dict[str, str]) -> T:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("expected a mapping", source=source, key=name)
    allowed = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(raw) - allowed
    if unknown:
        raise ConfigError(
            f"unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})", source=source, key=name
        )
    values: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in fields(cls):  # type: ignore[arg-type]
        variable = f"{ENV_PREFIX}_{name}_{f.name}".upper()
        if variable in env:
            values[f.name] = _coerce(env[variable], hints[f.name], variable, "environment")
        elif f.name in raw:
            values[f.name] = _coerce(raw[f.name], hints[f.name], f"{name}.{f.name}", source)
    return cls(**values)


def load_node_config(path: Path | None = None, env: dict[str, str] | None = None) -> NodeConfig:
    """Load the node file (``CITEPLUS_NODE_FILE`` or ``deploy/node.yaml``) with env overrides."""
    env = _with_local_aliases(dict(os.environ if env is None else env))
    if path is None:
        path = Path(env["CITEPLUS_NODE_FILE"]) if "CITEPLUS_NODE_FILE" in env else NODE_FILE
    source = str(path)
    try:
        document = parse_strict(path.read_text(encoding="utf-8"), source) or {}
    except FileNotFoundError:
        raise ConfigError(
            "node file not found; copy deploy/node.yaml or unset CITEPLUS_NODE_FILE",
            source=source,
        ) from None
    if not isinstance(document, dict):
        raise ConfigError("expected a mapping at the top level", source=source)
    sections = {f.name: f for f in fields(NodeConfig) if f.name != "source"}
    unknown = set(document) - set(sections)
    if unknown:
        raise ConfigError(
            f"unknown sections {sorted(unknown)} (allowed: {sorted(sections)})", source=source
        )
    built: dict[str, Any] = {}
    for name, f in sections.items():
        cls = f.default.__class__
        assert is_dataclass(cls)
        built[name] = _section(cls, document.get(name), name, source, env)
    config = NodeConfig(**built, source=source)
    _validate(config)
    return config


def _with_local_aliases(env: dict[str, str]) -> dict[str, str]:
    """The variables that place the local broker and registry (CITEPLUS_STATE,
    CITEPLUS_KAFKA_PORT, CITEPLUS_REGISTRY_PORT, used by `citeplus infra`) also
    place the node that talks to them, unless the node's own keys are set."""
    aliases = {
        "CITEPLUS_NODE_STATE_DIR": ("CITEPLUS_STATE", "{}"),
        "CITEPLUS_KAFKA_BOOTSTRAP": ("CITEPLUS_KAFKA_PORT", "127.0.0.1:{}"),
        "CITEPLUS_REGISTRY_URL": ("CITEPLUS_REGISTRY_PORT", "http://127.0.0.1:{}/apis/ccompat/v7"),
    }
    for target, (variable, template) in aliases.items():
        if target not in env and env.get(variable):
            env[target] = template.format(env[variable])
    return env


def _validate(config: NodeConfig) -> None:
    if config.kafka.replication_factor < 1:
        raise ConfigError(
            "must be at least 1", source=config.source, key="kafka.replication_factor"
        )
    if config.processing.batch_size < 1:
        raise ConfigError("must be at least 1", source=config.source, key="processing.batch_size")
    if config.processing.batch_timeout_s <= 0:
        raise ConfigError(
            "must be positive", source=config.source, key="processing.batch_timeout_s"
        )
    if not config.registry.url.startswith(("http://", "https://")):
        raise ConfigError(
            f"expected an http(s) URL, got {config.registry.url!r}",
            source=config.source,
            key="registry.url",
        )
    host, _, port = config.federation.listen.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            f"expected host:port, got {config.federation.listen!r}",
            source=config.source,
            key="federation.listen",
        )
    if config.federation.peer_timeout_s <= 0:
        raise ConfigError("must be positive", source=config.source, key="federation.peer_timeout_s")
    _validate_ingest(config)
    if ":" not in config.kafka.bootstrap:
        raise ConfigError(
            f"expected host:port[,host:port], got {config.kafka.bootstrap!r}",
            source=config.source,
            key="kafka.bootstrap",
        )


def _validate_ingest(config: NodeConfig) -> None:
    section = config.ingest
    for key in ("header_timeout_s", "body_window_s", "keepalive_timeout_s"):
        if getattr(section, key) <= 0:
            raise ConfigError("must be positive", source=config.source, key=f"ingest.{key}")
    for key in ("body_min_rate", "max_connections", "max_requests_per_source", "body_memory_mb"):
        if getattr(section, key) < 1:
            raise ConfigError("must be at least 1", source=config.source, key=f"ingest.{key}")
