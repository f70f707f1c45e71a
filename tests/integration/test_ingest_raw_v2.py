"""Ingest on raw.v2 against the real broker and registry: a request of single
readings from many sensors lands as a handful of RawBatch messages whose members
are exactly the RawRecords raw.v1 gets for the same request, on the partitions
librdkafka gives their raw.v1 keys; a retried request lands once; a request too
large for one message is split, and one entity too large for any is refused whole;
dead letters of a fixed source replay onto raw.v2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import httpx
import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from services.ingest.core import IngestTopics
from services.ingest.service import build_core
from services.node.replay import read_raw_letters, replay_dead_letters
from services.policy.topics import declared_topics
from services.runtime.batches import batching, entity_partition
from services.runtime.cities import load_cities
from services.runtime.kafka import MAX_MESSAGE_BYTES, make_producer
from services.runtime.provisioning import provision_topics
from testkit.ingest import serve_ingest
from testkit.kafka import read_to_end

pytestmark = pytest.mark.integration

CITY = """
code: airville
name: Airville
timezone: Europe/Paris
sources:
  - {id: air, format: ndjson, dataset: air-quality, domain: environment, entity: sensor,
     token: "env:AV_AIR", numeric: [no2]}
"""
URL = "/v1/cities/airville/sources/air/records"
HEADERS = {"Authorization": "Bearer tok-air"}
NAMES = ("raw.v1", "raw.v2", "dlq.v1", "raw.dlq.v1", "ingest.state.v1")


@pytest.fixture()
def airville(node, isolated_topics, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """(start(raw name) -> a served ingest writing that raw topic, specs, contracts)."""
    monkeypatch.setenv("AV_AIR", "tok-air")
    (tmp_path / "airville.yaml").write_text(CITY)
    cities = load_cities(tmp_path)
    specs, contracts = isolated_topics(*NAMES)

    def start(raw: str):
        topics = IngestTopics(raw=specs[raw].name, dead_letters=specs["dlq.v1"].name)
        instance = f"{specs[raw].name}-{uuid.uuid4().hex[:6]}"
        core = build_core(node, contracts, cities, topics=topics, instance=instance)
        return serve_ingest(core, cities)

    return start, specs, contracts


def readings(sensors: int, *, note: str = "", bad_line: bool = False) -> bytes:
    """One reading per sensor (what air-quality, traffic or parking systems push)."""
    rows = [
        json.dumps({"sensor": f"s{n:05d}", "t": "2026-11-20T10:00:00Z", "no2": n, "note": note})
        for n in range(sensors)
    ]
    if bad_line:
        rows.insert(sensors // 2, '{"sensor": "s-broken", "no2": ')
    return "\n".join(rows).encode()


def post(url: str, body: bytes, key: str | None = None) -> httpx.Response:
    headers = dict(HEADERS, **({"Idempotency-Key": key} if key else {}))
    return httpx.post(url + URL, content=body, headers=headers, timeout=120)


def v2_members(node, contracts, topic: str) -> dict[int, list[dict]]:
    """Every committed raw.v2 message exploded, per partition in log order; each
    message's key names its partition and each member's raw.v1 key gives it too."""
    codec, partitions = contracts.codec(topic), contracts.codec(topic).spec.partitions
    out: dict[int, list[dict]] = {}
    for message in read_to_end(node, topic):
        assert len(message.value()) <= MAX_MESSAGE_BYTES
        members = batching("RawBatch").explode(codec.decode(message.value()))
        assert message.key() == f"airville|air|{message.partition()}".encode()
        for member in members:
            key = f"airville|air|{member['entity_id']}"
            assert entity_partition(key, partitions) == message.partition()
        out.setdefault(message.partition(), []).extend(members)
    return out


def without_batch_identity(by_partition: dict[int, list[dict]]) -> dict[int, list[dict]]:
    """Lineage id and arrival time differ per request: everything else must not."""
    return {
        p: [{**r, "lineage_id": "", "received_at": 0} for r in records]
        for p, records in by_partition.items()
    }


def test_single_readings_of_many_sensors_land_as_a_few_messages_equal_to_v1(airville, node):
    start, specs, contracts = airville
    body = readings(1000, bad_line=True)
    with start("raw.v1") as v1, start("raw.v2") as v2:
        old, new = post(v1.url, body), post(v2.url, body)
    assert old.status_code == new.status_code == 200
    for answer in (old.json(), new.json()):
        assert (answer["accepted"], answer["rejected"], answer["entities"]) == (1000, 1, 1000)
        assert answer["errors"][0]["reason"] == "bad-json"

    raw_v1, raw_v2 = specs["raw.v1"], specs["raw.v2"]
    on_v2 = v2_members(node, contracts, raw_v2.name)
    assert sum(len(m) for m in on_v2.values()) == 1000
    assert len(read_to_end(node, raw_v2.name)) <= raw_v2.partitions  # not 1,000 messages
    v1_codec, on_v1 = contracts.codec(raw_v1.name), {}
    for message in read_to_end(node, raw_v1.name):  # placed by librdkafka's partitioner
        on_v1.setdefault(message.partition(), []).append(v1_codec.decode(message.value()))
    assert without_batch_identity(on_v2) == without_batch_identity(on_v1)
    # Each request's bad line is a dead letter on the restricted raw zone, whole.
    letters = read_to_end(node, specs["raw.dlq.v1"].name)
    assert len(letters) == 2 and all(b"s-broken" in m.value() for m in letters)


def test_a_retried_request_lands_once_on_raw_v2(airville, node):
    start, specs, contracts = airville
    key, body = str(uuid.uuid4()), readings(200)
    with start("raw.v2") as running:
        answers = [post(running.url, body, key) for _ in range(3)]
    assert [a.status_code for a in answers] == [200] * 3
    assert all(a.content == answers[0].content for a in answers)
    assert [a.headers.get("Idempotent-Replayed") for a in answers] == [None, "true", "true"]
    members = [m for ms in v2_members(node, contracts, specs["raw.v2"].name).values() for m in ms]
    assert sorted(m["entity_id"] for m in members) == [f"s{n:05d}" for n in range(200)]
    assert len(read_to_end(node, specs["ingest.state.v1"].name)) == 1


def test_an_oversized_request_is_split_and_one_oversized_entity_refused(airville, node):
    start, specs, contracts = airville
    note = "x" * 1200  # ~3.7 MB once encoded: more than a message per partition
    body = readings(3000, note=note)
    row = {"sensor": "s-huge", "t": "2026-11-20T10:00:00Z", "no2": 1, "note": note}
    huge = "\n".join(json.dumps(row) for _ in range(1000)).encode()  # one sensor: 1.2 MB
    with start("raw.v2") as running:
        split, refused = post(running.url, body), post(running.url, huge)
    assert split.status_code == 200 and split.json()["accepted"] == 3000
    assert refused.status_code == 413 and refused.json()["entity"] == "s-huge"
    raw_v2 = specs["raw.v2"]
    messages = read_to_end(node, raw_v2.name)
    assert raw_v2.partitions < len(messages) and all(
        len(m.value()) <= MAX_MESSAGE_BYTES for m in messages
    )
    members = v2_members(node, contracts, raw_v2.name)
    # Every sensor once, each partition's members in the request's order.
    assert sorted(m["entity_id"] for ms in members.values() for m in ms) == [
        f"s{n:05d}" for n in range(3000)
    ]
    for records in members.values():
        ids = [r["entity_id"] for r in records]
        assert ids == sorted(ids)


def test_dead_letters_of_a_fixed_source_replay_onto_raw_v2_once(airville, node, tmp_path):
    start, specs, contracts = airville
    refuse(start, 4)
    first = replay_fixed(airville, node, tmp_path)
    again = replay_fixed(airville, node, tmp_path)
    assert (first.letters, first.accepted, first.rejected, again.letters) == (4, 4, 0, 0)
    members = v2_members(node, contracts, specs["raw.v2"].name)  # partitions checked there
    assert sorted(m["entity_id"] for ms in members.values() for m in ms) == [
        f"c{n}" for n in range(4)
    ]


def refuse(start, count: int) -> None:
    """Push ``count`` lines that name the entity `capteur` where the city file says
    `sensor`: ingest refuses every one, each a letter on the raw dead-letter topic."""
    body = "\n".join(
        json.dumps({"capteur": f"c{n}", "t": "2026-11-20T10:00:00Z", "no2": n})
        for n in range(count)
    ).encode()
    with start("raw.v2") as running:
        answer = post(running.url, body).json()
    assert (answer["accepted"], answer["rejected"]) == (0, count)


def replay_fixed(airville, node, tmp_path: Path):
    """`citeplus replay dead-letters` of the source once its city file names the
    entity `capteur`."""
    _, specs, contracts = airville
    fixed_dir = tmp_path / "fixed"
    fixed_dir.mkdir(exist_ok=True)
    (fixed_dir / "airville.yaml").write_text(CITY.replace("entity: sensor", "entity: capteur"))
    names = IngestTopics(raw=specs["raw.v2"].name, dead_letters=specs["dlq.v1"].name)
    return replay_dead_letters(
        node, contracts, load_cities(fixed_dir), city="airville", source="air", topics=names
    )


def test_a_replay_reads_letters_whose_commit_markers_are_not_written_yet(airville, node):
    """A replay straight after another must see that one's "replayed" markers, whose
    commit markers may still be on their way (the coordinator writes them after the
    writer is told): otherwise it replays the same letters again. A commit still in
    flight when the read starts stands for that gap: its letters must be read."""
    _, _, contracts = airville
    topic, written = refused_letters(node, airville)
    producer = make_producer(node, transactional_id=f"test-letters-{uuid.uuid4().hex}")
    producer.init_transactions(30)
    producer.begin_transaction()
    for message in written:
        producer.produce(topic, message.value(), message.key(), partition=message.partition())
    producer.flush(30)  # in the log, past the last stable offset
    committing = threading.Timer(1.0, producer.commit_transaction, args=(30,))
    committing.start()
    try:
        letters = read_raw_letters(node, contracts, topic)
    finally:
        committing.join()
    assert sum(len(chunks) for chunks in letters.values()) == 2 * len(written) > 0


def refused_letters(node, airville) -> tuple[str, list]:
    """Three letters of ingest on the raw dead-letter topic: (topic, its messages)."""
    start, specs, _ = airville
    refuse(start, 3)
    topic = specs["raw.dlq.v1"].name
    return topic, read_to_end(node, topic)


def test_a_replay_reads_the_letters_left_when_retention_emptied_a_partition(airville, node):
    """The raw dead letters are kept 7 days: a partition that got none since has lost
    them all (its low watermark is its end, above 0). Nothing is left to read there,
    and the other partitions' letters must still be read, not a partition waited for
    until the read gives up."""
    _, _, contracts = airville
    topic, written = refused_letters(node, airville)
    lost = written[0].partition()
    emptied = TopicPartition(topic, lost, -1)  # -1: up to the high watermark
    admin = AdminClient({"bootstrap.servers": node.kafka.bootstrap})
    assert admin.delete_records([emptied])[emptied].result().low_watermark > 0
    letters = read_raw_letters(node, contracts, topic, timeout_s=10)
    kept = [m for m in written if m.partition() != lost]
    assert sum(len(chunks) for chunks in letters.values()) == len(kept) < len(written)


def test_a_replay_reads_past_a_partition_left_with_its_commit_marker_only(airville, node):
    """Retention may leave a partition whose only record is a transaction marker (the
    letters before it gone): the read must get past it like past any other end."""
    _, _, contracts = airville
    topic, written = refused_letters(node, airville)
    lost = written[0].partition()
    last = max(m.offset() for m in written if m.partition() == lost)
    emptied = TopicPartition(topic, lost, last + 1)  # the commit marker stays
    admin = AdminClient({"bootstrap.servers": node.kafka.bootstrap})
    assert admin.delete_records([emptied])[emptied].result().low_watermark == last + 1
    letters = read_raw_letters(node, contracts, topic, timeout_s=10)
    kept = [m for m in written if m.partition() != lost]
    assert sum(len(chunks) for chunks in letters.values()) == len(kept) < len(written)


def test_a_replay_reads_past_an_aborted_transaction_at_the_end_of_a_partition(airville, node):
    """A writer that aborted last leaves aborted records and a marker at the end of
    the log: the end a replay waits for is past them, and it must get there."""
    _, _, contracts = airville
    topic, written = refused_letters(node, airville)
    producer = make_producer(node, transactional_id=f"test-aborted-{uuid.uuid4().hex}")
    producer.init_transactions(30)
    producer.begin_transaction()
    for partition in range(3):
        producer.produce(topic, b"not a letter", b"k", partition=partition)
    producer.flush(30)
    producer.abort_transaction(30)
    letters = read_raw_letters(node, contracts, topic, timeout_s=10)
    assert sum(len(chunks) for chunks in letters.values()) == len(written)


def test_a_replay_after_a_killed_replay_reads_every_letter(airville, node, tmp_path):
    """A replay killed inside its transaction leaves it open until the transaction
    timeout, holding back what a committed reader gets of the dead-letter topic. The
    next replay of the source fences it first (its producer's start aborts it), so it
    reads every letter, not only those written before the open transaction."""
    start, specs, _ = airville
    topic = specs["raw.dlq.v1"].name
    killed = make_producer(
        node, transactional_id=f"citeplus.{node.node.id}.replay-dead-letters.airville.air"
    )
    killed.init_transactions(30)
    killed.begin_transaction()
    for partition in range(specs["raw.dlq.v1"].partitions):
        killed.produce(topic, b"half-replayed", partition=partition)
    killed.flush(30)  # never committed: the replay was killed here
    refuse(start, 4)
    replay = replay_fixed(airville, node, tmp_path)
    assert (replay.letters, replay.accepted, replay.rejected) == (4, 4, 0)


def test_a_replay_held_by_an_open_transaction_tells_the_operator(node, tmp_path):
    """A transaction left open on the raw dead-letter topic (another writer's, which
    the replay's own producer does not fence) holds the replay's read up to 20 s:
    `citeplus replay dead-letters` says on stderr what it waits for, then that it gave
    up, rather than pause without a line."""
    declared = next(t for t in declared_topics(node) if t.name == "raw.dlq.v1")
    provision_topics(node, [declared])  # the command's own topic, as it will find it
    (tmp_path / "airville.yaml").write_text(CITY)
    held = make_producer(node, transactional_id=f"test-held-{uuid.uuid4().hex}")
    held.init_transactions(30)
    held.begin_transaction()
    held.produce(declared.name, b"held open", b"k", partition=0)
    held.flush(30)  # in the log, never committed while the replay reads
    command = ["replay", "dead-letters", "--city", "airville", "--source", "air"]
    try:
        run = subprocess.run(
            [sys.executable, "-m", "services.cli", *command, "--cities", str(tmp_path)],
            env={**os.environ, "AV_AIR": "tok-air"},
            capture_output=True,
            text=True,
            timeout=240,
            check=True,
        )
    finally:
        held.abort_transaction(30)
    said = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    waits = [s for s in said if s["logger"] == "services.runtime.log_ends"]
    assert [(s["level"], s["topic"], s["partitions"]) for s in waits] == [
        ("info", declared.name, [0]),
        ("warning", declared.name, [0]),
    ], run.stderr
    assert waits[0]["stable"][0] < waits[0]["log_end"][0]
