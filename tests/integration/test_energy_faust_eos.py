"""Why energy-analytics does not use faust's exactly-once: the evidence, on this broker.

faust-streaming 0.15.3 (aiokafka 0.14) puts a record it produces in the
transaction of the partition number it is written *to*, and commits a
partition's transaction only with that partition's input offsets. A record
consumed from partition 1 and re-keyed to partition 0 of the repartition topic
waits in partition 0's transaction, which never commits while partition 0 gets
no input: read_committed readers never see it, although partition 1's offsets
are committed (so it is never processed again). If faust fixes this, this test
fails: then reconsider services/energy/stage.py's docstring.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from services.runtime.provisioning import admin_client
from testkit.kafka import read_all

pytestmark = pytest.mark.integration

PROBE = Path(__file__).with_name("faust_eos_probe.py")


def test_faust_exactly_once_strands_repartitioned_records(node, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    source, app_id = f"test.{run}.faust-source", f"test-{run}-faust"
    admin = admin_client(node)
    for future in admin.create_topics([NewTopic(source, 2, 1)]).values():
        future.result()
    producer = Producer({"bootstrap.servers": node.kafka.bootstrap})
    for i in range(10):
        producer.produce(source, key=f"k{i}", value=f"g{i}", partition=1)
    assert producer.flush(10) == 0

    worker = subprocess.Popen(
        [sys.executable, str(PROBE), node.kafka.bootstrap, source, app_id],
        cwd=tmp_path,  # faust keeps its data directory in the working directory
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        committed = None
        while time.monotonic() < deadline:
            time.sleep(2)
            consumer = Consumer({"bootstrap.servers": node.kafka.bootstrap, "group.id": app_id})
            [committed] = consumer.committed([TopicPartition(source, 1)], timeout=10)
            consumer.close()
            if committed.offset == 10:
                break
        assert committed is not None and committed.offset == 10, "faust never committed"
        time.sleep(8)  # several commit intervals (faust commits every 2.8 s)
        topics = admin.list_topics(timeout=10).topics
        [repartition] = [t for t in topics if t.endswith(f"{source}-byvalue-repartition")]
        visible = read_all(node, repartition, settle_s=1.0)
        written = read_all(node, repartition, isolation="read_uncommitted", settle_s=1.0)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
    assert len(written) == 10  # every record was re-keyed and written...
    stranded = {m.value() for m in written} - {m.value() for m in visible}
    # ...but those bound for partition 0 sit in a transaction that does not commit,
    # while their input offsets are committed: lost for every read_committed reader.
    assert stranded and all(m.partition() == 0 for m in written if m.value() in stranded)
    assert all(m.partition() == 1 for m in visible)
