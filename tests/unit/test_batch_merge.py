"""Batch messages joined at a transaction's end carry exactly what their parts carried:
every member once, each entity's members in order, never two kinds (shared fields,
column signature, message key, headers) in one message, every joined message under
the size limit, through real Avro encoding."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.runtime.batch_merge import Piece, Produced, concat_batches, joined
from services.runtime.batches import Batching, batching
from services.runtime.stage import Emit
from testkit.avro_batches import batch_decoder, batch_encoder
from testkit.batch_records import observation, raw

TOPIC = "observations.v2"
BIG = 10**9


def codec(batch_name: str) -> tuple:
    return batch_encoder(batch_name), batch_decoder(batch_name)


OBSERVATIONS = batching("Observation")
RAW = batching("RawRecord")
CODECS = {"Observation": codec("ObservationBatch"), "RawRecord": codec("RawBatch")}


def entity(found: Batching, member: dict) -> tuple:
    """The v1 key's parts: what each entity's order is kept by."""
    if found.spec.member == "RawRecord":
        return (member["city"], member["source"], member["entity_id"])
    return (member["city"], member["entity_pseudonym"])


def parts_of(
    found: Batching, chunks: list[list[dict]], labels: list[tuple], inputs: int = 1
) -> list[Piece]:
    """Each chunk of records imploded into batches, each batch a ready message with one
    of ``labels`` (message key, headers), chunk ``i`` read from input partition
    ``i % inputs``."""
    encode, _ = CODECS[found.spec.member]
    out = []
    for index, chunk in enumerate(chunks):
        key, headers = labels[index % len(labels)]
        source = frozenset({("in", index % inputs)})
        for batch in found.implode(chunk):
            readings = sum(batch.get("row_count") or batch.get("values_counts") or [0])
            emit = Emit(TOPIC, key, batch, readings, 2, True, headers)
            out.append(Piece(Produced(emit, encode(batch)), source))
    return out


def members(found: Batching, parts: list[Produced]) -> list[tuple[tuple, dict]]:
    """(label, member) of every message, decoded from its bytes, in message order."""
    _, decode = CODECS[found.spec.member]
    return [
        ((p.emit.key, p.emit.headers), member)
        for p in parts
        for member in found.explode(decode(p.value))
    ]


def per_entity(found: Batching, labelled: list[tuple[tuple, dict]]) -> dict:
    out: dict = {}
    for label, member in labelled:
        out.setdefault(entity(found, member), []).append((label, member))
    return out


LABELS = st.lists(
    st.tuples(st.sampled_from([None, "k1"]), st.sampled_from([(), (("h", b"x"),)])),
    min_size=1,
    max_size=3,
)


def per_input(found: Batching, pieces: list[Piece], out: list[Produced]) -> list[list]:
    """Each input partition's members in the order ``out`` carries them (members are
    told apart by their repr: inputs draw distinct ones in these tests)."""
    source_of = {
        repr(member): next(iter(piece.inputs))
        for piece in pieces
        for _, member in members(found, [piece.produced])
    }
    order: dict = {}
    for _, member in members(found, out):
        order.setdefault(source_of[repr(member)], []).append(repr(member))
    return sorted(order.items())


def check_joined(
    found: Batching, chunks: list[list[dict]], labels: list, limit: int, inputs: int
) -> None:
    encode, _ = CODECS[found.spec.member]
    pieces = parts_of(found, chunks, labels, inputs)
    parts = [piece.produced for piece in pieces]
    out = joined(pieces, found, encode, limit)
    before, after = members(found, parts), members(found, out)
    assert per_entity(found, after) == per_entity(found, before)
    assert sorted(map(repr, after)) == sorted(map(repr, before))
    if len(set(map(repr, before))) == len(before):
        assert per_input(found, pieces, out) == per_input(found, pieces, parts)
    assert sum(p.emit.readings for p in out) == sum(p.emit.readings for p in parts)
    assert len(out) <= len(parts)
    for produced in out:
        assert produced.value == encode(produced.emit.value)
        assert produced.emit.partition == 2 and produced.emit.batched
        if len(produced.value) > limit:
            assert any(produced is part for part in parts)  # a part too large alone


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(observation(), min_size=1, max_size=5), max_size=8), LABELS, st.data())
def test_joined_observation_batches_carry_their_parts_members(chunks, labels, data) -> None:
    limit = data.draw(st.sampled_from([BIG, 400, 1]))
    check_joined(OBSERVATIONS, chunks, labels, limit, data.draw(st.integers(1, 3)))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(raw(), min_size=1, max_size=5), max_size=8), LABELS, st.data())
def test_joined_raw_batches_carry_their_parts_members(chunks, labels, data) -> None:
    limit = data.draw(st.sampled_from([BIG, 400, 1]))
    check_joined(RAW, chunks, labels, limit, data.draw(st.integers(1, 3)))


def one_kind(value: float, entity_name: str, lineage: str = "L1") -> dict:
    record = {
        "city": "lyon",
        "domain": "energy",
        "metric": "m",
        "unit": "kWh",
        "entity_pseudonym": entity_name,
        "entity_type": None,
        "zone": "z",
        "position": None,
        "start": 0,
        "step_seconds": 600,
        "times": [],
        "values": [value],
        "quality": [],
        "source": "s1",
        "dataset": "d",
        "lineage_id": lineage,
        "key_epoch": None,
        "sector": None,
        "carrier": None,
        "versions": [],
        "replaced": [],
    }
    return record


def values_of(out: list[Produced]) -> list[list[float]]:
    return [[m["values"][0] for m in OBSERVATIONS.explode(p.emit.value)] for p in out]


def test_the_pieces_of_one_kind_make_one_message() -> None:
    encode, _ = CODECS["Observation"]
    chunks = [[one_kind(float(i), f"e{i}")] for i in range(30)]
    out = joined(parts_of(OBSERVATIONS, chunks, [(None, ())]), OBSERVATIONS, encode, BIG)
    assert values_of(out) == [[float(i) for i in range(30)]]


def test_a_piece_never_overtakes_its_entitys_earlier_member_of_another_kind() -> None:
    """L1 a, L2 a, L1 a from three input partitions: the third may not join the first
    (it would pass the second, a member of its entity)."""
    encode, _ = CODECS["Observation"]
    chunks = [[one_kind(1.0, "a", "L1")], [one_kind(2.0, "a", "L2")], [one_kind(3.0, "a", "L1")]]
    out = joined(parts_of(OBSERVATIONS, chunks, [(None, ())], 3), OBSERVATIONS, encode, BIG)
    assert values_of(out) == [[1.0], [2.0], [3.0]]
    chunks[1] = [one_kind(2.0, "b", "L2")]  # another entity in between: the L1 pieces join
    out = joined(parts_of(OBSERVATIONS, chunks, [(None, ())], 3), OBSERVATIONS, encode, BIG)
    assert values_of(out) == [[1.0, 3.0], [2.0]]


def test_a_piece_never_overtakes_an_earlier_message_of_its_input_partition() -> None:
    """L1, L2, L1 of three entities, all read from one input partition: joining the L1
    pieces would change that partition's order (energy-analytics' watermark follows
    it), so nothing joins; the same pieces from two partitions may."""
    encode, _ = CODECS["Observation"]
    chunks = [[one_kind(1.0, "a", "L1")], [one_kind(2.0, "b", "L2")], [one_kind(3.0, "c", "L1")]]
    out = joined(parts_of(OBSERVATIONS, chunks, [(None, ())], 1), OBSERVATIONS, encode, BIG)
    assert values_of(out) == [[1.0], [2.0], [3.0]]
    out = joined(parts_of(OBSERVATIONS, chunks, [(None, ())], 2), OBSERVATIONS, encode, BIG)
    assert values_of(out) == [[1.0, 3.0], [2.0]]  # inputs 0, 1, 0: the L2 piece is input 1


def test_a_run_over_the_limit_is_cut_in_order_into_messages_under_it() -> None:
    encode, _ = CODECS["Observation"]
    chunks = [[one_kind(float(i), f"e{i}")] for i in range(8)]
    pieces = parts_of(OBSERVATIONS, chunks, [(None, ())])
    limit = sum(len(p.produced.value) for p in pieces[:4])  # four parts' own bytes
    out = joined(pieces, OBSERVATIONS, encode, limit)
    assert values_of(out) == [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]]
    assert all(len(p.value) <= limit for p in out)


def test_a_piece_whose_arrays_do_not_agree_joins_nothing() -> None:
    """Its reader refuses a malformed message whole: joined, its neighbours would go
    with it."""
    encode, _ = CODECS["Observation"]
    chunks = [[one_kind(float(i), f"e{i}")] for i in range(3)]
    pieces = parts_of(OBSERVATIONS, chunks, [(None, ())], 2)
    pieces[1].produced.emit.value["zone"] = [7]  # past the dictionary of its words
    out = joined(pieces, OBSERVATIONS, encode, BIG)
    assert [p.emit.value["values"] for p in out] == [[0.0, 2.0], [1.0]]


def test_a_dictionary_of_each_piece_reads_the_same_once_joined() -> None:
    """Pieces whose dictionaries hold the same words at other indexes, and nulls."""
    first, second = one_kind(1.0, "a"), one_kind(2.0, "b")
    first.update(zone="north", sector=None, carrier="gas")
    second.update(zone=None, sector="gas", carrier="north")
    batches = [OBSERVATIONS.implode([first])[0], OBSERVATIONS.implode([second])[0]]
    joined_batch = concat_batches(OBSERVATIONS, batches)
    assert OBSERVATIONS.explode(joined_batch) == [
        *OBSERVATIONS.explode(batches[0]),
        *OBSERVATIONS.explode(batches[1]),
    ]
    assert sorted(joined_batch["dictionary"]) == sorted(set(joined_batch["dictionary"]))
