"""The anonymise stage: ``raw.v1`` -> ``anonymised.v1`` (+ ``audit.v1``), exactly once.

The runtime's StageRunner does the consuming, transactions and dead letters;
this is the transform plus what privacy adds around it:

- each record goes through its source's policy with the city's key of each
  row's epoch (UTC month of the reading's own time, see epochs.py): a record
  whose rows span two epochs is emitted as one record per epoch;
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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.anonymise.audit import AuditLedger
from services.anonymise.keys import KeyStore, epoch_of, keys_dir_of
from services.anonymise.policy import PolicySet, load_policies
from services.anonymise.transform import TransformError, anonymise_by_epoch, redacted_raw
from services.runtime.cities import CityConfig
from services.runtime.codec import Contracts
from services.runtime.config import NodeConfig
from services.runtime.errors import CiteplusError, RejectedInput
from services.runtime.metrics import ServiceMetrics
from services.runtime.processor import BaseStage, Emit, InputMeta

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnonymiseTopics:
    raw: str = "raw.v1"
    anonymised: str = "anonymised.v1"
    audit: str = "audit.v1"


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
    ):
        self.policies = policies
        self.keys = keys
        self.topics = topics or AnonymiseTopics()
        self.input_topics = [self.topics.raw]
        self.metrics = metrics
        self.ledger = AuditLedger(metrics.registry if metrics is not None else None)
        self._raw_codec = contracts.codec(self.topics.raw) if contracts is not None else None
        self._clock = clock

    # -- the transform -----------------------------------------------------------------
    def process(self, record: dict[str, Any], meta: InputMeta) -> Iterable[Emit]:
        city, source = record["city"], record["source"]
        policy = self.policies.get(city, source)
        if policy is None:
            raise RejectedInput(
                "no-policy",
                f"no privacy policy for source {source!r} of city {city!r}: the source is "
                "missing from the city files this service loaded; add it with its privacy "
                "section and restart anonymise, then replay the record from the raw topic",
            )
        try:
            parts = anonymise_by_epoch(
                record, policy, lambda epoch: self.keys.pseudonymiser(city, epoch)
            )
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

    def end_batch(self) -> Iterable[Emit]:
        at = int(self._clock() * 1_000_000)
        return [
            Emit(self.topics.audit, f"{summary['city']}|{summary['source']}", summary, readings=0)
            for summary in self.ledger.summaries(at)
        ]

    def on_commit(self) -> None:
        self.ledger.commit()

    def on_abort(self) -> None:
        self.ledger.abort()

    # -- dead letters -------------------------------------------------------------------
    def _pseudonymiser(self, record: dict[str, Any]):
        try:
            return self.keys.pseudonymiser(record["city"], epoch_of(record["received_at"]))
        except Exception:  # no key: the letter carries no identifier at all
            return None

    def redact(self, original: bytes | None, record: dict[str, Any] | None) -> bytes | None:
        """The bytes a dead letter may carry: a RawRecord with the policy applied, or none."""
        if record is None or self._raw_codec is None:
            return None  # undecodable bytes may hold anything: never copied
        try:
            policy = self.policies.get(record["city"], record["source"])
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
    return AnonymiseStage(policies, keys, contracts, topics=topics, metrics=metrics)
