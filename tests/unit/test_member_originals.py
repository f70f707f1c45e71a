"""A batch member's dead letter carries the member as it arrived, in its v1 form,
made only when a letter asks for it (services/runtime/batch_messages.py): never from
the decoded member, which the stage may have changed before it refused it."""

from __future__ import annotations

import dataclasses
from typing import Any

from services.runtime.batch_messages import MemberPlace, Originals, member_input, member_origin
from services.runtime.batches import batching
from services.runtime.codec import TopicCodec
from services.runtime.schemas import load_schemas
from services.runtime.stage import InputMeta
from services.runtime.topics import load_topics
from testkit.records import observation


class _Contracts:
    """The contracts of two declared topics, bound without a registry (ids 1 and 2)."""

    def __init__(self) -> None:
        topics, schemas = load_topics(), load_schemas()
        self.codecs = {
            name: TopicCodec(topics[name], schemas[topics[name].value], i, None)  # type: ignore[arg-type]
            for i, name in enumerate(("observations.v1", "observations.v2"), start=1)
        }
        self.decodes = 0

    def codec(self, topic: str) -> TopicCodec:
        if topic == "observations.v2":
            self.decodes += 1
        return self.codecs[topic]


def _batch_bytes(contracts: _Contracts, members: list[dict[str, Any]]) -> bytes:
    return contracts.codecs["observations.v2"].encode(batching("Observation").batch_of(members))


def _origin(originals: Originals, index: int, count: int):
    meta = InputMeta("observations.v2", 3, 17, b"lyon", 0)
    where = MemberPlace(meta, b"lyon|m", index, count, "observations.v1")
    return member_origin(originals, where)


def test_a_member_letter_holds_the_member_as_it_arrived_not_as_the_stage_left_it() -> None:
    contracts = _Contracts()
    members = [observation(points=3, entity=f"m{i}") for i in range(3)]
    found = batching("Observation")
    message = _batch_bytes(contracts, members)
    originals = Originals(contracts, "observations.v2", message, found)  # type: ignore[arg-type]
    given = found.explode(contracts.codecs["observations.v2"].decode(message))
    given[1]["values"][0] = -1.0  # the stage changed the member it was handed
    given[1]["entity_pseudonym"] = "changed"
    origin = _origin(originals, 1, 3)
    v1 = contracts.codecs["observations.v1"].decode(origin.value)  # type: ignore[arg-type]
    assert v1["entity_pseudonym"] == "m1"
    assert v1["values"] == members[1]["values"]
    assert origin.topic == "observations.v1" and origin.partition is None
    assert "member 2 of 3" in origin.position


def test_members_are_encoded_only_for_a_letter_and_the_message_decoded_once() -> None:
    contracts = _Contracts()
    members = [observation(points=2, entity=f"m{i}") for i in range(4)]
    message = _batch_bytes(contracts, members)
    originals = Originals(contracts, "observations.v2", message, batching("Observation"))  # type: ignore[arg-type]
    origins = [_origin(originals, i, 4) for i in range(4)]
    assert contracts.decodes == 0  # no letter yet: nothing decoded nor encoded
    letters = [contracts.codecs["observations.v1"].decode(o.value) for o in origins[2:]]  # type: ignore[arg-type]
    assert [v["entity_pseudonym"] for v in letters] == ["m2", "m3"]
    assert contracts.decodes == 1


def test_a_member_input_is_its_message_place_with_its_own_key_and_the_message_key() -> None:
    """Built field by field for speed: it must equal dataclasses.replace, and a field
    InputMeta gains must be carried there too (this test then fails until it is)."""
    meta = InputMeta("observations.v2", 3, 17, b"message-key", 1_700_000_000_000)
    expected = dataclasses.replace(meta, key=b"lyon|m1", batch_key=b"message-key")
    assert member_input(meta, b"lyon|m1") == expected
    names = [f.name for f in dataclasses.fields(InputMeta)]
    assert names == ["topic", "partition", "offset", "key", "timestamp_ms", "batch_key"]
