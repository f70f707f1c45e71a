"""What joining a transaction's batch messages costs: the parts' bytes are known (each
was encoded once already), so a joined message too large should not be concatenated
and encoded whole, then in halves, then in quarters... Counted in bytes encoded, not
timed: the halving encodes every part once per level of its recursion."""

from __future__ import annotations

import io
from typing import Any

import fastavro

from services.runtime.batch_merge import Piece, Produced, joined
from services.runtime.batches import batching
from services.runtime.codec import parse_plain
from services.runtime.schemas import load_schemas
from services.runtime.stage import Emit

OBSERVATIONS = batching("Observation")
_SCHEMA = parse_plain(load_schemas()["ObservationBatch"].expanded)


class CountingEncoder:
    """The topic's encoder, counting the bytes it was asked to write."""

    def __init__(self) -> None:
        self.bytes = 0

    def __call__(self, batch: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, _SCHEMA, batch)
        self.bytes += len(out.getvalue())
        return out.getvalue()


def _reading(n: int) -> dict[str, Any]:
    return {
        "city": "lyon",
        "domain": "air",
        "metric": "no2",
        "unit": "ug/m3",
        "entity_pseudonym": f"{n:064x}",
        "entity_type": "AirQualityObserved",
        "zone": "z1",
        "position": None,
        "start": 1_763_766_000_000_000 + n,
        "step_seconds": 0,
        "times": [],
        "values": [float(n)],
        "quality": [],
        "source": "s1",
        "dataset": "d",
        "lineage_id": "L1",
        "key_epoch": "2025-11",
        "sector": None,
        "carrier": None,
        "versions": [],
        "replaced": [],
    }


def _parts(count: int, members: int) -> tuple[list[Piece], CountingEncoder]:
    """``count`` ready batches of one kind and lane, ``members`` distinct entities each,
    from input partitions 0 to 5 in turn (as anonymise reads raw.v2)."""
    encode = CountingEncoder()
    parts = []
    for index in range(count):
        records = [_reading(index * members + k) for k in range(members)]
        (batch,) = OBSERVATIONS.implode(records)
        emit = Emit("observations.v2", None, batch, members, 0, True)
        source = frozenset({("raw.v2", index % 6)})
        parts.append(Piece(Produced(emit, encode(batch)), source))
    encode.bytes = 0
    return parts, encode


def test_parts_over_half_the_limit_are_not_encoded_again_for_nothing() -> None:
    """16 parts of about 0.6 of the limit: no two fit in one message (their own sizes
    say so), every part leaves as it came, yet each is concatenated and encoded once
    per level of the halving (4 levels: four times the bytes, all thrown away). At
    normalise's 2,000 observations a message (~200-300 KB against 512 KB) this is the
    usual case."""
    parts, encode = _parts(16, 60)
    limit = len(parts[0].produced.value) * 10 // 6
    out = joined(parts, OBSERVATIONS, encode, limit)
    assert [p.value for p in out] == [p.produced.value for p in parts]  # nothing could join
    given = sum(len(p.produced.value) for p in parts)
    assert encode.bytes <= given, f"encoded {encode.bytes:,} bytes to send {given:,} as they were"


def test_many_small_parts_are_encoded_about_once() -> None:
    """1,024 small parts making about 8 full messages: the halving encodes the whole
    run, its halves, its quarters and its eighths (four times what it sends)."""
    parts, encode = _parts(1024, 4)
    given = sum(len(p.produced.value) for p in parts)
    limit = given // 7
    out = joined(parts, OBSERVATIONS, encode, limit)
    sent = sum(len(p.value) for p in out)
    assert all(len(p.value) <= limit for p in out)
    assert encode.bytes <= 2 * sent, f"encoded {encode.bytes:,} bytes to send {sent:,}"
