"""The attacker's view of a whole node: personal data planted in every transport
format and placement, pushed through the real HTTP ingest API of a LocalNode (its
own broker, registry, five supervised services and warehouse), must not be found
in clear anywhere outside the restricted raw zone: not on any topic a partner, the
public or the warehouse reads (committed or aborted records alike: a raw Kafka
reader sees both), not in any warehouse table, not in any log line.

The raw zone (``raw.v1``, ``raw.v2``, ``raw.dlq.v1``) holds the originals on purpose: it is
read by anonymise and by the operators allowed to replay. Loopback only, bounded.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from services.node.main import available_services
from services.runtime.dev_secrets import dev_env_file, read_env_file
from testkit.local_node import LocalNode
from testkit.node_checks import settle

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "samples"
RAW_ZONE = {"raw.v1", "raw.v2", "raw.dlq.v1"}

# What an attacker looks for: each one planted somewhere below.
EMAIL = "martine.lefebvre@exemple.fr"
PHONE = "06 12 34 56 78"
NAME = "Mme Martine Lefebvre"
ADDRESS = "12 rue des Lilas"
IPV4 = "192.168.12.34"
MAC = "3c:22:fb:1a:9e:07"
NIR = 185057800604830  # a social security number (valid key) sent as a JSON number
PRM_BORDEAUX = [f"3000912345{i:04d}" for i in range(12)]  # 14-digit delivery points
PRM_PARIS = [f"2514678901{i:04d}" for i in range(12)]
LINKY_ADSC = "031664001115"  # the meter serial of the fixture frame
BAD_LINE_PRM = "30009999999999"

FORBIDDEN = [
    EMAIL,
    PHONE,
    PHONE.replace(" ", ""),
    "Lefebvre",
    ADDRESS,
    IPV4,
    MAC,
    str(NIR),
    LINKY_ADSC,
    BAD_LINE_PRM,
    *PRM_BORDEAUX,
    *PRM_PARIS,
]


def bordeaux_ndjson(start_s: int) -> bytes:
    """Meter readings (a personal source coarsened to the day), with personal data in a
    kept text field, nested JSON, a JSON key, an undeclared field, a numeric column,
    and one line that is not JSON at all."""
    lines = []
    for i, pdl in enumerate(PRM_BORDEAUX):
        for k in range(3):
            row: dict = {
                "pdl": pdl,
                "iris": "330630101",
                "segment": "RES",
                "debut": start_s + k * 600,
                "duree_s": 600,
                "energie_wh": 120 + i + k,
            }
            if i == 0 and k == 0:
                row["segment"] = f"RES {EMAIL}"  # kept text field
                row["note"] = f"{NAME}, {ADDRESS} 33000 Bordeaux, {PHONE}"  # undeclared
            if i == 1 and k == 0:
                row["iris"] = json.dumps({"contact": {"mail": EMAIL, IPV4: MAC}})  # nested
            if i == 2 and k == 0:
                row["energie_wh"] = NIR  # a number that is an identifier
            lines.append(json.dumps(row))
    lines.insert(5, '{"pdl": "' + BAD_LINE_PRM + '", "contact": "' + EMAIL + '", ')  # cut
    return ("\n".join(lines) + "\n").encode()


def paris_csv() -> bytes:
    """A consented 10-minute curve (per-message outputs), personal data in the sector
    column and a line whose number cannot be read."""
    rows = ["prm;iris;secteur;horodate;pas;energie_kwh"]
    for i, prm in enumerate(PRM_PARIS):
        for k in range(3):
            secteur = "residentiel"
            if i == 0 and k == 0:
                secteur = f"residentiel {PHONE} {IPV4}"
            rows.append(f"{prm};751010101;{secteur};2026-11-20 10:{k}0:00;PT10M;0,{i + 10}")
    rows.append(f"{BAD_LINE_PRM};751010101;{NAME};2026-11-20 10:00:00;PT10M;pas un nombre")
    return ("\n".join(rows) + "\n").encode("utf-8")


def velov_ndjson() -> bytes:
    """A public source: identifiers are removed there too (declared places stay)."""
    rows = [
        {
            "number": 1001 + i,
            "name": "Place Bellecour",
            "address": "Place Bellecour",
            "status": "OPEN" if i else f"OPEN {EMAIL}",
            "bike_stands": 20,
            "available_bikes": 5 + i,
            "available_bike_stands": 15 - i,
            "last_update": "2026-11-20T10:00:00Z",
            "gateway": MAC,  # undeclared
        }
        for i in range(3)
    ]
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


def all_topic_bytes(bootstrap: str) -> dict[str, bytes]:
    """Every record of every topic outside the raw zone, committed or not, keys and values."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    metadata = admin.list_topics(timeout=30)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"attacker-{time.time_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_uncommitted",
        }
    )
    names = sorted(n for n in metadata.topics if n not in RAW_ZONE and not n.startswith("__"))
    out: dict[str, bytearray] = {name: bytearray() for name in names}
    partitions = [
        TopicPartition(name, p, OFFSET_BEGINNING)
        for name in names
        for p in metadata.topics[name].partitions
    ]
    waiting = {(tp.topic, tp.partition) for tp in partitions}
    try:
        consumer.assign(partitions)
        deadline = time.monotonic() + 120
        while waiting and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    waiting.discard((message.topic(), message.partition()))
                continue
            out[message.topic()] += (message.key() or b"") + b"\x00" + (message.value() or b"")
    finally:
        consumer.close()
    assert not waiting, f"partitions not read to their end: {sorted(waiting)[:5]}"
    return {name: bytes(data) for name, data in out.items()}


def leaks(where: str, blob: bytes) -> list[str]:
    text = blob.decode("utf-8", errors="replace")
    return [f"{where}: {value!r}" for value in FORBIDDEN if value in text]


@pytest.mark.timeout(600)
def test_planted_personal_data_is_nowhere_in_clear_outside_the_raw_zone(tmp_path: Path) -> None:
    services = available_services()
    node = LocalNode(tmp_path / "node")
    node.up()
    try:
        tokens = read_env_file(dev_env_file(node.state))
        start_s = 1_795_000_000 - 1_795_000_000 % 86400  # a UTC midnight of late 2026

        def push(city: str, source: str, token: str, body: bytes) -> httpx.Response:
            return httpx.post(
                f"{node.ingest_url}/v1/cities/{city}/sources/{source}/records",
                content=body,
                headers={"Authorization": f"Bearer {tokens[token]}"},
                timeout=60,
            )

        answers = [
            push("bordeaux", "releves-compteurs", "CITEPLUS_TOKEN_BORDEAUX_COMPTEURS",
                 bordeaux_ndjson(start_s)),
            push("paris", "enedis-courbes-charge", "CITEPLUS_TOKEN_PARIS_ENEDIS", paris_csv()),
            push("lyon", "velov-disponibilite", "CITEPLUS_TOKEN_LYON_VELOV", velov_ndjson()),
        ]  # fmt: skip
        linky = FIXTURES / "linky-tic"
        for frame in (
            "enedis_tic2websocket_standard_1frame.txt",
            "enedis_tic2websocket_standard_1frame_bad_checksum_PCOUP.txt",
        ):
            answers.append(
                push("lyon", "linky-habitat", "CITEPLUS_TOKEN_LYON_LINKY",
                     (linky / frame).read_bytes())
            )  # fmt: skip
        for answer in answers:
            assert answer.status_code in (200, 422), answer.text
            for leak in leaks(f"HTTP answer {answer.request.url.path}", answer.content):
                # The sender may hear about its own rows, never about another row's values.
                assert BAD_LINE_PRM not in leak and EMAIL not in leak, leak
        assert sum(a.json().get("rejected", 0) for a in answers) >= 3  # bad lines were sent

        started = time.monotonic()
        settle(node, services)
        print(f"settled in {time.monotonic() - started:.0f} s")
        found: list[str] = []

        # 1. Every topic outside the raw zone, as a raw Kafka reader sees it.
        topics = all_topic_bytes(f"127.0.0.1:{node.base_port}")
        assert "dlq.v1" in topics and "anonymised.v1" in topics, sorted(topics)
        assert len(topics["dlq.v1"]) > 0, "the bad lines left no dead letter"
        assert len(topics["anonymised.v1"]) > 0, "nothing was anonymised"
        for name, blob in topics.items():
            found += leaks(f"topic {name}", blob)

        # 2. Every table of the warehouse.
        tables = [r["name"] for r in node.sql("SHOW TABLES").to_pylist()]
        assert "dead_letters" in tables
        for table in tables:
            rows = node.sql(f"SELECT * FROM `{table}`").to_pylist()
            found += leaks(f"table {table}", repr(rows).encode())

        # 3. Every log line of every service and of the node.
        logs = sorted(node.state.rglob("*.log"))
        assert logs, "no log file found"
        for path in logs:
            if "kafka" in path.parts or "registry" in path.parts:
                continue  # the broker's and registry's own logs quote no record
            found += leaks(f"log {path.relative_to(node.state)}", path.read_bytes())

        assert found == [], "\n".join(found)
    finally:
        node.down()
