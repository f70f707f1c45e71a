"""Counts of what anonymise decided, per city, source and decision.

Two outputs for the data protection officer and the operators:

- one compact AuditRecord per (city, source, policy version, key epoch) and
  batch on ``audit.v1``, produced in the batch's transaction (so a batch
  processed twice after an abort is counted once);
- Prometheus counters on the service's metrics endpoint, incremented only once
  the batch committed.

A record whose rows span two key epochs is emitted as one record per epoch
(see ``epochs.py``); each part's counts go to its own epoch's tally, so an
epoch's ``rows`` are exactly the rows pseudonymised under its key.

The stage adds a record's counts only once its output was encoded (see
``stage.AnonymiseStage.process``), so a record that went to the dead letters is
not counted as anonymised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter

from services.anonymise.transform import RecordAudit

MAX_LINEAGE_IDS = 100  # per audit record: enough to trace a batch, bounded in size


@dataclass
class _Tally:
    records: int = 0
    rows: int = 0
    decisions: dict[str, int] = field(default_factory=dict)
    incidents: dict[str, int] = field(default_factory=dict)
    lineage_ids: list[str] = field(default_factory=list)

    def add(self, audit: RecordAudit, lineage_id: str, records: int = 1) -> None:
        self.records += records
        self.rows += audit.rows
        for name, count in audit.decisions.items():
            self.decisions[name] = self.decisions.get(name, 0) + count
        for name, count in audit.incidents.items():
            self.incidents[name] = self.incidents.get(name, 0) + count
        if lineage_id not in self.lineage_ids and len(self.lineage_ids) < MAX_LINEAGE_IDS:
            self.lineage_ids.append(lineage_id)


AuditKey = tuple[str, str, str, str]  # city, source, policy version, key epoch


class AuditLedger:
    """Accumulates a batch's counts; turns them into audit records and metrics."""

    def __init__(self, registry: CollectorRegistry | None):
        self._batch: dict[AuditKey, _Tally] = {}
        self._record: list[tuple[AuditKey, RecordAudit, str, int]] = []  # since the savepoint
        self._committing: dict[AuditKey, _Tally] = {}
        self.decisions = self.incidents = self.records = None
        if registry is not None:
            self.decisions = Counter(
                "citeplus_anonymise_decisions",
                "Values (cells, attributes, entity ids) per privacy decision",
                ["city", "source", "decision"],
                registry=registry,
            )
            self.incidents = Counter(
                "citeplus_anonymise_incidents",
                "Kept values in which the safety net found personal data, per detector "
                "(removed, or reported on sources that declare none)",
                ["city", "source", "detector"],
                registry=registry,
            )
            self.records = Counter(
                "citeplus_anonymise_records",
                "RawRecords anonymised",
                ["city", "source"],
                registry=registry,
            )

    # -- during a batch ----------------------------------------------------------------
    def add(self, key: AuditKey, audit: RecordAudit, lineage_id: str, records: int = 1) -> None:
        """Count an anonymised record (or ``records`` members of a batch message, their
        audits summed in ``audit``) in the open batch, after the last savepoint."""
        self._record.append((key, audit, lineage_id, records))

    def begin_record(self) -> None:
        """A savepoint: what was counted so far stays, whatever the next record becomes."""
        for key, audit, lineage_id, records in self._record:
            self._batch.setdefault(key, _Tally()).add(audit, lineage_id, records)
        self._record = []

    def rollback_record(self) -> None:
        """The record (or batch message) since the savepoint went elsewhere: a dead
        letter, or the per-record path after its fast path failed. Not counted."""
        self._record = []

    # -- end of batch ----------------------------------------------------------------------
    def summaries(self, at_us: int) -> list[dict]:
        """AuditRecords of the batch (avro/AuditRecord.avsc); kept until commit or abort."""
        self.begin_record()
        self._committing, self._batch = self._batch, {}
        return [
            {
                "city": city,
                "source": source,
                "policy_version": version,
                "key_epoch": epoch,
                "records": tally.records,
                "rows": tally.rows,
                "decisions": dict(tally.decisions),
                "incidents": dict(tally.incidents),
                "lineage_ids": list(tally.lineage_ids),
                "at": at_us,
            }
            for (city, source, version, epoch), tally in sorted(self._committing.items())
        ]

    def commit(self) -> None:
        """The batch committed: its counts become metrics."""
        if self.decisions is not None:
            for (city, source, _, _), tally in self._committing.items():
                self.records.labels(city, source).inc(tally.records)  # type: ignore[union-attr]
                for name, count in tally.decisions.items():
                    self.decisions.labels(city, source, name).inc(count)
                for name, count in tally.incidents.items():
                    self.incidents.labels(city, source, name).inc(count)  # type: ignore[union-attr]
        self._committing = {}

    def abort(self) -> None:
        """The batch aborted: it will be processed again from its first record."""
        self._batch = {}
        self._record = []
        self._committing = {}
