"""Typed node configuration from ``deploy/node.yaml`` plus environment overrides.

All configuration is read and validated here, once, so that a bad value stops a
service at start with the file (or variable), the key and what is expected,
instead of failing later somewhere deep in a Kafka callback.
"""

from __future__ import annotations

import ipaddress
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from services.runtime.errors import ConfigError, InfrastructureError
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
    "api": 6,
}


@dataclass(frozen=True)
class NodeSection:
    id: str = "dev-node"
    state_dir: str = "var"


@dataclass(frozen=True)
class KafkaSection:
    """Where Kafka is and how topics are replicated. ``brokers`` is the size of the
    local cluster (``citeplus infra up --brokers 3``): a local bootstrap of one
    address then stands for that port and the next ``brokers - 1``.
    ``replication_factor`` 0 means "as many as brokers, at most 3"."""

    bootstrap: str = "127.0.0.1:9092"
    replication_factor: int = 0
    brokers: int = 1

    @property
    def replicas(self) -> int:
        """The replication factor topics are created with and checked against."""
        return self.replication_factor or min(self.brokers, 3)

    @property
    def min_insync(self) -> int:
        """In-sync replicas a write needs: 2 of 3 (one broker may be down), else 1."""
        return self.replicas - 1 if self.replicas >= 3 else 1


@dataclass(frozen=True)
class RegistrySection:
    url: str = "http://127.0.0.1:8081/apis/ccompat/v7"


@dataclass(frozen=True)
class ProcessingSection:
    """How stages cycle: a batch (one transaction) closes when it holds ``batch_size``
    messages or ``linger_ms`` after its first message arrived (services/runtime/linger.py);
    an idle stage waits up to ``batch_timeout_s`` for a first message (a blocking wait)."""

    batch_size: int = 500
    batch_timeout_s: float = 0.5
    linger_ms: int = 20
    transaction_timeout_ms: int = 60000
    # energy-analytics: a city x carrier that received nothing for this long has its
    # days older than the lateness closed and released by the wall clock (0: never).
    idle_close_s: float = 600.0
    # The consumer group protocol of the stages: "classic" (the client-side assignor
    # runs, pinned to "range" where co-partitioning matters) or "consumer" (KIP-848:
    # the broker assigns, and ignores client-side assignors). energy-analytics needs
    # co-partitioning and refuses "consumer" (services.runtime.copartition).
    group_protocol: str = "classic"


# Services that may run as several workers (each its own process in the stage's
# consumer group). publish and the api stay one process: the embedded warehouse
# (chDB) may be opened by one process only.
SCALABLE = ("ingest", "anonymise", "normalise", "energy-analytics")
# A worker's metrics port: the service's port plus this step per worker index.
WORKER_PORT_STEP = 10


@dataclass(frozen=True)
class ReplicasSection:
    """How many workers of each stage the node's supervisor runs."""

    ingest: int = 1
    anonymise: int = 1
    normalise: int = 1
    energy_analytics: int = 1
    publish: int = 1
    api: int = 1

    def of(self, service: str) -> int:
        """The workers of ``service`` (1 for a service not listed)."""
        return int(getattr(self, service.replace("-", "_"), 1))


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
    # A batch's commit (acks=all) has this long before the answer is 503. It covers a
    # crashed broker's partitions changing leader (fenced after 6 s): well under it on
    # an idle machine, up to about 10 s measured under load on a 3-broker cluster.
    commit_timeout_s: float = 20.0


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
class SubscriptionsSection:
    """NGSI-LD subscriptions of the common API (``api.subscriptions``): where their
    notifications may go, how many a key may hold, and how the delivery engine sends.

    ``allow_targets`` lists addresses or ranges notifications may reach although they
    are not public (loopback, private, link-local...: refused by default, as a
    subscription would otherwise make the node call into its own network)."""

    allow_targets: str = ""  # comma-separated addresses or ranges, like 127.0.0.1,10.1.0.0/16
    per_key: int = 20  # subscriptions a key may hold (a key's --max-subscriptions overrides)
    min_time_interval_s: float = 1.0  # the shortest period of a periodic subscription
    retry_min_s: float = 1.0  # first wait after a failed notification, doubled each time
    retry_max_s: float = 300.0  # the longest wait between two attempts
    max_batch: int = 100  # entities in one notification at most
    request_timeout_s: float = 10.0  # a receiver slower than this is a failed attempt


@dataclass(frozen=True)
class ApiSection:
    """The common HTTP API (services/api): where it listens and the quotas its callers
    meet. Rates are requests per second, refilled continuously; a burst is how many may
    come at once after a quiet spell. Anonymous callers share one bucket per client
    address; a key has its own (its ``--rate`` when it was created with one)."""

    host: str = "127.0.0.1"
    port: int = 8010
    anonymous_rate: float = 5.0  # requests/s per client address without a key
    anonymous_burst: int = 20
    key_rate: float = 50.0  # requests/s per key (unless the key carries its own)
    key_burst: int = 100
    cache_ttl_s: float = 10.0  # Cache-Control max-age of answers, and the api's own caches
    keys_reload_s: float = 1.0  # a created or revoked key is seen within this
    trusted_proxies: str = ""  # addresses or ranges (a,b/24) whose X-Forwarded-For counts
    max_url_bytes: int = 4096  # longer request targets: 414
    max_header_bytes: int = 16384  # larger request headers in total: 431
    subscriptions: SubscriptionsSection = SubscriptionsSection()


@dataclass(frozen=True)
class SqlSection:
    """ClickHouse's HTTP interface, served by publish for the embedded warehouse
    (services/publish/clickhouse_http): the one SQL door of analysts and `citeplus sql`."""

    enabled: bool = True  # off: no SQL door at all (citeplus sql then needs publish stopped)
    host: str = "127.0.0.1"  # 0.0.0.0 to let analysts of other machines in (behind TLS)
    port: int = 8123  # ClickHouse's own HTTP port, what clients default to
    readers: int = 4  # analyst queries that run at once (each on its own chDB session)
    max_execution_time_s: int = 60  # a query's ceiling; a client may ask less, never more
    max_result_rows: int = 1_000_000
    max_result_mb: int = 256
    max_memory_mb: int = 2048  # memory one query may hold (publish's process holds the sink too)
    max_query_kb: int = 1024  # a query's text (URL + body, uncompressed)
    max_threads: int = 0  # threads per analyst query; 0: one per core


@dataclass(frozen=True)
class PublishSection:
    """How publish's ClickHouse sink batches its inserts. Every insert makes new parts
    (one per table partition, and as many in each rollup a materialised view feeds),
    which ClickHouse then merges: an insert per short cycle would flood it. The sink
    inserts when it holds ``flush_rows`` rows or ``flush_ms`` after its previous insert
    (and no sooner than the batch's first message), whichever comes first: at most one
    insert per ``flush_ms``, none waiting after a quiet spell (latency vs parts per minute:
    docs/runbook.md, "Commit cycles")."""

    flush_rows: int = 100_000
    flush_ms: int = 200
    # While the last two batches each came at busy_rows_per_s or faster (one alone is
    # a burst), the next insert waits busy_flush_ms instead: fewer, larger inserts
    # when each insert's fixed cost weighs (services/publish/insert_pacing.py); never
    # shorter than flush_ms (a busy_flush_ms at or below it: one spacing).
    busy_flush_ms: int = 600
    busy_rows_per_s: int = 10_000


@dataclass(frozen=True)
class WarehouseSection:
    """A ClickHouse server to use instead of the embedded chDB warehouse (empty: chDB).

    Its URL carries the writer's password, so it comes from the environment
    (``CLICKHOUSE_URL``, kept in the node's secrets file), never from node.yaml in git,
    and it is left out of the configuration's repr (logs)."""

    url: str = field(default="", repr=False)


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
    publish: PublishSection = PublishSection()
    warehouse: WarehouseSection = WarehouseSection()
    api: ApiSection = ApiSection()
    sql: SqlSection = SqlSection()
    replicas: ReplicasSection = ReplicasSection()
    source: str = "<defaults>"

    @property
    def state_dir(self) -> Path:
        path = Path(self.node.state_dir)
        return path if path.is_absolute() else REPO_ROOT / path

    def metrics_port(self, service: str, worker: int = 0) -> int:
        """The /metrics port of ``service``'s worker ``worker`` (0: the first)."""
        offset = SERVICE_PORT_OFFSETS.get(service, 0) + WORKER_PORT_STEP * worker
        return self.metrics.base_port + offset


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
        variable = f"{ENV_PREFIX}_{name}_{f.name}".upper().replace(".", "_")
        if is_dataclass(hints[f.name]):  # a section inside the section (api.subscriptions)
            values[f.name] = _section(
                hints[f.name], raw.get(f.name), f"{name}.{f.name}", source, env
            )
        elif variable in env:
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
    return _with_cluster_bootstrap(config)


def _with_cluster_bootstrap(config: NodeConfig) -> NodeConfig:
    """With ``kafka.brokers: N`` and one local address as bootstrap, the N local
    brokers' addresses (port, port+1...): the same node file drives one broker or
    a local cluster. A bootstrap that lists several addresses is kept as written."""
    kafka = config.kafka
    host, _, port = kafka.bootstrap.rpartition(":")
    if kafka.brokers == 1 or "," in kafka.bootstrap or host != LOCAL_HOST:
        return config
    listed = ",".join(f"{host}:{int(port) + i}" for i in range(kafka.brokers))
    return replace(config, kafka=replace(kafka, bootstrap=listed))


def _with_local_aliases(env: dict[str, str]) -> dict[str, str]:
    """The variables that place the local broker and registry (CITEPLUS_STATE,
    CITEPLUS_KAFKA_PORT, CITEPLUS_REGISTRY_PORT, used by `citeplus infra`) also
    place the node that talks to them, unless the node's own keys are set; and
    CLICKHOUSE_URL, the name deployments know, is the warehouse section's url."""
    local = load_local_infra(env)
    aliases = {  # read only when the node's own key is not set
        "CITEPLUS_NODE_STATE_DIR": lambda: local.state_dir,
        "CITEPLUS_KAFKA_BOOTSTRAP": lambda: local.kafka_bootstrap,
        "CITEPLUS_REGISTRY_URL": lambda: local.registry_url,
        "CITEPLUS_WAREHOUSE_URL": lambda: env.get("CLICKHOUSE_URL") or None,
    }
    for target, value in aliases.items():
        if target not in env and (found := value()):
            env[target] = found
    return env


# -- the machine's own broker and registry ------------------------------------------

LOCAL_HOST = "127.0.0.1"
CCOMPAT_PATH = "/apis/ccompat/v7"  # the registry's Confluent-compatible API

LOCAL_VARIABLES = (
    "CITEPLUS_STATE",
    "CITEPLUS_CACHE",
    "CITEPLUS_KAFKA_PORT",
    "CITEPLUS_KAFKA_CONTROLLER_PORT",
    "CITEPLUS_KAFKA_BROKERS",
    "CITEPLUS_REGISTRY_PORT",
)


@dataclass(frozen=True)
class LocalInfra:
    """Where this machine's own Kafka broker and schema registry (``citeplus infra``,
    tests) keep their files and listen: their variables are read here only, so the
    infra commands and the node that talks to them agree, and a bad port is refused
    where it is used, naming its variable. ``None``: not set (each user has its
    default)."""

    variables: Mapping[str, str] = field(default_factory=dict)

    @property
    def state_dir(self) -> str | None:
        return self.variables.get("CITEPLUS_STATE") or None

    @property
    def cache_dir(self) -> str | None:
        return self.variables.get("CITEPLUS_CACHE") or None

    @property
    def kafka_port(self) -> int | None:
        return _port(self.variables, "CITEPLUS_KAFKA_PORT", 19092)

    @property
    def kafka_controller_port(self) -> int | None:
        return _port(self.variables, "CITEPLUS_KAFKA_CONTROLLER_PORT", 19093)

    @property
    def kafka_brokers(self) -> int | None:
        """Brokers of the local cluster (1 or 3), from ``CITEPLUS_KAFKA_BROKERS``."""
        raw = self.variables.get("CITEPLUS_KAFKA_BROKERS", "").strip()
        if not raw:
            return None
        if raw not in ("1", "3"):
            raise InfrastructureError(
                f"CITEPLUS_KAFKA_BROKERS={raw!r}: a local Kafka runs 1 broker or a cluster of 3."
            )
        return int(raw)

    @property
    def registry_port(self) -> int | None:
        return _port(self.variables, "CITEPLUS_REGISTRY_PORT", 18081)

    @property
    def kafka_bootstrap(self) -> str | None:
        port = self.kafka_port
        return f"{LOCAL_HOST}:{port}" if port else None

    @property
    def registry_url(self) -> str | None:
        port = self.registry_port
        return registry_url(port) if port else None


def registry_url(port: int) -> str:
    """The Confluent-compatible URL of a registry of this machine."""
    return f"http://{LOCAL_HOST}:{port}{CCOMPAT_PATH}"


def load_local_infra(env: Mapping[str, str] | None = None) -> LocalInfra:
    """The local infrastructure's variables (``os.environ`` at each call, so a test
    can change them)."""
    env = os.environ if env is None else env
    return LocalInfra({name: env[name] for name in LOCAL_VARIABLES if name in env})


def _port(env: Mapping[str, str], name: str, example: int) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise InfrastructureError(f"{name}={raw!r} is not a TCP port; use a number like {example}.")
    return int(raw)


def _validate(config: NodeConfig) -> None:
    _validate_kafka(config)
    _validate_cycles(config)
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
    _validate_replicas(config)
    _validate_api(config)
    _validate_subscriptions(config)
    _validate_sql(config)
    if ":" not in config.kafka.bootstrap:
        raise ConfigError(
            f"expected host:port[,host:port], got {config.kafka.bootstrap!r}",
            source=config.source,
            key="kafka.bootstrap",
        )


# Longest linger / flush wait accepted: beyond it a record's latency is the wait, and a
# batch held that long is more likely to meet a rebalance or a transaction timeout.
MAX_WAIT_MS = 60_000


def _validate_cycles(config: NodeConfig) -> None:
    """Batch sizes and waits of the stages and of publish's sink (services/runtime/linger.py)."""
    processing, publish = config.processing, config.publish
    if processing.batch_size < 1:
        raise ConfigError("must be at least 1", source=config.source, key="processing.batch_size")
    if processing.batch_timeout_s <= 0:
        raise ConfigError(
            "must be positive", source=config.source, key="processing.batch_timeout_s"
        )
    waits = (("processing.linger_ms", processing.linger_ms), ("publish.flush_ms", publish.flush_ms))
    for key, value in waits:
        if not 0 <= value <= MAX_WAIT_MS:
            raise ConfigError(
                f"must be between 0 and {MAX_WAIT_MS} milliseconds (got {value}): how long a "
                "batch waits for more after its first message; 0 takes what is queued",
                source=config.source,
                key=key,
            )
    if publish.flush_rows < 1:
        raise ConfigError("must be at least 1", source=config.source, key="publish.flush_rows")
    if not 0 <= publish.busy_flush_ms <= MAX_WAIT_MS:
        raise ConfigError(
            f"must be between 0 and {MAX_WAIT_MS} milliseconds (got {publish.busy_flush_ms}): "
            "the sink's spacing of inserts while busy; at or below flush_ms, one spacing",
            source=config.source,
            key="publish.busy_flush_ms",
        )
    if publish.busy_rows_per_s < 1:
        raise ConfigError("must be at least 1", source=config.source, key="publish.busy_rows_per_s")


def _validate_kafka(config: NodeConfig) -> None:
    kafka = config.kafka
    if kafka.replication_factor < 0:
        raise ConfigError(
            "must be 0 (as many as brokers, at most 3) or more",
            source=config.source,
            key="kafka.replication_factor",
        )
    if kafka.brokers < 1:
        raise ConfigError("must be at least 1", source=config.source, key="kafka.brokers")


def _validate_ingest(config: NodeConfig) -> None:
    section = config.ingest
    for key in ("header_timeout_s", "body_window_s", "keepalive_timeout_s", "commit_timeout_s"):
        if getattr(section, key) <= 0:
            raise ConfigError("must be positive", source=config.source, key=f"ingest.{key}")
    for key in ("body_min_rate", "max_connections", "max_requests_per_source", "body_memory_mb"):
        if getattr(section, key) < 1:
            raise ConfigError("must be at least 1", source=config.source, key=f"ingest.{key}")


def _validate_subscriptions(config: NodeConfig) -> None:
    section = config.api.subscriptions
    where = "api.subscriptions."
    for key in ("min_time_interval_s", "retry_min_s", "request_timeout_s"):
        if getattr(section, key) <= 0:
            raise ConfigError("must be positive", source=config.source, key=where + key)
    if section.per_key < 0:
        raise ConfigError("must be 0 or more", source=config.source, key=where + "per_key")
    if section.max_batch < 1:
        raise ConfigError("must be at least 1", source=config.source, key=where + "max_batch")
    if section.retry_max_s < section.retry_min_s:
        raise ConfigError(
            "must be at least retry_min_s", source=config.source, key=where + "retry_max_s"
        )


def _validate_replicas(config: NodeConfig) -> None:
    for name in ("publish", "api"):
        if config.replicas.of(name) != 1:
            raise ConfigError(
                "must be 1: publish holds the embedded warehouse (chDB), which one process "
                "only may open, and the api reads through publish's federation server; "
                "several publish workers need a ClickHouse server (docs/runbook.md)",
                source=config.source,
                key=f"replicas.{name}",
            )
    for name in SCALABLE:
        count = config.replicas.of(name)
        if not 1 <= count <= 16:
            raise ConfigError(
                "must be between 1 and 16 (workers beyond the topics' partition count stay idle)",
                source=config.source,
                key=f"replicas.{name.replace('-', '_')}",
            )
    if config.processing.group_protocol not in ("classic", "consumer"):
        raise ConfigError(
            f"expected classic or consumer, got {config.processing.group_protocol!r}",
            source=config.source,
            key="processing.group_protocol",
        )


def _validate_api(config: NodeConfig) -> None:
    section = config.api
    if not 0 < section.port < 65536:
        raise ConfigError("must be a TCP port (1-65535)", source=config.source, key="api.port")
    for key in ("anonymous_rate", "key_rate", "keys_reload_s"):
        if getattr(section, key) <= 0:
            raise ConfigError("must be positive", source=config.source, key=f"api.{key}")
    if section.cache_ttl_s < 0:
        raise ConfigError("must be 0 or more", source=config.source, key="api.cache_ttl_s")
    for key in ("anonymous_burst", "key_burst"):
        if getattr(section, key) < 1:
            raise ConfigError("must be at least 1", source=config.source, key=f"api.{key}")
    if section.max_url_bytes < 256 or section.max_header_bytes < 1024:
        raise ConfigError(
            "too small for ordinary requests (max_url_bytes >= 256, max_header_bytes >= 1024)",
            source=config.source,
            key="api",
        )
    for entry in (p.strip() for p in section.trusted_proxies.split(",") if p.strip()):
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(
                f"{entry!r} is not an IP address or range (e.g. 10.0.0.1, 10.0.0.0/24)",
                source=config.source,
                key="api.trusted_proxies",
            ) from None


def _validate_sql(config: NodeConfig) -> None:
    section = config.sql
    if not 0 < section.port < 65536:
        raise ConfigError("expected a TCP port", source=config.source, key="sql.port")
    limits = ("max_execution_time_s", "max_result_rows", "max_result_mb", "max_memory_mb")
    for key in ("readers", *limits):
        if getattr(section, key) < 1:
            raise ConfigError("must be at least 1", source=config.source, key=f"sql.{key}")
    if section.max_threads < 0:
        raise ConfigError(
            "must be 0 (one per core) or more", source=config.source, key="sql.max_threads"
        )
    if section.max_query_kb < 1:
        raise ConfigError("must be at least 1", source=config.source, key="sql.max_query_kb")
