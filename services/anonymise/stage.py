"""The anonymise stage: ``raw.v1`` and ``raw.v2`` -> ``anonymised.v2`` (+ ``audit.v1``),
exactly once (a stage wired on v1 topic names keeps ``anonymised.v1``).

The runtime's StageRunner does the consuming, transactions and dead letters;
this is the transform plus what privacy adds around it:

- a RawBatch (raw.v2, many entities) goes through the columnar fast path
  (columnar.py) when it gives exactly what its members would give one by one;
  otherwise, and for daily-coarsened sources, the runner sends each member through
  the per-record path below;

- each record goes through its source's policy with the city's key of each
  row's epoch (the city's local month of the reading's own time, see epochs.py): a record
  whose rows span two epochs is emitted as one record per epoch;
- a source coarsened to the day without consent is folded per entity and local
  day across messages (:mod:`services.anonymise.day_state`): its rows wait, policy
  applied, in a changelog-backed store committed with the batch, and one record
  per entity-day leaves when the day closes (with the key of the day's epoch);
- the batch's counts become one AuditRecord per city source on ``audit.v1``
  (in the batch's transaction) and Prometheus counters (once it committed);
- a dead letter never carries personal fields in clear: ``redact`` re-encodes
  the RawRecord with the policy applied (identifiers pseudonymised, undeclared,
  free-text and dropped fields removed, kept values through the safety net) or,
  when no policy applies, with no field at all; messages never quote values.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from services.anonymise import daily
from services.anonymise.audit import AuditLedger
from services.anonymise.columnar import anonymise_batch
from services.anonymise.day_state import DayStore, Part, row_times
from services.anonymise.policy import Policy, PolicySet, load_policies
from services.anonymise.transform import (
    COARSENED,
    RecordAudit,
    TransformError,
    anonymise_by_epoch,
    apply_policy,
    redacted_raw,
)
from services.privacy.keys import KeyStore, epoch_of, keys_dir_of
from services.runtime import dlq
from services.runtime.cities import CityConfig
from services.runtime.codec import Contracts
from services.runtime.config import NodeConfig
from services.runtime.errors import CiteplusError, RejectedInput
from services.runtime.metrics import ServiceMetrics
from services.runtime.stage import BaseStage, Emit, InputMeta, StageStore
from services.runtime.topics import TopicName, TopicRegistry, member_sibling, resolve_topics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnonymiseTopics:
    """The names of the stage's topics, as resolved by its builder (deploy/topics.yaml).

    ``raw_batches``: a second input of RawBatch messages (raw.v2), read beside ``raw``
    while a node migrates. Resolved, the stage reads raw.v1 and raw.v2 and writes
    anonymised.v2; a caller naming v1 topics alone keeps v1."""

    raw: str = TopicName.RAW
    anonymised: str = TopicName.ANONYMISED
    audit: str = TopicName.AUDIT
    state: str = TopicName.ANONYMISE_STATE  # open days of daily-coarsened sources
    dead_letters: str = dlq.DLQ_TOPIC  # the runner's: for a record's late days only
    raw_batches: str | None = None

    @classmethod
    def resolve(cls, topics: TopicRegistry) -> AnonymiseTopics:
        """The stage's topics under the registry's prefix (the v2 wiring)."""
        return cls(
            topics.name(TopicName.RAW),
            topics.name(TopicName.ANONYMISED_V2),
            topics.name(TopicName.AUDIT),
            topics.name(TopicName.ANONYMISE_STATE),
            topics.name(TopicName.DEAD_LETTERS),
            raw_batches=topics.name(TopicName.RAW_V2),
        )

    @property
    def inputs(self) -> list[str]:
        """What the stage reads: raw.v1, and raw.v2 when wired."""
        return [self.raw] + ([self.raw_batches] if self.raw_batches else [])


class AnonymiseStage(BaseStage):
    name = "anonymise"
    sensitive = True  # dead-letter messages never quote a value

    def __init__(
        self,
        policies: PolicySet,
        keys: KeyStore,
        contracts: Contracts | None = None,
        *,
        topics: AnonymiseTopics | None = None,
        metrics: ServiceMetrics | None = None,
        clock: Callable[[], float] = time.time,
        node: NodeConfig | None = None,
    ):
        self.policies = policies
        self.node = node
        self.contracts = contracts
        self.keys = keys
        self.topics = topics or AnonymiseTopics()
        self.input_topics = self.topics.inputs
        self.metrics = metrics
        self.ledger = AuditLedger(metrics.registry if metrics is not None else None)
        self._raw_codec = contracts.codec(self.topics.raw) if contracts is not None else None
        self._clock = clock
        self.daily_sources = [p for p in policies if _daily(p)]
        self.days = DayStore(
            self.topics.state,
            policies,
            anonymised_topic=self.topics.anonymised,
            clock_us=lambda: int(self._clock() * 1_000_000),
        )
        self.stores = (_OpenDays(self.days, restore=bool(self.daily_sources)), _Audit(self.ledger))
        self._batch_partitions = batch_partitions(self.topics.anonymised, contracts)

    # -- the fast path: a whole RawBatch at once ------------------------------------------
    def process_batch(self, batch: dict[str, Any], meta: InputMeta) -> list[Emit] | None:
        """The batch's AnonymisedBatches, one per output partition (columnar.py), when
        the output topic is a batch topic and the fast path gives exactly what the
        members would give one by one; None leaves the batch to them (a daily source,
        two epochs, a member the per-record path would reject...). An exception (a
        missing key) does too: the runner undoes the batch's counts (the ledger's
        savepoint) and the members' own dead letters say why."""
        partitions = self._batch_partitions
        policy = self.policies.get(batch["city"], batch["source"])
        if partitions is None or policy is None:
            return None
        city = batch["city"]
        result = anonymise_batch(
            batch, policy, lambda epoch: self.keys.pseudonymiser(city, epoch), partitions
        )
        if result is None:
            return None
        self.ledger.add(
            (city, batch["source"], policy.version, result.epoch),
            result.audit,
            batch["lineage_id"],
            records=result.members,
        )
        return [
            Emit(
                self.topics.anonymised,
                None,
                value,
                readings=sum(value["row_count"]),
                partition=partition,
                batched=True,
            )
            for partition, value in result.batches
        ]

    # -- the transform -----------------------------------------------------------------
    def transform(self, record: dict[str, Any], meta: InputMeta) -> Iterable[Emit]:
        """A rejected record, daily or not, undoes only its own writes (the open days
        are a declared store: the runtime opens and rolls back its savepoint)."""
        city, source = record["city"], record["source"]
        policy = self.policies.get(city, source)
        if policy is None:
            raise RejectedInput(
                "no-policy",
                f"no privacy policy for source {source!r} of city {city!r}: the source is "
                "missing from the city files this service loaded; add it with its privacy "
                "section and restart anonymise, then replay the record from the raw topic",
            )
        if _daily(policy):
            yield from self._into_days(record, meta, policy)
            return
        parts = self._guarded(
            record,
            policy,
            lambda: anonymise_by_epoch(
                record, policy, lambda epoch: self.keys.pseudonymiser(city, epoch)
            ),
        )
        # One output per key epoch (usually one). Counted only once the runner encoded
        # every output (this resumes after the last one): a record that went to the
        # dead letters instead is never counted as anonymised, not even in part.
        for _, out, _ in parts:
            yield Emit(
                self.topics.anonymised,
                f"{city}|{out['entity_pseudonym']}",
                out,
                readings=out["row_count"],
            )
        for epoch, _, audit in parts:
            self.ledger.add((city, source, policy.version, epoch), audit, record["lineage_id"])

    def _into_days(self, record: dict[str, Any], meta: InputMeta, policy: Policy) -> Iterator[Emit]:
        """Fold the record's rows into its entity's open days; nothing leaves now."""
        city, source = record["city"], record["source"]
        group = (meta.partition, city, source)
        if not record["row_count"]:
            return
        parts, late, audit, epoch = self._guarded(
            record, policy, lambda: self._day_parts(record, policy, group)
        )
        if not parts:
            raise RejectedInput(
                "day-released",
                f"{city}/{source}: every reading falls in a local day already released "
                "(coarsened to the day); a second record for a day would reveal the late "
                "readings by difference, so they are not added; the original stays in the "
                "raw topic at this letter's partition and offset",
            )
        self._guarded(
            record, policy, lambda: self.days.add(group, policy, parts, meta.timestamp_ms * 1000)
        )
        if late:
            yield self._late_letter(record, meta, late, len(parts) + late)
        self.ledger.add((city, source, policy.version, epoch), audit, record["lineage_id"])

    def _day_parts(
        self, record: dict[str, Any], policy: Policy, group: tuple[int, str, str]
    ) -> tuple[list[Part], int, RecordAudit, str]:
        """The record's rows per open local day, policy applied with the day's key."""
        times = row_times(record, policy)
        by_day = daily.rows_by_day(times, policy.timezone)
        closed = self.days.closed_before(group)
        parts: list[Part] = []
        late = 0
        audit = RecordAudit(rows=record["row_count"])
        epoch = None
        for day_start, rows in by_day.items():
            if closed is not None and daily.day_end(day_start, policy.timezone) <= closed:
                late += 1
                continue
            day_epoch = daily.epoch_of_day(day_start, policy.timezone)
            epoch = epoch or day_epoch
            pseudonymise = self.keys.pseudonymiser(record["city"], day_epoch)
            applied = apply_policy(daily.subset(record, rows), policy, pseudonymise)
            for name, count in applied.audit.decisions.items():
                audit.add(name, count)
            audit.incident(applied.audit.incidents)
            audit.add(COARSENED, len(rows))
            head = daily.header(
                pseudonym=applied.entity_pseudonym,
                entity_type=applied.entity_type,
                record=record,
                epoch=day_epoch,
                policy_version=policy.version,
                attributes=applied.attributes,
            )
            parts.append(Part(day_start, head, applied.columns, [times[i] for i in rows]))
        return parts, late, audit, epoch or epoch_of(record["received_at"], policy.timezone)

    def _late_letter(self, record: dict[str, Any], meta: InputMeta, late: int, days: int) -> Emit:
        letter = dlq.dead_letter(
            stage=self.name,
            reason="day-released",
            message=(
                f"{record['city']}/{record['source']}: {late} of the {days} local days of this "
                "record were already released (coarsened to the day): their readings were not "
                "added, the other days' were; the original stays in the raw topic at this "
                "letter's partition and offset"
            ),
            original_value=self.redact(None, record),
            original_key=self.redact_key(meta.key, record),
            source_topic=meta.topic,
            source_partition=meta.partition,
            source_offset=meta.offset,
            city=record["city"],
            source=record["source"],
        )
        return Emit(
            self.topics.dead_letters,
            dlq.dead_letter_key(self.name, record["city"]),
            letter,
            readings=0,
        )

    def _guarded(self, record: dict[str, Any], policy: Policy, work: Callable[[], Any]) -> Any:
        """Run ``work``; any failure becomes a RejectedInput that quotes no value."""
        city, source = record["city"], record["source"]
        try:
            return work()
        except RejectedInput:
            raise
        except daily.DayCoarseningError as exc:
            raise RejectedInput("cannot-coarsen", f"{city}/{source}: {exc}") from None
        except TransformError as exc:
            raise RejectedInput(exc.reason, f"{city}/{source}: {exc}") from None
        except CiteplusError as exc:  # keyring problems: messages name files, never secrets
            raise RejectedInput("no-key", f"{city}/{source}: {exc}") from None
        except Exception as exc:
            # The exception text may quote a value: log and report where, never what.
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            where = f"{Path(frame.filename).name}:{frame.lineno}"
            log.warning(
                "anonymise failed",
                extra={"city": city, "source": source, "error": type(exc).__name__, "at": where},
            )
            raise RejectedInput(
                "anonymise-error",
                f"{city}/{source}: {type(exc).__name__} at {where} while applying policy "
                f"{policy.version} (details withheld: they may quote personal data)",
            ) from None

    def end_batch(self) -> Iterable[Emit]:
        at = int(self._clock() * 1_000_000)
        audits = [
            Emit(self.topics.audit, f"{summary['city']}|{summary['source']}", summary, readings=0)
            for summary in self.ledger.summaries(at)
        ]
        return audits + (self.days.close() if self.daily_sources else [])

    def on_tick(self) -> Iterable[Emit]:
        """Days of sources that went quiet, closed by the wall clock."""
        return self.days.close(idle=True) if self.daily_sources else []

    # -- dead letters -------------------------------------------------------------------
    def _pseudonymiser(self, record: dict[str, Any]):
        try:
            epoch = epoch_of(record["received_at"], self.policies.timezone(record["city"]))
            return self.keys.pseudonymiser(record["city"], epoch)
        except Exception:  # no key: the letter carries no identifier at all
            return None

    def redact(self, original: bytes | None, record: dict[str, Any] | None) -> bytes | None:
        """The bytes a dead letter may carry: a RawRecord with the policy applied, or none."""
        if record is None or self._raw_codec is None:
            return None  # undecodable bytes may hold anything: never copied
        try:
            policy = self.policies.get(record["city"], record["source"])
            if policy is not None and policy.coarsening is not None:
                # A coarsened source's letter carries no value and no reading time:
                # its rows are the sub-daily curve the policy withholds.
                safe = redacted_raw(record, None, self._pseudonymiser(record))
                safe["event_times"] = []
                safe["attributes"] = {"anonymise.redacted": "coarsened source: no values"}
                return self._raw_codec.encode(safe)
            safe = redacted_raw(record, policy, self._pseudonymiser(record))
            return self._raw_codec.encode(safe)
        except Exception:  # when in doubt, the letter carries no bytes
            return None

    def redact_key(self, key: bytes | None, record: dict[str, Any] | None) -> bytes | None:
        """The raw key (``city|source|entity_id``) with the entity pseudonymised.

        For the runner's dead letters (``original_key``), which would otherwise
        carry the entity id in clear.
        """
        if record is None:
            return None
        pseudonymise = self._pseudonymiser(record)
        if pseudonymise is None:
            return None
        return f"{record['city']}|{record['source']}|{pseudonymise(record['entity_id'])}".encode()


class _OpenDays(StageStore):
    """The open days of daily-coarsened sources, as a declared store: restored from
    their changelog for the raw partitions this instance owns (only when some source
    is daily), committed or dropped with the batch."""

    def __init__(self, days: DayStore, *, restore: bool):
        self.days = days
        self.changelog = days.store if restore else None

    def begin_record(self) -> None:
        self.days.begin_record()

    def rollback_record(self) -> None:
        self.days.rollback_record()

    def commit(self) -> None:
        self.days.commit()

    def abort(self) -> None:
        self.days.abort()

    def restored(self, partitions: list[int]) -> None:
        if self.changelog is not None:
            self.days.reindex()

    def forget(self, partitions: list[int]) -> None:
        if self.changelog is not None:
            self.days.forget(partitions)


class _Audit(StageStore):
    """The batch's audit counts: counted in Prometheus once the batch committed."""

    def __init__(self, ledger: AuditLedger):
        self.ledger = ledger

    def begin_record(self) -> None:
        self.ledger.begin_record()

    def rollback_record(self) -> None:
        self.ledger.rollback_record()

    def commit(self) -> None:
        self.ledger.commit()

    def abort(self) -> None:
        self.ledger.abort()


def build_stage(
    node: NodeConfig,
    contracts: Contracts,
    cities: dict[str, CityConfig],
    metrics: ServiceMetrics,
    *,
    keys_dir: Path | None = None,
    topics: AnonymiseTopics | None = None,
) -> AnonymiseStage:
    """Validate every policy and load every city's keyring, or refuse to start."""
    policies = load_policies(cities)
    keys = KeyStore(keys_dir or keys_dir_of(node.state_dir))
    origins = keys.check(sorted({policy.city for policy in policies}))
    log.info(
        "privacy policies and keyrings loaded",
        extra={"sources": len(policies), "keyrings": origins},
    )
    topics = topics or AnonymiseTopics.resolve(resolve_topics())
    return AnonymiseStage(policies, keys, contracts, topics=topics, metrics=metrics, node=node)


def batch_partitions(topic: str, contracts: Contracts | None) -> int | None:
    """How many partitions ``topic`` has when it is a batch topic (anonymised.v2, where
    the fast path's batches go), else None: a stage wired on anonymised.v1 keeps
    emitting one record per entity, the per-record path."""
    if contracts is not None and topic in contracts:
        codec = contracts.codec(topic)
        return codec.spec.partitions if codec.batching is not None else None
    if member_sibling(topic) is None:
        return None
    return _declared_partitions(TopicName.ANONYMISED_V2)


@cache
def _declared_partitions(declared: str) -> int:
    return TopicRegistry.load()[declared].partitions


def _daily(policy: Policy) -> bool:
    coarsening = policy.coarsening
    return coarsening is not None and coarsening.daily
