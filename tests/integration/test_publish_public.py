"""Public topics as a partner city sees them: only open and shared datasets, read
with confluent-kafka's stock AvroDeserializer + SchemaRegistryClient, and with
kcat (Debian's build, without Avro) as a second, independent client."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from services.policy.sharing import SharingPolicy
from services.publish.republish import PublicTopics, Republisher
from services.runtime.batches import batching
from services.runtime.kafka import RecordProducer, make_producer
from services.runtime.processor import StageRunner
from services.runtime.provisioning import connect_contracts, provision_topics
from services.runtime.source_headers import source_headers
from services.runtime.topics import load_topics
from testkit.kafka import read_all
from testkit.records import energy_aggregate, observation, released_aggregate

pytestmark = pytest.mark.integration
OBSERVATION = batching("Observation")

POLICIES = {
    ("lyon", "open-air"): SharingPolicy("open", (), "ODbL-1.0"),
    ("lyon", "meters-shared"): SharingPolicy("shared", ("marseille",), None),
    ("lyon", "meters-internal"): SharingPolicy("internal"),
}


def test_partner_reads_open_and_shared_never_internal(node, isolated_topics) -> None:
    specs, _ = isolated_topics(
        "observations.v1",
        "observations.v2",
        "energy.aggregates.v1",
        "energy.aggregates.released.v2",
        "public.observations.v1",
        "public.energy.aggregates.v1",
        "public.energy.aggregates.v2",
        "dlq.v1",
        partitions=1,
    )
    prefix = specs["observations.v1"].name.removesuffix("observations.v1")
    templates = load_topics(partners=["marseille"])
    shared, shared_aggregates = (
        replace(templates[name], name=prefix + name, partitions=1)
        for name in (
            "public.shared.marseille.observations.v1",
            "public.shared.marseille.energy.aggregates.v2",
        )
    )
    provision_topics(node, [shared, shared_aggregates])
    contracts = connect_contracts(node, [*specs.values(), shared, shared_aggregates])
    topics = PublicTopics(
        observations_in=specs["observations.v1"].name,
        aggregates_in=specs["energy.aggregates.released.v2"].name,
        public_observations=specs["public.observations.v1"].name,
        shared_observations=f"{prefix}public.shared.{{partner}}.observations.v1",
        public_aggregates=specs["public.energy.aggregates.v2"].name,
        shared_aggregates=f"{prefix}public.shared.{{partner}}.energy.aggregates.v2",
        observation_batches=specs["observations.v2"].name,
    )
    writer = RecordProducer(make_producer(node), contracts)
    for source in ("open-air", "meters-shared", "meters-internal", "undeclared"):
        for i in range(3):
            record = {**observation(points=24, entity=f"{source}-{i}"), "source": source}
            writer.produce(topics.observations_in, f"lyon|{source}-{i}", record)
        # The same source's entities many to a message (observations.v2): an internal
        # batch is decided at once, an open or shared one leaves member by member.
        # Once without headers (decoded), once naming its city and source as normalise
        # does (an internal one is then passed over undecoded).
        for tag, headers in (("v2", None), ("v2h", source_headers("lyon", source))):
            members = [
                {**observation(points=24, entity=f"{source}-{tag}-{i}"), "source": source}
                for i in range(3)
            ]
            batch = OBSERVATION.batch_of(members)
            writer.produce(topics.observation_batches, f"lyon|{source}", batch, headers=headers)
    # Headers never send anything: an internal batch whose headers name an open source
    # is decoded, and stays internal.
    lying = [
        {**observation(points=24, entity=f"meters-internal-lying-{i}"), "source": "meters-internal"}
        for i in range(3)
    ]
    headers = source_headers("lyon", "open-air")
    writer.produce(
        topics.observation_batches, "lyon|x", OBSERVATION.batch_of(lying), headers=headers
    )
    writer.produce(topics.aggregates_in, "lyon|69381", released_aggregate())
    # A provisional upsert (internal) must not leave, even with an open sharing.
    writer.produce(specs["energy.aggregates.v1"].name, "lyon|69381", energy_aggregate())
    assert writer.flush() == 0

    # Aggregates shared with marseille only: its topic has them, the open one not.
    stage = Republisher(POLICIES, topics, SharingPolicy("shared", ("marseille",)))
    runner = StageRunner(
        stage, node, contracts, instance="t", dead_letter_topic=specs["dlq.v1"].name
    )
    runner.run(idle_exit_s=3)
    assert runner.summary.passed_over == 2  # meters-internal and undeclared, named

    stock = AvroDeserializer(SchemaRegistryClient({"url": node.registry.url}))

    def partner_read(topic: str, expected: int) -> list[dict]:
        return [
            stock(m.value(), SerializationContext(topic, MessageField.VALUE))
            for m in read_all(node, topic, expected=expected)
        ]

    open_records = partner_read(topics.public_observations, 9)
    shared_records = partner_read(shared.name, 9)
    aggregates = partner_read(shared_aggregates.name, 1)
    assert read_all(node, topics.public_aggregates, expected=0, settle_s=1.0) == []
    assert {r["source"] for r in open_records} == {"open-air"}
    assert {r["source"] for r in shared_records} == {"meters-shared"}
    assert sorted(r["entity_pseudonym"] for r in shared_records) == sorted(
        f"meters-shared{v}-{i}" for v in ("", "-v2", "-v2h") for i in range(3)
    )
    assert aggregates[0]["energy_kwh"] == 1234.5 and "largest_share" not in aggregates[0]
    assert read_all(node, specs["public.energy.aggregates.v1"].name, expected=0, settle_s=0.5) == []
    everything = open_records + shared_records
    assert not [r for r in everything if r["source"] in ("meters-internal", "undeclared")]

    kcat = shutil.which("kcat")
    assert kcat, "kcat is missing: `make setup` installs it (deploy/dev/system-packages.sh)"
    host = node.kafka.bootstrap
    out = subprocess.run(
        [
            kcat,
            "-C",
            "-b",
            host,
            "-t",
            topics.public_observations,
            "-e",
            "-q",
            "-X",
            "isolation.level=read_committed",
            "-f",
            "%k\t%S\t%h\n",
        ],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    lines = [line for line in out.decode().splitlines() if line]
    assert sorted(line.split("\t")[0] for line in lines) == sorted(
        f"lyon|open-air{v}-{i}" for v in ("", "-v2", "-v2h") for i in range(3)
    )
    raw = subprocess.run(
        [
            kcat,
            "-C",
            "-b",
            host,
            "-t",
            topics.public_observations,
            "-e",
            "-q",
            "-c",
            "1",
            "-X",
            "isolation.level=read_committed",
            "-f",
            "%s",
        ],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    schema_id = contracts.codec(topics.public_observations).schema_id
    assert raw[0] == 0 and int.from_bytes(raw[1:5], "big") == schema_id  # magic byte + schema id
