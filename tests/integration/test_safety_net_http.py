"""The wider safety net end to end: personal data of every kind, planted in kept
strings, nested JSON (values and keys), numeric fields and the entity type, sent
through the real HTTP ingest API, anonymised by the stage on the real broker:
none of it is readable on ``anonymised.v1`` (nor in the audit records), in any
spelling the sender wrote it."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from services.anonymise.policy import load_policies
from services.anonymise.stage import AnonymiseStage, AnonymiseTopics
from services.ingest.core import IngestTopics
from services.ingest.service import build_core
from services.privacy.keys import KeyStore
from services.runtime.cities import load_cities
from services.runtime.metrics import ServiceMetrics
from services.runtime.processor import StageRunner
from testkit.fixture_secrets import fixture_secret
from testkit.ingest import serve_ingest
from testkit.kafka import read_all

pytestmark = pytest.mark.integration

NIR = "185057800608491"  # key 91 holds for 1850578006084
# The plants, each as the sender writes it; any of these bytes on an output is a leak.
TEXT_PLANTS = {
    "name": "Chloé Lefèvre",
    "civility": "Mme Zwingli",
    "address": "12 bis rue des Lilas, 49100 Angers",
    "ipv4": "192.168.41.17",
    "ipv6": "2001:db8:85a3::8a2e:370:7334",
    "mac": "00:1A:2B:3C:4D:5E",
    "prm": "25123456789012",
    "nir": "1 85 05 78 006 084 91",
    "email": "chloe.lefevre@example.fr",
    "phone": "06 12 34 56 78",
    "coordinates": "47.473612,-0.551389",
}
NUMBER_PLANTS = {"nir": int(NIR), "prm": 25123456789013, "phone": 33612345678}
FORBIDDEN = sorted(
    {
        *(v.encode() for v in TEXT_PLANTS.values()),
        *(json.dumps(v, ensure_ascii=True).strip('"').encode() for v in TEXT_PLANTS.values()),
        b"Lef\xc3\xa8vre",
        b"Zwingli",
        b"rue des Lilas",
        b"47.473612",
        NIR.encode(),
        *(str(v).encode() for v in NUMBER_PLANTS.values()),
    }
)
CITY = """
code: netville
name: Netville
timezone: Europe/Paris
sources:
  - id: compteurs
    format: ndjson
    dataset: releves
    domain: energy
    entity: pdl
    token: env:NETVILLE_COMPTEURS
    privacy:
      version: net-1
      personal: true
      consent: true  # per-message outputs: the net is what this test is about
      fields:
        pdl: identifier
        horodate: measure
        kwh: measure
        statut: measure
        detail: measure
        index: measure
  - id: capteurs
    format: sdm-keyvalues
    dataset: capteurs
    domain: environment
    entity: id
    token: env:NETVILLE_CAPTEURS
    privacy:
      version: net-1
      personal: true  # sensors in homes: nothing pseudonymised, still personal
      consent: true
      fields:
        note: measure
        position: measure
        reseau: measure
"""


def _lines() -> bytes:
    lines = []
    for k, (kind, plant) in enumerate(TEXT_PLANTS.items()):
        lines.append(
            {
                "pdl": f"0451234567{k:04d}",
                "horodate": f"2025-11-22T0{k % 10}:00:00+01:00",
                "kwh": 0.25 * k,
                "statut": f"rappeler {plant} svp",
                "detail": {"contact": {kind: plant}, plant: 1},
                "index": 12_000 + k,
            }
        )
    for k, (_, number) in enumerate(NUMBER_PLANTS.items()):
        lines.append(
            {
                "pdl": f"0451234567{90 + k:04d}",
                "horodate": "2025-11-22T12:00:00+01:00",
                "kwh": 1.0,
                "statut": "ok",
                "detail": {"n": number},
                "index": number,
            }
        )
    return "\n".join(json.dumps(line, ensure_ascii=False) for line in lines).encode()


def _entities() -> bytes:
    return json.dumps(
        [
            {
                "id": f"capteur-{k}",
                "type": f"Capteur {plant}",
                "note": f"pose chez {plant}",
                "position": TEXT_PLANTS["coordinates"],
                "reseau": {"mac": TEXT_PLANTS["mac"], "ip": TEXT_PLANTS["ipv4"]},
            }
            for k, plant in enumerate(TEXT_PLANTS.values())
        ],
        ensure_ascii=False,
    ).encode()


def test_planted_values_never_reach_anonymised_in_clear(
    node, isolated_topics, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NETVILLE_COMPTEURS", "tok-compteurs")
    monkeypatch.setenv("NETVILLE_CAPTEURS", "tok-capteurs")
    (tmp_path / "netville.yaml").write_text(CITY)
    cities = load_cities(tmp_path)
    specs, contracts = isolated_topics(
        "raw.v1", "anonymised.v1", "audit.v1", "dlq.v1", "raw.dlq.v1", partitions=1
    )
    raw, anonymised = specs["raw.v1"].name, specs["anonymised.v1"].name
    core = build_core(
        node,
        contracts,
        cities,
        topics=IngestTopics(raw=raw, dead_letters=specs["dlq.v1"].name),
        instance=raw,
    )
    with serve_ingest(core, cities) as running:
        for source, token, body in (
            ("compteurs", "tok-compteurs", _lines()),
            ("capteurs", "tok-capteurs", _entities()),
        ):
            response = httpx.post(
                f"{running.url}/v1/cities/netville/sources/{source}/records",
                content=body,
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            )
            assert response.status_code == 200 and response.json()["rejected"] == 0, response.text
    inputs = read_all(node, raw, expected=len(TEXT_PLANTS) * 2 + len(NUMBER_PLANTS))
    assert all(any(f in m.value() for f in FORBIDDEN) for m in inputs)  # planted in clear

    metrics = ServiceMetrics("anonymise")
    keys = KeyStore(
        tmp_path / "keys",
        environ={"CITEPLUS_PSEUDONYM_SECRET_NETVILLE": fixture_secret("safety-net")},
    )
    stage = AnonymiseStage(
        load_policies(cities),
        keys,
        contracts,
        topics=AnonymiseTopics(raw=raw, anonymised=anonymised, audit=specs["audit.v1"].name),
        metrics=metrics,
    )
    stage.name = f"anonymise-net-{uuid.uuid4().hex[:8]}"
    runner = StageRunner(
        stage,
        replace(node, processing=replace(node.processing, batch_size=8)),
        contracts,
        instance=uuid.uuid4().hex[:6],
        metrics=metrics,
        dead_letter_topic=specs["dlq.v1"].name,
    )
    runner.run(idle_exit_s=4)
    assert runner.summary.records_in == len(inputs)
    assert runner.summary.dead_letter_reasons == {}

    outputs = read_all(node, anonymised, expected=len(inputs), isolation="read_uncommitted")
    audits = read_all(node, specs["audit.v1"].name, isolation="read_uncommitted")
    assert len(outputs) == len(inputs) and audits
    leaks = [
        (m.topic(), m.offset(), f)
        for m in [*outputs, *audits]
        for f in FORBIDDEN
        if f in (m.key() or b"") + b"\x00" + m.value()
    ]
    assert leaks == []
    decoded = [contracts.codec(anonymised).decode(m.value()) for m in outputs]
    assert all(r["entity_type"] is None for r in decoded if r["source"] == "capteurs")
    incidents: dict[str, int] = {}
    for audit in (contracts.codec(specs["audit.v1"].name).decode(m.value()) for m in audits):
        for name, count in audit["incidents"].items():
            incidents[name] = incidents.get(name, 0) + count
    expected = {"name", "address", "ip", "mac", "prm", "nir", "email", "phone", "coordinates"}
    assert expected <= set(incidents), incidents
