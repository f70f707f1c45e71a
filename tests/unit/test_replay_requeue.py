"""Where `citeplus replay dead-letters` puts a later stage's raw letter back: its
bytes decide. A RawRecord (read from raw.v1, or one member of a raw.v2 batch
dead-lettered alone) goes on raw.v1, keyed by its entity; a whole RawBatch goes
back on raw.v2 at the partition it was read from (every member's raw.v1 key gives
that partition), never re-partitioned by its key."""

from __future__ import annotations

from services.node.replay import requeue_target
from services.runtime.batches import batching
from testkit.codecs import offline_contracts
from testkit.records import raw_record


def letter(key: bytes, partition: int | None) -> dict:
    return {"original_key": key, "source_partition": partition, "stage": "anonymise"}


def test_a_record_goes_back_on_raw_v1_and_a_batch_on_raw_v2_at_its_partition() -> None:
    contracts = offline_contracts("raw.v1", "raw.v2")
    v1, v2 = contracts.codec("raw.v1"), contracts.codec("raw.v2")
    record = v1.encode(raw_record())
    (batch,) = batching("RawRecord").implode([raw_record(), raw_record()])
    whole = v2.encode(batch)
    batch_id = v2.schema_id

    assert requeue_target(letter(b"c|s|e", 4), record, "test.x.raw.v2", batch_id) == (
        "test.x.raw.v1",
        b"c|s|e",
        record,
    )
    assert requeue_target(letter(b"c|s|3", 3), whole, "test.x.raw.v2", batch_id) == (
        "test.x.raw.v2",
        b"c|s|3",
        whole,
        3,
    )
    # A letter that lost its position: the batch key names the partition too.
    assert requeue_target(letter(b"c|s|5", None), whole, "raw.v2", batch_id)[3] == 5
    # An ingest configured with raw.v1 keeps sending records there.
    assert requeue_target(letter(b"c|s|e", 0), record, "raw.v1", None)[0] == "raw.v1"
    assert requeue_target(letter(b"c|s|e", 0), b"not wire format", "raw.v2", batch_id) == (
        "raw.v1",
        b"c|s|e",
        b"not wire format",
    )
