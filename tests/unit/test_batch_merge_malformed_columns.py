"""A piece whose columns do not agree with its rows must join nothing: joined, its
reader refuses (or misreads) its neighbours with it. Batching.check, which decides
what may join, reads the member arrays and counts but not the columns, which
explode reads: a column with more values than rows, or a ``missing`` position past
its rows, passes it."""

from __future__ import annotations

from typing import Any

from services.runtime.batches import batching
from services.runtime.outbox import Outbox
from services.runtime.stage import Emit
from testkit.avro_batches import batch_encoder

TOPIC = "anonymised.v2"
FOUND = batching("AnonymisedRecord")
encode = batch_encoder("AnonymisedBatch")


def _member(pseudonym: str, value: float) -> dict[str, Any]:
    column = {
        "name": "v",
        "kind": "double",
        "strings": [],
        "doubles": [value],
        "longs": [],
        "booleans": [],
        "missing": [],
    }
    return {
        "city": "lyon",
        "source": "s1",
        "dataset": "d",
        "format": "csv",
        "entity_pseudonym": pseudonym,
        "entity_type": None,
        "key_epoch": "2025-11",
        "policy_version": "1",
        "lineage_id": "L1",
        "received_at": 5,
        "row_count": 1,
        "event_times": [],
        "columns": [column],
        "attributes": {},
    }


def _drained(batches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``batches``, ready batch messages of one input partition and lane, as the
    runner produces them at the transaction's end."""
    outbox = Outbox()
    outbox.reading(("raw.v2", 0))
    for batch in batches:
        emit = Emit(TOPIC, None, batch, readings=1, partition=0, batched=True)
        outbox.add_batch(emit, encode(batch))
    return [p.emit.value for p in outbox.drain(lambda _t: FOUND, lambda _t: encode)]


def _readable(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The members of every message its reader can explode (the others are refused
    whole: dead-lettered as one message)."""
    out: list[dict[str, Any]] = []
    for message in messages:
        FOUND.check(message)  # what joined: every message passes the reader's check
        try:
            out += FOUND.explode(message)
        except ValueError:
            continue
    return out


def test_a_piece_with_more_column_values_than_rows_does_not_take_its_neighbour_down() -> None:
    (bad,) = FOUND.implode([_member("a", 1.0)])
    bad["columns"][0]["doubles"] = [1.0, 2.0]  # two values for one row
    (good,) = FOUND.implode([_member("b", 3.0)])
    FOUND.check(bad)  # it passes the check that decides what may join
    assert _readable([bad, good]) == [_member("b", 3.0)]  # as written: b is read
    assert _readable(_drained([bad, good])) == [_member("b", 3.0)]


def test_a_missing_position_past_a_piece_s_rows_does_not_land_on_its_neighbour() -> None:
    (bad,) = FOUND.implode([_member("a", 1.0)])
    bad["columns"][0]["missing"] = [1]  # its only row is 0
    (good,) = FOUND.implode([_member("b", 3.0)])
    as_written = _readable([bad, good])
    assert as_written[1] == _member("b", 3.0)  # alone, the stray position touches nothing
    assert _readable(_drained([bad, good]))[1] == _member("b", 3.0)
