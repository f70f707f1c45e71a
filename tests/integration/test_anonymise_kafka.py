"""anonymise on the real broker and registry: planted personal data never reaches
``anonymised`` nor the dead letters in clear (every byte of every message is
scanned, aborted transactions included), audit records are committed with the
batches, and an injected commit failure changes nothing in the outputs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.anonymise.policy import PolicySet, load_policies
from services.anonymise.stage import AnonymiseStage, AnonymiseTopics
from services.ingest.records import to_column
from services.privacy.keys import KeyStore
from services.runtime.batches import batching
from services.runtime.cities import load_cities
from services.runtime.codec import Contracts
from services.runtime.config import NodeConfig
from services.runtime.kafka import RecordProducer, make_producer
from services.runtime.metrics import ServiceMetrics
from services.runtime.processor import StageRunner
from testkit.fixture_secrets import fixture_secret
from testkit.kafka import CommitFailsOnce, read_all

pytestmark = pytest.mark.integration

T0 = 1_763_769_600_000_000  # 2025-11-22T00:00:00Z
EMAIL, PHONE, PLATE = "jean.dupont@example.fr", "06 12 34 56 78", "AB-123-CD"
# What must never appear, in any spelling the plants were written in.
FORBIDDEN = [
    s.encode()
    for s in (EMAIL, "jean.dupont", PHONE, "0612345678", "+33 6 12 34 56 78", PLATE, "AB 123 CD")
]
SECRET = fixture_secret("integration")
PRIVACY = {
    "version": "it-1",
    # Delivery points (personal) whose holders consented to their curves: records
    # leave per message, which is what these tests of the safety net look at.
    "personal": True,
    "consent": True,
    "fields": {
        "pdl": "identifier",
        "kwh": "measure",
        "statut": "measure",
        "iris": {"class": "quasi-identifier", "prefix": 5},
        "position": {"class": "quasi-identifier", "grid": 500},
        "commentaire": "free-text",
        "photo": "drop",
    },
    "attributes": {"zone": "measure"},
}


def write_city(tmp_path: Path) -> Path:
    document = {
        "code": "plantville",
        "name": "Plantville",
        "sources": [
            {
                "id": "compteurs",
                "format": "ndjson",
                "dataset": "courbes",
                "domain": "energy",
                "entity": "pdl",
                "token": "env:CITEPLUS_TOKEN_PLANTVILLE",
                "privacy": PRIVACY,
            }
        ],
    }
    (tmp_path / "plantville.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return tmp_path


def raw_record(index: int, *, source: str = "compteurs", entity: str | None = None) -> dict:
    rows = 12
    statut = ["ok"] * rows
    statut[index % rows] = f"rappeler {EMAIL}"
    statut[(index + 1) % rows] = f"tel {PHONE}"
    statut[(index + 2) % rows] = f"vu {PLATE}"
    entity = entity or f"0451234567{index:04d}"
    columns = {
        "pdl": [entity] * rows,
        "kwh": [0.1 * k for k in range(rows)],
        "statut": statut,
        "iris": ["330630104"] * rows,
        "position": ["44.8378,-0.5792"] * rows,
        "commentaire": [f"{EMAIL} / {PHONE} / {PLATE}"] * rows,
        "photo": [f"https://photos.example/{PLATE}.jpg"] * rows,
        "contact": [f"{EMAIL}, {PHONE}"] * rows,  # not in the policy at all
    }
    return {
        "city": "plantville",
        "source": source,
        "dataset": "courbes",
        "format": "ndjson",
        "entity_id": entity,
        "entity_type": None,
        "lineage_id": f"batch-{index // 10}",
        "received_at": T0,
        "row_count": rows,
        "event_times": [T0 + k * 600_000_000 for k in range(rows)],
        "columns": [to_column(name, values) for name, values in columns.items()],
        "attributes": {
            "zone": PLATE if index % 7 == 0 else "330630104",
            "proprietaire": f"M. Dupont {PHONE}",  # not in the policy
        },
    }


def scan(messages) -> list[tuple[str, int, bytes]]:
    """Every (topic, offset, plant) found in a message's key or value bytes."""
    found = []
    for message in messages:
        blob = (message.key() or b"") + b"\x00" + (message.value() or b"")
        found += [(message.topic(), message.offset(), f) for f in FORBIDDEN if f in blob]
    return found


@dataclass
class Harness:
    """Isolated topics, the city's policies and keys, a node with small batches."""

    node: NodeConfig
    contracts: Contracts
    topics: AnonymiseTopics
    dlq: str
    policies: PolicySet
    keys: KeyStore

    def produce(self, records: list[dict[str, Any]]) -> None:
        writer = RecordProducer(make_producer(self.node), self.contracts)
        for r in records:
            writer.produce(self.topics.raw, f"{r['city']}|{r['source']}|{r['entity_id']}", r)
        assert writer.flush() == 0

    def run(
        self,
        runner_class: type[StageRunner] = StageRunner,
        stage_class: type[AnonymiseStage] = AnonymiseStage,
    ) -> tuple[StageRunner, AnonymiseStage]:
        metrics = ServiceMetrics("anonymise")
        stage = stage_class(
            self.policies, self.keys, self.contracts, topics=self.topics, metrics=metrics
        )
        stage.name = f"anonymise-it-{uuid.uuid4().hex[:8]}"
        runner = runner_class(
            stage,
            self.node,
            self.contracts,
            instance=uuid.uuid4().hex[:6],
            metrics=metrics,
            dead_letter_topic=self.dlq,
        )
        runner.run(idle_exit_s=4)
        return runner, stage

    def decode(self, messages) -> list[dict[str, Any]]:
        return [self.contracts.codec(m.topic()).decode(m.value()) for m in messages]


@pytest.fixture()
def harness(node, isolated_topics, tmp_path: Path) -> Harness:
    specs, contracts = isolated_topics(
        "raw.v1", "anonymised.v1", "audit.v1", "dlq.v1", "raw.dlq.v1", partitions=2
    )
    return Harness(
        node=replace(node, processing=replace(node.processing, batch_size=8)),
        contracts=contracts,
        topics=AnonymiseTopics(
            raw=specs["raw.v1"].name,
            anonymised=specs["anonymised.v1"].name,
            audit=specs["audit.v1"].name,
        ),
        dlq=specs["dlq.v1"].name,
        policies=load_policies(load_cities(write_city(tmp_path))),
        keys=KeyStore(tmp_path / "keys", environ={"CITEPLUS_PSEUDONYM_SECRET_PLANTVILLE": SECRET}),
    )


def test_planted_personal_data_never_leaves_in_clear(harness: Harness) -> None:
    good = [raw_record(i) for i in range(30)]
    good.append(raw_record(30, entity=EMAIL))  # an entity named by an e-mail: pseudonymised
    unknown = [
        raw_record(40 + i, source="inconnue", entity=f"0451234567{40 + i:04d}") for i in range(2)
    ]
    broken = raw_record(50)
    broken["columns"][2]["strings"] = broken["columns"][2]["strings"][:5]  # statut: 5 of 12 rows
    harness.produce([*good, *unknown, broken])

    runner, _ = harness.run()
    assert runner.summary.records_in == 34
    assert runner.summary.dead_letter_reasons == {"no-policy": 2, "malformed-record": 1}

    outputs = read_all(
        runner.node, harness.topics.anonymised, expected=31, isolation="read_uncommitted"
    )
    letters = read_all(runner.node, harness.dlq, expected=3, isolation="read_uncommitted")
    audits = read_all(runner.node, harness.topics.audit, isolation="read_uncommitted")
    assert len(outputs) == 31 and len(letters) == 3 and audits
    assert scan(outputs) == [] and scan(letters) == [] and scan(audits) == []
    assert len(scan(read_all(runner.node, harness.topics.raw, expected=34))) >= 34  # the scan works

    decoded = harness.decode(outputs)
    for record in decoded:
        names = [c["name"] for c in record["columns"]]
        assert names == ["pdl", "kwh", "statut", "iris", "position"]
        assert record["key_epoch"] == "2025-11" and record["policy_version"] == "it-1"
        statut = next(c for c in record["columns"] if c["name"] == "statut")
        assert len(statut["missing"]) == 3  # the three planted rows, removed whole
        assert set(record["attributes"]) <= {"zone"}
    for letter in harness.decode(letters):
        assert letter["stage"].startswith("anonymise-it-")
        if letter["original_value"] is not None:  # a redacted RawRecord, readable as one
            redacted = harness.contracts.codec(harness.topics.raw).decode(letter["original_value"])
            assert "anonymise.redacted" in redacted["attributes"]


def test_audit_records_count_every_decision(harness: Harness) -> None:
    harness.produce([raw_record(i) for i in range(20)])
    runner, _ = harness.run()
    audits = harness.decode(
        read_all(runner.node, harness.topics.audit, expected=runner.summary.batches)
    )
    assert {(a["city"], a["source"], a["policy_version"], a["key_epoch"]) for a in audits} == {
        ("plantville", "compteurs", "it-1", "2025-11")
    }
    total = lambda name: sum(a["decisions"].get(name, 0) for a in audits)  # noqa: E731
    assert sum(a["records"] for a in audits) == 20
    assert sum(a["rows"] for a in audits) == 240
    assert total("pseudonymised") == 20 * (12 + 1)  # the pdl column and the entity id
    assert total("removed-free-text") == 240 and total("dropped-by-policy") == 240
    assert total("dropped-undeclared") == 240 + 20  # the contact column, the owner attribute
    assert total("removed-by-safety-net") == 20 * 3 + 3  # statut rows; plates in zone
    incidents = {
        k: sum(a["incidents"].get(k, 0) for a in audits) for k in ("email", "phone", "plate")
    }
    assert incidents == {"email": 20, "phone": 20, "plate": 23}
    exposition = runner.metrics.exposition().decode()
    assert (
        'citeplus_anonymise_decisions_total{city="plantville",decision="pseudonymised",'
        'source="compteurs"} 260.0'
    ) in exposition


def test_exactly_once_through_an_injected_commit_failure(harness: Harness) -> None:
    inputs = [raw_record(i) for i in range(24)]
    harness.produce(inputs)
    runner, stage = harness.run(CommitFailsOnce)
    assert runner.summary.aborted == 1

    outputs = read_all(runner.node, harness.topics.anonymised, expected=24)
    decoded = harness.decode(outputs)
    pseudonymise = stage.keys.pseudonymiser("plantville", "2025-11")
    assert sorted(r["entity_pseudonym"] for r in decoded) == sorted(
        pseudonymise(r["entity_id"]) for r in inputs
    )
    audits = harness.decode(
        read_all(runner.node, harness.topics.audit, expected=runner.summary.batches)
    )
    assert sum(a["records"] for a in audits) == 24  # the aborted batch is not counted twice
    assert (
        'citeplus_anonymise_records_total{city="plantville",source="compteurs"} 24.0'
        in runner.metrics.exposition().decode()
    )
    every_copy = read_all(runner.node, harness.topics.anonymised, isolation="read_uncommitted")
    assert len(every_copy) > 24 and scan(every_copy) == []  # aborted copies exist, no plant


def test_dead_letter_keys_carry_no_entity_id(harness: Harness) -> None:
    harness.produce([raw_record(1, source="inconnue", entity=EMAIL)])
    runner, _ = harness.run()
    letters = read_all(runner.node, harness.dlq, expected=1, isolation="read_uncommitted")
    assert len(letters) == 1 and scan(letters) == []


def meter_day(entity: str, start: int, rows: int, kwh: float, received_at: int) -> dict:
    """``rows`` 10-minute readings of one meter from ``start`` (event times), sent at
    ``received_at``."""
    columns = {"pdl": [entity] * rows, "kwh": [kwh] * rows, "iris": ["330630104"] * rows}
    return {
        "city": "plantville",
        "source": "compteurs",
        "dataset": "courbes",
        "format": "ndjson",
        "entity_id": entity,
        "entity_type": None,
        "lineage_id": f"send-{received_at}",
        "received_at": received_at,
        "row_count": rows,
        "event_times": [start + k * 600_000_000 for k in range(rows)],
        "columns": [to_column(name, values) for name, values in columns.items()],
        "attributes": {},
    }


def test_a_day_resent_across_a_month_boundary_keeps_one_pseudonym_per_meter(
    harness: Harness,
) -> None:
    """The attacker's count: distinct pseudonyms per day on ``anonymised`` is what
    energy-analytics counts as delivery points. Sent on 30 January, corrected on
    2 February: 5 meters, not 10. A message across the month boundary leaves as one
    record per epoch."""
    day, hour = 1_738_195_200_000_000, 3_600_000_000  # 2025-01-30T00:00Z
    january, february = day + 30 * hour, day + 78 * hour  # received 31 Jan, 2 Feb
    meters = [f"0451234567{k:04d}" for k in range(5)]
    sends = [meter_day(m, day, 144, 0.10, january) for m in meters]
    sends += [meter_day(m, day, 144, 0.12, february) for m in meters]
    across = {**meter_day(meters[0], day + 45 * hour, 24, 0.1, february), "lineage_id": "across"}
    harness.produce([*sends, across])  # ^ 31 Jan 22:00 to 1 Feb 02:00 in Paris (local months)
    runner, stage = harness.run()
    assert runner.summary.dead_letter_reasons == {}

    decoded = harness.decode(read_all(runner.node, harness.topics.anonymised, expected=12))
    of_the_day = [r for r in decoded if r["lineage_id"] != "across"]
    assert len(of_the_day) == 10
    assert len({r["entity_pseudonym"] for r in of_the_day}) == 5  # was 10
    assert {r["key_epoch"] for r in of_the_day} == {"2025-01"}
    parts = sorted(
        (r for r in decoded if r["lineage_id"] == "across"), key=lambda r: r["key_epoch"]
    )
    assert [(r["key_epoch"], r["row_count"]) for r in parts] == [("2025-01", 12), ("2025-02", 12)]
    pseudonym = {
        e: stage.keys.pseudonymiser("plantville", e)(meters[0]) for e in ("2025-01", "2025-02")
    }
    assert [r["entity_pseudonym"] for r in parts] == [pseudonym["2025-01"], pseudonym["2025-02"]]
    assert parts[1]["event_times"][0] == day + 47 * hour  # 1 Feb 00:00 in Paris, its first row
    audits = harness.decode(
        read_all(runner.node, harness.topics.audit, expected=runner.summary.batches)
    )
    rows = {
        e: sum(a["rows"] for a in audits if a["key_epoch"] == e) for e in ("2025-01", "2025-02")
    }
    assert rows == {"2025-01": 10 * 144 + 12, "2025-02": 12}


# -- raw.v2: many entities per message, the columnar fast path --------------------------------
class CountingStage(AnonymiseStage):
    """The stage, counting the batch messages its fast path took (not the members)."""

    fast = 0

    def process_batch(self, batch: dict[str, Any], meta: Any) -> Any:
        emits = super().process_batch(batch, meta)
        type(self).fast += emits is not None
        return emits


def single_readings(first: int, count: int, *, source: str = "compteurs") -> dict[str, Any]:
    """One RawBatch of ``count`` meters, one reading each; member ``first + 57`` hides an
    e-mail in its status, ``first + 3`` a phone number in an undeclared column, and
    the entity type of ``first + 11`` is a licence plate."""
    members = []
    for k in range(first, first + count):
        columns = {
            "pdl": [f"0451234567{k:04d}"],
            "kwh": [0.1 * k],
            "statut": [f"rappeler {EMAIL}" if k == first + 57 else "ok"],
            "position": ["44.8378,-0.5792"],
            "contact": [PHONE if k == first + 3 else "-"],  # not in the policy
        }
        members.append(
            {
                "city": "plantville",
                "source": source,
                "dataset": "courbes",
                "format": "ndjson",
                "entity_id": f"0451234567{k:04d}",
                "entity_type": PLATE if k == first + 11 else "Compteur",
                "lineage_id": f"single-{first}",
                "received_at": T0,
                "row_count": 1,
                "event_times": [T0 + k * 1_000_000],
                "columns": [to_column(name, values) for name, values in columns.items()],
                "attributes": {"zone": "330630104", "proprietaire": f"M. Dupont {PHONE}"},
            }
        )
    [batch] = batching("RawRecord").implode(members)
    return batch


@pytest.fixture()
def batch_harness(node, isolated_topics, tmp_path: Path) -> Harness:
    names = ("raw.v1", "raw.v2", "anonymised.v2", "audit.v1", "dlq.v1", "raw.dlq.v1")
    specs, contracts = isolated_topics(*names, partitions=2)
    return Harness(
        node=replace(node, processing=replace(node.processing, batch_size=8)),
        contracts=contracts,
        topics=AnonymiseTopics(
            raw=specs["raw.v1"].name,
            anonymised=specs["anonymised.v2"].name,
            audit=specs["audit.v1"].name,
            raw_batches=specs["raw.v2"].name,
        ),
        dlq=specs["dlq.v1"].name,
        policies=load_policies(load_cities(write_city(tmp_path))),
        keys=KeyStore(tmp_path / "keys", environ={"CITEPLUS_PSEUDONYM_SECRET_PLANTVILLE": SECRET}),
    )


def test_a_personal_value_hidden_in_one_member_of_a_batch_never_leaves(
    batch_harness: Harness,
) -> None:
    """The attacker hides personal data in one member among many single readings (a
    status, an undeclared column, an entity type, an attribute): the fast path takes
    the batches and none of it reaches anonymised.v2, the audit or the dead letters; a
    batch of an unknown source falls back to its members, one dead letter each."""
    harness = batch_harness
    writer = RecordProducer(make_producer(harness.node), harness.contracts)
    batches = [single_readings(0, 100), single_readings(100, 100)]
    batches.append(single_readings(200, 60, source="inconnue"))
    for batch in batches:
        writer.produce(harness.topics.raw_batches, f"plantville|{batch['source']}", batch)
    assert writer.flush() == 0
    CountingStage.fast = 0
    runner, _ = harness.run(stage_class=CountingStage)
    assert CountingStage.fast == 2
    assert runner.summary.dead_letter_reasons == {"no-policy": 60}

    outputs = read_all(runner.node, harness.topics.anonymised, expected=4)
    letters = read_all(runner.node, harness.dlq, expected=60, isolation="read_uncommitted")
    audits = read_all(runner.node, harness.topics.audit, isolation="read_uncommitted")
    every_copy = read_all(runner.node, harness.topics.anonymised, isolation="read_uncommitted")
    assert scan(every_copy) == [] and scan(letters) == [] and scan(audits) == []
    raw = read_all(runner.node, harness.topics.raw_batches, expected=3)
    assert len(raw) == 3 and all(scan([message]) for message in raw)  # the scan finds plants
    members = [
        m for value in harness.decode(outputs) for m in batching("AnonymisedRecord").explode(value)
    ]
    assert len(members) == 200 and len({m["entity_pseudonym"] for m in members}) == 200
    for m in members:
        assert [c["name"] for c in m["columns"]] == ["pdl", "kwh", "statut", "position"]
        assert m["attributes"] == {"zone": "330630104"}
    removed = [m for m in members if m["columns"][2]["missing"]]
    assert len(removed) == 2  # the e-mail of member 57 of each batch, nothing else
    assert sorted(m["entity_type"] is None for m in members) == [False] * 198 + [True] * 2
    decoded_audits = harness.decode(audits)
    assert sum(a["records"] for a in decoded_audits) == 200
    assert sum(a["incidents"].get("plate", 0) for a in decoded_audits) == 2
