"""Several workers per stage on the real broker and registry.

- energy-analytics: a second worker joins mid-stream, then the first is SIGKILLed:
  the aggregates equal a one-worker run's (state followed its partitions, restored
  from the changelog, nothing counted twice); the group pinned ``range``;
- normalise: two workers, the second joining mid-stream and the first leaving, on
  meters whose readings are register differences (state per meter): every reading
  published exactly once, with the right value across the hand-over;
- ingest: two workers on one port (SO_REUSEPORT); a keyed batch retried on the
  other worker lands once and gets the first answer; two worker processes started
  as the supervisor starts them are each read at their own metrics port.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka.admin import AdminClient, NewPartitions

from services.energy.stage import EnergyStage
from services.ingest.core import IngestTopics
from services.ingest.service import build_core
from services.node.status import parse_metrics, sample_service
from services.node.supervisor import Supervisor, worker_labels
from services.node.workers_status import describe_workers, render_workers
from services.normalise.stage import NormaliseStage, NormaliseTopics
from services.runtime.batches import batching
from services.runtime.cities import load_cities
from services.runtime.config import ProcessingSection
from services.runtime.copartition import CoPartitionError
from services.runtime.kafka import RecordProducer, make_producer
from services.runtime.paths import REPO_ROOT
from services.runtime.processor import StageRunner
from testkit.energy_runs import figures, latest, make_topics, produce, run_stage, stream
from testkit.ingest import serve_ingest
from testkit.kafka import read_all, read_to_end
from testkit.local_node import free_port_block
from testkit.normalise import LINKY, T0, city_file, linky
from testkit.ports import free_port

CITY = """
code: keyville
name: Keyville
timezone: Europe/Paris
sources:
  - {id: meters, format: ndjson, dataset: load-curves, domain: energy, entity: meter,
     token: "env:KV_METERS", numeric: [wh]}
"""
URL = "/v1/cities/keyville/sources/meters/records"


def batch(meters: list[str], wh: int = 100) -> bytes:
    return "\n".join(json.dumps({"meter": m, "t": 1736755200, "wh": wh}) for m in meters).encode()


pytestmark = pytest.mark.integration

LOGS = (REPO_ROOT / "var" / "test-logs").resolve()


def wait_until(condition, timeout_s: float, what: str, every_s: float = 0.5):
    """Poll ``condition`` until it gives something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    pytest.fail(f"{what} within {timeout_s:g} s")


def assigned_partitions(log: Path) -> list[list[int]]:
    """The partitions a worker's log says it was assigned, rebalance after rebalance."""
    found = []
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("msg") == "partitions assigned":
            found.append(entry.get("partitions", []))
    return found


def group_members(node, stage: str) -> dict[str, list[tuple[str, int]]]:
    """client.id -> (topic, partition) of each member of the stage's group, as
    `citeplus status` reads them (and the group's assignor); {} until it is stable."""
    [group] = describe_workers(node, [stage])
    if group.state != "stable":
        return {}
    members: dict[str, Any] = {
        client: sorted((topic, p) for topic, parts in held.items() for p in parts)
        for client, held in group.members.items()
    }
    members["assignor"] = group.assignor
    return members


def test_energy_state_follows_its_partitions_when_a_worker_joins_and_one_dies(
    node, isolated_topics
) -> None:
    data = stream(meters=36, days=3)  # 2,592 records, 15,552 readings
    reference_topics, reference_prefix, reference_contracts = make_topics(isolated_topics)
    produce(node, reference_contracts, reference_topics.observations, data)
    run_stage(node, reference_contracts, reference_topics, f"{reference_prefix}energy-analytics")
    expected = figures(latest(node, reference_contracts, reference_topics.aggregates))
    assert len(expected) > 1000

    topics, prefix, contracts = make_topics(isolated_topics)
    # Two days and a half before the kill, the rest after it: the surviving worker
    # must continue the dead one's open day from the restored state.
    split = len(data) * 5 // 6
    produce(node, contracts, topics.observations, data[:split])
    env = {
        **os.environ,
        "CITEPLUS_KAFKA_BOOTSTRAP": node.kafka.bootstrap,
        "CITEPLUS_REGISTRY_URL": node.registry.url,
        "CITEPLUS_PROCESSING_BATCH_SIZE": "40",
        "CITEPLUS_PROCESSING_BATCH_TIMEOUT_S": "0.1",
    }
    run_id = uuid.uuid4().hex[:6]

    def command(worker: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "services.cli",
            "service",
            "energy-analytics",
            "--topic-prefix",
            prefix,
            "--metrics-port",
            "0",
            "--instance",
            f"{run_id}-{worker}",
        ]

    LOGS.mkdir(parents=True, exist_ok=True)
    logs = [LOGS / f"{prefix}energy-worker-{worker}.log" for worker in (1, 2)]
    processes: list[subprocess.Popen] = []
    try:
        for worker, log in zip((1, 2), logs, strict=True):
            with log.open("ab") as output:
                processes.append(
                    subprocess.Popen(
                        command(worker), env=env, stdout=output, stderr=output, cwd=REPO_ROOT
                    )
                )
            if worker == 1:  # the second joins once the first has committed aggregates
                wait_until(
                    lambda: read_all_aggregates(node, topics.aggregates),
                    60,
                    "no aggregates from the first worker",
                )
        first, second = processes
        # The rebalance happened mid-stream: the second worker got partitions of its own.
        wait_until(
            lambda: any(assigned_partitions(logs[1])), 60, "the second worker got no partitions"
        )
        members = wait_until(
            lambda: group_members(node, f"{prefix}energy-analytics"), 30, "no stable group"
        )
        assert members.pop("assignor") == "range"
        shown = render_workers(describe_workers(node, [f"{prefix}energy-analytics"]))
        assert "2 in its group (stable, range)" in shown and f"{run_id}-2: " in shown
        assert sorted(members) == sorted(
            f"citeplus.{node.node.id}.{prefix}energy-analytics.{run_id}-{w}" for w in (1, 2)
        )
        for assignment in members.values():  # co-partitioned: same numbers of both inputs
            numbers = {
                t: {p for topic, p in assignment if topic == t}
                for t in (topics.observations, topics.regrouped)
            }
            assert numbers[topics.observations] == numbers[topics.regrouped] != set()
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        produce(node, contracts, topics.observations, data[split:])
        wait_until(
            lambda: assigned_partitions(logs[1])[-1] == list(range(topics.partitions)),
            60,
            "the dead worker's partitions did not move to the second",
        )
        got: dict[str, tuple] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and got != expected:
            time.sleep(2)
            got = figures(latest(node, contracts, topics.aggregates))
        assert second.poll() is None, "the second worker died"
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
    assert got == expected


def read_all_aggregates(node, topic: str) -> bool:
    return bool(read_all(node, topic, timeout_s=1, settle_s=0.2))


DAY = 144


def registers(day: int, meter: int) -> list[int]:
    base = 5_000_000 + meter * 1_000_000
    return [base + (day * DAY + k) * (100 + meter) for k in range(DAY)]


def test_two_normalise_workers_publish_every_reading_once_across_a_hand_over(
    node, isolated_topics, tmp_path: Path
) -> None:
    specs, contracts = isolated_topics(
        "anonymised.v1", "observations.v1", "normalise.state.v1", "dlq.v1", partitions=4
    )
    city_file(tmp_path, "testville", [LINKY])
    cities = load_cities(tmp_path)
    topics = NormaliseTopics(
        input=specs["anonymised.v1"].name,
        output=specs["observations.v1"].name,
        state=specs["normalise.state.v1"].name,
        dead_letters=specs["dlq.v1"].name,
    )
    small = replace(
        node, processing=replace(ProcessingSection(), batch_size=5, batch_timeout_s=0.1)
    )
    group = f"normalise-workers-{uuid.uuid4().hex[:6]}"
    meters = [f"meter-{m:02d}" for m in range(12)]
    days = 6
    writer = RecordProducer(make_producer(node), contracts)

    def send(days_sent: range) -> None:
        """Meter by meter, day after day: each day's first difference needs the day before."""
        for day in days_sent:
            for m, entity in enumerate(meters):
                rec = linky(registers(day, m), day * DAY, entity=entity, lineage=f"d{day}")
                writer.produce(topics.input, f"{rec['city']}|{rec['entity_pseudonym']}", rec)
        assert writer.flush() == 0

    def runner(instance: str) -> StageRunner:
        stage = NormaliseStage(small, contracts, cities, topics=topics)
        stage.name = group
        return StageRunner(
            stage, small, contracts, instance=instance, dead_letter_topic=topics.dead_letters
        )

    first, second = runner("w1"), runner("w2")
    stops = [threading.Event(), threading.Event()]
    threads = [
        threading.Thread(target=worker.run, args=(stop,), daemon=True)
        for worker, stop in zip((first, second), stops, strict=True)
    ]
    total = len(meters) * days
    try:
        send(range(0, 2))
        threads[0].start()
        wait_until(lambda: first.summary.records_in >= 10, 60, "the first worker consumed nothing")
        threads[1].start()  # joins mid-stream: the group rebalances
        wait_until(lambda: second.consumer.assignment(), 60, "the second worker got no partitions")
        send(range(2, 4))
        wait_until(lambda: second.summary.records_in > 0, 60, "the second worker got no records")
        stops[0].set()  # the first leaves mid-stream: its partitions move to the second
        threads[0].join(60)
        send(range(4, 6))
        wait_until(
            lambda: first.summary.records_in + second.summary.records_in >= total,
            120,
            "not every record was consumed",
        )
    finally:
        for stop, thread in zip(stops, threads, strict=True):
            stop.set()
            if thread.is_alive():
                thread.join(60)
    assert first.summary.records_in + second.summary.records_in == total
    assert 0 < first.summary.records_in < total  # both worked: the hand-over was mid-stream

    codec = contracts.codec(topics.output)
    seen: dict[tuple[str, int], float] = {}
    for message in read_to_end(node, topics.output):
        observation = codec.decode(message.value())
        for k, reading in enumerate(observation["values"]):
            key = (observation["entity_pseudonym"], observation["start"] + k * 600_000_000)
            assert key not in seen, f"published twice: {key}"
            seen[key] = reading
    assert len(seen) == len(meters) * (days * DAY - 1)
    for m, entity in enumerate(meters):  # differences right across every day boundary
        assert all(
            seen[(entity, T0 + k * 600_000_000)] == pytest.approx((100 + m) / 1000)
            for k in range(days * DAY - 1)
        )
    assert read_all(node, topics.dead_letters, expected=0, settle_s=0.5) == []


def test_two_ingest_workers_on_one_port_land_a_retried_batch_once(
    node, isolated_topics, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KV_METERS", "tok-kv")
    (tmp_path / "keyville.yaml").write_text(CITY)
    cities = load_cities(tmp_path)
    specs, contracts = isolated_topics(
        "raw.v2", "dlq.v1", "raw.dlq.v1", "ingest.state.v1", partitions=2
    )
    # raw.v2, ingest's default: many entities of a batch per message.
    topics = IngestTopics(raw=specs["raw.v2"].name, dead_letters=specs["dlq.v1"].name)
    port = free_port()

    def worker(index: int):
        core = build_core(
            node, contracts, cities, topics=topics, instance=f"w{index}", follow_keys=True
        )
        return serve_ingest(core, cities, port=port, reuse_port=True, workers=2)

    def post(url: str, body: bytes, key: str) -> httpx.Response:
        headers = {"Authorization": "Bearer tok-kv", "Idempotency-Key": key}
        return httpx.post(url + URL, content=body, headers=headers, timeout=60)

    with worker(1) as one, worker(2) as two:
        assert one.url == two.url  # both listen on the same port
        # The first attempt reaches worker 1, its retry worker 2 (both started before).
        first = post(one.own_url, batch(["m1", "m2"]), "k-1")
        retry = post(two.own_url, batch(["m1", "m2"]), "k-1")
        # Many keyed batches, each sent twice on the shared port: the kernel spreads
        # the connections, so retries reach either worker.
        shared = [
            [post(one.url, batch([f"s{i}"]), f"shared-{i}") for _ in range(2)] for i in range(20)
        ]
        served = [
            w.core.metrics.registry.get_sample_value("citeplus_idempotency_replays_total") or 0
            for w in (one, two)
        ]
    assert first.status_code == 200 and first.json()["accepted"] == 2
    assert (retry.status_code, retry.content) == (200, first.content)
    assert retry.headers["Idempotent-Replayed"] == "true"
    for attempts in shared:
        assert [a.status_code for a in attempts] == [200, 200]
        assert attempts[0].content == attempts[1].content
    assert served[1] >= 1  # worker 2 answered retries of batches it never landed
    codec = contracts.codec(topics.raw)
    landed = sorted(
        member["entity_id"]
        for m in read_to_end(node, topics.raw)
        for member in batching("RawBatch").explode(codec.decode(m.value()))
    )
    assert landed == sorted(["m1", "m2", *(f"s{i}" for i in range(20))])


def test_energy_stops_naming_the_topics_when_partitions_were_added_to_one_input(
    node, isolated_topics
) -> None:
    """An operator adds partitions to the regrouped topic only: a city's state would
    split over workers, so the worker stops at its assignment with an error that
    names the topics and says what to do (on the previous code it ran on)."""
    topics, prefix, contracts = make_topics(isolated_topics)
    admin = AdminClient({"bootstrap.servers": node.kafka.bootstrap})
    grown = topics.partitions + 2
    admin.create_partitions([NewPartitions(topics.regrouped, grown)])[topics.regrouped].result(30)
    wait_until(
        lambda: (
            len(admin.list_topics(topics.regrouped, timeout=10).topics[topics.regrouped].partitions)
            == grown
        ),
        30,
        "the partitions were not added",
    )
    stage = EnergyStage(topics, node=node, contracts=contracts, name=f"{prefix}energy-analytics")
    runner = StageRunner(
        stage, node, contracts, instance="w1", dead_letter_topic=topics.dead_letters
    )
    with pytest.raises(CoPartitionError) as stopped:
        runner.run(idle_exit_s=20)
    message = str(stopped.value)
    assert f"{topics.regrouped}: {grown}" in message and f"{topics.observations}: 6" in message
    assert "same number of partitions" in message


def test_a_keyed_batch_waits_for_another_workers_open_transaction_and_never_lands_twice(
    node, isolated_topics, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker has handed a batch with the key to Kafka and not committed yet
    (its transaction is open): the retry on this worker is answered 503 with
    Retry-After instead of landing a copy; once that transaction is aborted (the
    other worker died), the retry lands, once."""
    monkeypatch.setenv("KV_METERS", "tok-kv")
    (tmp_path / "keyville.yaml").write_text(CITY)
    cities = load_cities(tmp_path)
    specs, contracts = isolated_topics(
        "raw.v1", "dlq.v1", "raw.dlq.v1", "ingest.state.v1", partitions=2
    )
    topics = IngestTopics(raw=specs["raw.v1"].name, dead_letters=specs["dlq.v1"].name)
    core = build_core(node, contracts, cities, topics=topics, instance="w1", follow_keys=True)
    assert core.keys is not None and core.keys.follower is not None
    core.keys.follower.catch_up_s = 3
    other = make_producer(node, transactional_id=f"other-worker-{uuid.uuid4().hex[:6]}")
    other.init_transactions(30)
    other.begin_transaction()
    state = specs["ingest.state.v1"].name
    other.produce(state, key=b"ingest-idempotency|elsewhere", value=b"\x00")  # not yet committed
    assert other.flush(30) == 0
    headers = {"Authorization": "Bearer tok-kv", "Idempotency-Key": "k-open"}
    with serve_ingest(core, cities, port=free_port(), reuse_port=True, workers=2) as running:
        waiting = httpx.post(running.url + URL, content=batch(["m1"]), headers=headers, timeout=60)
        other.abort_transaction(30)
        landed = httpx.post(running.url + URL, content=batch(["m1"]), headers=headers, timeout=60)
        again = httpx.post(running.url + URL, content=batch(["m1"]), headers=headers, timeout=60)
    assert waiting.status_code == 503 and int(waiting.headers["Retry-After"]) >= 1
    assert "retry in a few seconds with the same key" in waiting.json()["error"]
    assert landed.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    codec = contracts.codec(topics.raw)
    raw = read_all(node, topics.raw, expected=1, settle_s=1.0)
    assert [codec.decode(m.value())["entity_id"] for m in raw] == ["m1"]


def test_two_ingest_worker_processes_are_each_read_at_their_own_metrics_port(
    node, tmp_path: Path
) -> None:
    """`citeplus status` reads each of two ingest workers sharing the HTTP port at its
    own metrics port: there, each push shows on the one worker that took it, the two
    figures add up to what was pushed and hold still between reads; the shared port's
    /metrics gives one worker's figures, whichever the kernel picked, not the node's."""
    cities = tmp_path / "cities"
    cities.mkdir()
    (cities / "keyville.yaml").write_text(CITY)
    counts = {"ingest": 2}
    # The node's ports on free ones: ingest's own metrics ports are base + 1 and base + 11.
    ports = replace(
        node,
        metrics=replace(node.metrics, base_port=free_port_block(12)),
        ingest=replace(node.ingest, host="127.0.0.1", port=free_port()),
    )
    prefix = f"test.{uuid.uuid4().hex[:8]}."
    LOGS.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor(
        ["ingest"],
        log_dir=LOGS,
        state_file=tmp_path / "status.json",
        workers=counts,
        metrics_port=ports.metrics_port,
        extra_args={
            "ingest": [
                *("--cities", str(cities), "--topic-prefix", prefix),
                *("--host", "127.0.0.1", "--port", str(ports.ingest.port)),
            ]
        },
    )
    labels = worker_labels(["ingest"], counts)
    env = {
        **os.environ,
        "CITEPLUS_KAFKA_BOOTSTRAP": node.kafka.bootstrap,
        "CITEPLUS_REGISTRY_URL": node.registry.url,
        "KV_METERS": "tok-kv",
    }
    shared = f"http://127.0.0.1:{ports.ingest.port}"

    def own(label: str):
        sample = sample_service(ports, label, timeout=10, workers=counts)
        assert sample is not None, f"{label} does not answer on its own metrics port"
        return sample

    def own_records_in() -> list[float]:
        return [own(label).records_in for label in labels]

    def healthy(label: str) -> bool:
        sample = sample_service(ports, label, workers=counts)
        return sample is not None and bool(sample.healthy)

    processes: list[subprocess.Popen] = []
    taken = [0, 0]  # batches each worker landed
    pushed = 0
    try:
        for label in labels:  # one after the other, as the supervisor staggers them
            with (LOGS / f"{prefix}{label}.log").open("ab") as output:
                processes.append(
                    subprocess.Popen(
                        supervisor.command(label),
                        env=env,
                        stdout=output,
                        stderr=output,
                        cwd=REPO_ROOT,
                    )
                )
            wait_until(partial(healthy, label), 120, f"{label} not healthy on its own port")
        # Pushed one after the other on the shared port, until each worker has landed
        # a few (the kernel spreads the connections); each shows on exactly one worker.
        for push in range(100):
            if min(taken) >= 3:
                break
            rows = 1 + push % 4
            before = own_records_in()
            answer = httpx.post(
                shared + URL,
                content=batch([f"m{push}-{k}" for k in range(rows)]),
                headers={"Authorization": "Bearer tok-kv"},
                timeout=60,
            )
            assert answer.status_code == 200 and answer.json()["accepted"] == rows
            pushed += rows
            grown = [after - was for after, was in zip(own_records_in(), before, strict=True)]
            assert sorted(grown) == [0, rows], f"push {push} of {rows} rows showed as {grown}"
            taken[grown.index(rows)] += 1
        figures = own_records_in()
        again = [own_records_in() for _ in range(5)]
        shared_reads = [
            parse_metrics(httpx.get(f"{shared}/metrics", timeout=10).text).records_in
            for _ in range(10)
        ]
        own_ports = [ports.metrics_port("ingest", index) for index in (0, 1)]
        own_health = [httpx.get(f"http://127.0.0.1:{p}/healthz", timeout=10) for p in own_ports]
        shared_health = httpx.get(f"{shared}/healthz", timeout=10)
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
    assert min(taken) >= 3, f"the kernel gave one worker all of 100 pushes: {taken}"
    assert sum(figures) == pushed and all(figure > 0 for figure in figures)
    assert all(read == figures for read in again)  # each port: the same worker every time
    assert set(shared_reads) <= set(figures)  # one worker's figure, never the node's
    assert sum(figures) not in shared_reads
    for answer in own_health:  # what the shared port's /healthz says
        assert answer.status_code == 200
        assert answer.json().keys() == shared_health.json().keys()
        assert answer.json()["status"] == shared_health.json()["status"] == "ok"
    assert [process.returncode for process in processes] == [0, 0]
