"""Topics declared in ``deploy/topics.yaml``, created or verified against a broker.

Declaring topics in one file and checking them at start-up is what lets every
node look the same: a topic created by hand with other settings is reported.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from services.runtime.errors import ConfigError, InfrastructureError
from services.runtime.paths import TOPICS_FILE
from services.runtime.schemas import load_schemas
from services.runtime.yaml_config import parse_strict

_CLEANUP_POLICIES = {"delete", "compact", "compact,delete"}


@dataclass(frozen=True)
class TopicSpec:
    """One declared topic."""

    name: str
    value: str
    key: str
    partitions: int
    retention_ms: int
    cleanup_policy: str

    @property
    def subject(self) -> str:
        """Registry subject of the topic's values (TopicNameStrategy)."""
        return f"{self.name}-value"

    def configs(self) -> dict[str, str]:
        return {"cleanup.policy": self.cleanup_policy, "retention.ms": str(self.retention_ms)}


@dataclass
class ProvisionReport:
    """What provisioning found: topics created, already right, and mismatches."""

    created: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


def _require(entry: dict[str, Any], key: str, kind: type, where: str, source: str) -> Any:
    if key not in entry:
        raise ConfigError("missing required key", source=source, key=f"{where}.{key}")
    value = entry[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ConfigError(
            f"expected {kind.__name__}, got {value!r}", source=source, key=f"{where}.{key}"
        )
    return value


PARTNER_PLACEHOLDER = "{partner}"
_KEYS = ("name", "value", "key", "partitions", "retention_ms", "cleanup_policy")


class TopicName:
    """The declared names, written once: every service names a topic through these
    (or a :class:`Topic` resolved from them), never with a string of its own.

    ``deploy/topics.yaml`` stays the truth: :class:`TopicRegistry` refuses to start
    when a name here is not declared there (tests/unit/test_topic_registry.py checks
    both ways, and that no other module of ``services/`` writes a topic name).
    """

    RAW = "raw.v1"
    RAW_V2 = "raw.v2"  # RawBatch: many entities per message (raw zone, like raw.v1)
    RAW_DEAD_LETTERS = "raw.dlq.v1"
    ANONYMISED = "anonymised.v1"
    ANONYMISED_V2 = "anonymised.v2"
    OBSERVATIONS = "observations.v1"
    OBSERVATIONS_V2 = "observations.v2"
    ENERGY_AGGREGATES = "energy.aggregates.v1"
    ENERGY_RELEASED = "energy.aggregates.released.v2"
    ENERGY_REGROUPED_V1 = "energy.regrouped.v1"  # one meter per message: read, not written
    ENERGY_REGROUPED = "energy.regrouped.v2"  # ObservationBatch: many meters per message
    ENERGY_STATE = "energy.state.v1"
    PUBLIC_OBSERVATIONS = "public.observations.v1"
    SHARED_OBSERVATIONS = "public.shared.{partner}.observations.v1"
    PUBLIC_AGGREGATES_V1 = "public.energy.aggregates.v1"
    SHARED_AGGREGATES_V1 = "public.shared.{partner}.energy.aggregates.v1"
    PUBLIC_AGGREGATES = "public.energy.aggregates.v2"
    SHARED_AGGREGATES = "public.shared.{partner}.energy.aggregates.v2"
    AUDIT = "audit.v1"
    ANONYMISE_STATE = "anonymise.state.v1"
    NORMALISE_STATE = "normalise.state.v1"
    INGEST_STATE = "ingest.state.v1"
    DEAD_LETTERS = "dlq.v1"
    API_SUBSCRIPTIONS = "api.subscriptions.v1"
    API_SUBSCRIPTION_STATE = "api.subscription-state.v1"

    @classmethod
    def all(cls) -> list[str]:
        """Every declared name this module knows, templates included."""
        return [v for k, v in vars(cls).items() if k.isupper() and isinstance(v, str)]


def _read_declarations(path: Path) -> list[TopicSpec]:
    """The topics file's entries as written (templates unexpanded), validated."""
    source = str(path)
    try:
        document = parse_strict(path.read_text(encoding="utf-8"), source)
    except FileNotFoundError:
        raise ConfigError("file not found", source=source) from None
    if not isinstance(document, dict) or not isinstance(document.get("topics"), list):
        raise ConfigError("expected a list under `topics:`", source=source, key="topics")
    known_values = load_schemas()
    specs: list[TopicSpec] = []
    for index, entry in enumerate(document["topics"]):
        spec = _declaration(entry, f"topics[{index}]", source, known_values)
        if any(s.name == spec.name for s in specs):
            raise ConfigError(
                f"topic {spec.name!r} declared twice", source=source, key=f"topics[{index}]"
            )
        specs.append(spec)
    return specs


def _declaration(entry: Any, where: str, source: str, known_values: Any) -> TopicSpec:
    """One entry of the topics file as a TopicSpec; errors name the file and the key."""
    if not isinstance(entry, dict):
        raise ConfigError("expected a mapping", source=source, key=where)
    unknown = set(entry) - set(_KEYS)
    if unknown:
        raise ConfigError(f"unknown keys {sorted(unknown)}", source=source, key=where)
    spec = TopicSpec(
        name=_require(entry, "name", str, where, source),
        value=_require(entry, "value", str, where, source),
        key=_require(entry, "key", str, where, source),
        partitions=_require(entry, "partitions", int, where, source),
        retention_ms=_require(entry, "retention_ms", int, where, source),
        cleanup_policy=_require(entry, "cleanup_policy", str, where, source),
    )
    if spec.value not in known_values:
        raise ConfigError(
            f"no Avro contract {spec.value!r} in avro/ (known: {sorted(known_values)})",
            source=source,
            key=f"{where}.value",
        )
    if spec.partitions < 1:
        raise ConfigError("must be at least 1", source=source, key=f"{where}.partitions")
    if spec.cleanup_policy not in _CLEANUP_POLICIES:
        raise ConfigError(
            f"must be one of {sorted(_CLEANUP_POLICIES)}",
            source=source,
            key=f"{where}.cleanup_policy",
        )
    return spec


def load_topics(
    path: Path = TOPICS_FILE, *, partners: list[str] | None = None
) -> dict[str, TopicSpec]:
    """Read and validate the topics file; errors name the file and the key.

    A name holding ``{partner}`` is a template: one topic per partner city named
    in the sharing sections of the city files (``partners``); without partners
    templates are left out.
    """
    specs: dict[str, TopicSpec] = {}
    for spec in _read_declarations(path):
        if PARTNER_PLACEHOLDER in spec.name:
            for partner in partners or ():
                name = spec.name.replace(PARTNER_PLACEHOLDER, partner)
                specs[name] = replace(spec, name=name)
            continue
        specs[spec.name] = spec
    return specs


def partner_topic(template: str, partner: str) -> str:
    return template.replace(PARTNER_PLACEHOLDER, partner)


@dataclass(frozen=True)
class Topic:
    """A declared topic as one node (or one test's prefixed copy) uses it.

    Resolved once from ``deploy/topics.yaml`` and handed to the stages that read or
    write it, as quixstreams hands ``Topic`` objects to its applications: a stage
    learns its topic's name, contract and partition count from here, never from a
    literal of its own. ``prefix`` is the one mechanism for side-by-side copies
    (tests, benches, ``--topic-prefix``): it is put in front of the declared name.
    """

    declared: str
    spec: TopicSpec  # its name already prefixed
    prefix: str = ""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def contract(self) -> str:
        """The Avro contract (record name) of the topic's values."""
        return self.spec.value

    @property
    def subject(self) -> str:
        return self.spec.subject

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def partitions(self) -> int:
        return self.spec.partitions

    def for_partner(self, partner: str) -> Topic:
        """The partner's copy of a ``{partner}`` template."""
        return Topic(
            self.declared, replace(self.spec, name=partner_topic(self.name, partner)), self.prefix
        )


class TopicRegistry:
    """Every declared topic, resolved once under one prefix (empty in production)."""

    def __init__(self, declarations: list[TopicSpec], prefix: str = ""):
        self.prefix = prefix
        self._topics = {
            spec.name: Topic(spec.name, replace(spec, name=prefix + spec.name), prefix)
            for spec in declarations
        }
        missing = sorted(set(TopicName.all()) - set(self._topics))
        if missing:
            raise ConfigError(
                f"topics {missing} are used by the services but not declared",
                source=str(TOPICS_FILE),
            )

    @classmethod
    def load(cls, prefix: str = "", path: Path = TOPICS_FILE) -> TopicRegistry:
        return cls(_read_declarations(path), prefix)

    def __getitem__(self, declared: str) -> Topic:
        try:
            return self._topics[declared]
        except KeyError:
            raise ConfigError(
                f"topic {declared!r} is not declared", source=str(TOPICS_FILE)
            ) from None

    def name(self, declared: str) -> str:
        """The topic's name under this registry's prefix."""
        return self[declared].name

    def specs(self, *declared: str) -> list[TopicSpec]:
        """What to provision for these topics (prefixed; templates are not topics)."""
        return [self[name].spec for name in declared]


@functools.lru_cache(maxsize=16)
def resolve_topics(prefix: str = "") -> TopicRegistry:
    """The declared topics under ``prefix``, read once per process."""
    return TopicRegistry.load(prefix)


def companion(name: str, declared: str, other: str, *, fallback: str) -> str:
    """The topic that goes with ``name``, a (prefixed) copy of ``declared``: ``other``
    under the same prefix (``test.x.dlq.v1`` -> ``test.x.raw.dlq.v1``), so prefixed
    copies of the topics stay together. A name that is no copy of ``declared`` gets
    ``name`` + ``fallback``."""
    if name.endswith(declared):
        return name[: -len(declared)] + other
    return name + fallback


# Each v2 batch topic and the v1 topic of its member records: a member's dead letter
# is replayed there, and stages read both while a node migrates.
BATCH_SIBLINGS: tuple[tuple[str, str], ...] = (
    (TopicName.RAW_V2, TopicName.RAW),
    (TopicName.ANONYMISED_V2, TopicName.ANONYMISED),
    (TopicName.OBSERVATIONS_V2, TopicName.OBSERVATIONS),
)


def member_sibling(name: str) -> str | None:
    """The v1 topic beside batch topic ``name`` (a prefixed copy alike:
    ``test.x.raw.v2`` -> ``test.x.raw.v1``), or None when ``name`` is no batch topic."""
    for batches, members in BATCH_SIBLINGS:
        if name == batches or name.endswith("." + batches):
            return name[: -len(batches)] + members
    return None


def durability_configs(replication_factor: int) -> dict[str, str]:
    """The topic settings that make an acknowledged write survive a broker's loss:
    ``min.insync.replicas`` 2 of 3 replicas (1 of 1 or 2), unclean leader election off
    (a replica that missed writes never becomes leader and silently drops them)."""
    min_insync = replication_factor - 1 if replication_factor >= 3 else 1
    return {"min.insync.replicas": str(min_insync), "unclean.leader.election.enable": "false"}


def provision(
    admin: AdminClient, specs: list[TopicSpec], replication_factor: int, timeout: float = 30.0
) -> ProvisionReport:
    """Create missing topics and verify existing ones against their declaration and the
    node's replication (replicas, ``min.insync.replicas``, unclean election off)."""
    report = ProvisionReport()
    try:
        existing = admin.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise InfrastructureError(f"cannot list topics: {exc}; is the broker running?") from exc
    missing = [spec for spec in specs if spec.name not in existing]
    raced: list[str] = []
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(
                    spec.name,
                    num_partitions=spec.partitions,
                    replication_factor=replication_factor,
                    config=spec.configs() | durability_configs(replication_factor),
                )
                for spec in missing
            ],
            operation_timeout=timeout,
        )
        for name, future in futures.items():
            try:
                future.result()
                report.created.append(name)
            except KafkaException as exc:
                if exc.args[0].code() != exc.args[0].TOPIC_ALREADY_EXISTS:
                    raise InfrastructureError(f"cannot create topic {name}: {exc}") from exc
                raced.append(name)  # created meanwhile by someone else: verify it too
    if raced:
        existing = _wait_for_metadata(admin, raced, timeout)
    present = [spec for spec in specs if spec.name in existing]
    if present:
        _verify(admin, present, existing, replication_factor, report, timeout)
    return report


def _wait_for_metadata(admin: AdminClient, names: list[str], timeout: float) -> dict[str, Any]:
    """Topic metadata once every name in ``names`` is visible (creation propagates)."""
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=timeout).topics
        if all(name in topics and topics[name].partitions for name in names):
            return topics
        if time.monotonic() > deadline:
            raise InfrastructureError(f"topics {names} exist but their metadata never appeared")
        time.sleep(0.2)


def _verify(
    admin: AdminClient,
    specs: list[TopicSpec],
    existing: dict[str, Any],
    replication_factor: int,
    report: ProvisionReport,
    timeout: float,
) -> None:
    resources = [ConfigResource(ConfigResource.Type.TOPIC, spec.name) for spec in specs]
    described = admin.describe_configs(resources, request_timeout=timeout)
    configs_by_name = {res.name: future.result() for res, future in described.items()}
    for spec in specs:
        problems = _problems(
            spec, existing[spec.name], configs_by_name[spec.name], replication_factor
        )
        if problems:
            report.mismatches.append(f"{spec.name}: " + "; ".join(problems))
        else:
            report.verified.append(spec.name)


def _problems(spec: TopicSpec, metadata: Any, actual: Any, replication_factor: int) -> list[str]:
    """What differs between an existing topic and its declaration, each with the fix."""
    problems = []
    if len(metadata.partitions) != spec.partitions:
        problems.append(f"partitions {len(metadata.partitions)} (declared {spec.partitions})")
    replicas = {len(p.replicas) for p in metadata.partitions.values()}
    if replicas and replicas != {replication_factor}:
        problems.append(
            f"replication {sorted(replicas)} (node wants {replication_factor}: "
            "kafka-reassign-partitions.sh adds replicas)"
        )
    for key, wanted in spec.configs().items():
        have = actual[key].value if key in actual else None
        if have != wanted:
            problems.append(f"{key}={have} (declared {wanted})")
    for key, wanted in durability_configs(replication_factor).items():
        have = actual[key].value if key in actual else None
        if have != wanted:
            problems.append(
                f"{key}={have} (node wants {wanted} with {replication_factor} replicas: "
                f"kafka-configs.sh --alter --add-config {key}={wanted})"
            )
    return problems
