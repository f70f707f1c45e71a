"""Where publish re-sends each record for partners, by sharing level (no broker:
the stage's ``process`` is a pure function of the record and the policies)."""

from __future__ import annotations

import pytest

from services.policy.sharing import SharingPolicy
from services.publish.republish import PublicTopics, Republisher
from services.runtime.processor import InputMeta
from services.runtime.source_headers import CITY, SOURCE, source_headers

OPEN = SharingPolicy("open", (), "ODbL-1.0")
TOPICS = PublicTopics()
POLICIES = {
    ("lyon", "air"): OPEN,
    ("lyon", "meters"): SharingPolicy("shared", ("paris", "nice"), None),
    ("lyon", "water"): SharingPolicy(),
}


def destinations(stage: Republisher, topic: str, record: dict) -> list[str]:
    return [e.topic for e in stage.process(record, InputMeta(topic, 0, 0, b"k", 0))]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("air", ["public.observations.v1"]),
        ("meters", ["public.shared.paris.observations.v1", "public.shared.nice.observations.v1"]),
        ("water", []),
        ("undeclared", []),  # deny by default
    ],
)
def test_observations_follow_their_source_sharing(source: str, expected: list[str]) -> None:
    record = {"city": "lyon", "source": source, "values": [1.0, 2.0]}
    assert destinations(Republisher(POLICIES, TOPICS), TOPICS.observations_in, record) == expected


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (OPEN, ["public.energy.aggregates.v2"]),
        (
            SharingPolicy("shared", ("enedis",), None),
            ["public.shared.enedis.energy.aggregates.v2"],
        ),
    ],
)
def test_energy_aggregates_follow_the_node_federation_sharing(policy, expected) -> None:
    stage = Republisher(POLICIES, TOPICS, policy)
    assert TOPICS.aggregates_in in stage.input_topics
    assert destinations(stage, TOPICS.aggregates_in, {"city": "lyon"}) == expected


def test_only_released_aggregates_leave_never_the_provisional_upserts() -> None:
    """public.energy.aggregates.v1 is no longer written: every upsert of a window
    could be subtracted from the next (issue 13). Only the release is read."""
    stage = Republisher(POLICIES, TOPICS, OPEN)
    assert TOPICS.aggregates_in == "energy.aggregates.released.v2"
    assert "energy.aggregates.v1" not in stage.input_topics
    outputs = {TOPICS.public_aggregates, TOPICS.shared_aggregates}
    assert all(topic.endswith(".v2") for topic in outputs)


def test_internal_energy_aggregates_are_not_even_read() -> None:
    stage = Republisher(POLICIES, TOPICS, SharingPolicy())
    assert stage.input_topics == [TOPICS.observations_in]


def test_a_personal_source_marked_open_never_reaches_the_public_topic() -> None:
    """The attacker is anyone reading public.observations.v1: a city that marks a
    personal source (meters of homes) open must not hand them its pseudonymised load
    curves; partners it names on a shared dataset still get theirs."""
    policies = {
        ("lyon", "meters"): OPEN,  # a mistake in a city file
        ("lyon", "shared-meters"): SharingPolicy("shared", ("paris",), None),
    }
    personal = frozenset({("lyon", "meters"), ("lyon", "shared-meters")})
    stage = Republisher(policies, TOPICS, personal=personal)
    for source, expected in (
        ("meters", []),
        ("shared-meters", ["public.shared.paris.observations.v1"]),
    ):
        record = {"city": "lyon", "source": source, "values": [1.0]}
        assert destinations(stage, TOPICS.observations_in, record) == expected


@pytest.mark.parametrize("source", ["air", "meters", "water", "undeclared", "personal-open"])
def test_a_batch_goes_nowhere_at_once_exactly_when_none_of_its_members_would_leave(
    source: str,
) -> None:
    """The batch fast path decides for the whole observations.v2 message: it may say
    "nothing to send" only when the per-member path sends nothing for any member
    (otherwise a shared or open reading would be lost); a batch that leaves goes
    member by member (None), the partners' topics staying one entity per message."""
    topics = PublicTopics(observation_batches="observations.v2")
    policies = {**POLICIES, ("lyon", "personal-open"): OPEN}
    stage = Republisher(policies, topics, personal=frozenset({("lyon", "personal-open")}))
    batch = {"city": "lyon", "source": source}
    members = [{**batch, "values": [float(i)]} for i in range(3)]
    meta = InputMeta("observations.v2", 0, 0, None, 0)
    sent = [t for m in members for t in destinations(stage, topics.observation_batches, m)]
    at_once = stage.process_batch(batch, meta)
    assert (at_once == []) == (sent == [])
    assert at_once in ([], None)


def test_only_the_observation_batches_take_the_batch_fast_path() -> None:
    topics = PublicTopics(observation_batches="observations.v2")
    stage = Republisher(POLICIES, topics)
    batch = {"city": "lyon", "source": "water"}
    assert stage.process_batch(batch, InputMeta("observations.v2", 0, 0, None, 0)) == []
    assert stage.process_batch(batch, InputMeta("other.v2", 0, 0, None, 0)) is None


@pytest.mark.parametrize("source", ["air", "meters", "water", "undeclared", "personal-open"])
def test_a_message_is_passed_over_undecoded_exactly_when_its_source_goes_nowhere(
    source: str,
) -> None:
    """The attacker reads the partners' topics: passing over a message from its headers
    must never lose an open or shared reading. The republisher passes over exactly the
    messages whose named source sends nothing for any member."""
    topics = PublicTopics(observation_batches="observations.v2")
    policies = {**POLICIES, ("lyon", "personal-open"): OPEN}
    stage = Republisher(policies, topics, personal=frozenset({("lyon", "personal-open")}))
    member = {"city": "lyon", "source": source, "values": [1.0]}
    sent = destinations(stage, topics.observation_batches, member)
    headers = source_headers("lyon", source)
    assert stage.passes_over("observations.v2", headers) == (sent == [])


def test_without_readable_headers_a_message_is_decoded() -> None:
    """No headers, one of the two, either twice, bytes that are not UTF-8, or another
    topic: the runner decodes the message and decides by its own fields."""
    topics = PublicTopics(observation_batches="observations.v2")
    stage = Republisher(POLICIES, topics)
    internal = source_headers("lyon", "water")
    assert stage.passes_over("observations.v2", internal)
    for headers in (
        None,
        [],
        internal[:1],
        [*internal, (SOURCE, b"air")],
        [(CITY, b"lyon"), (SOURCE, b"\xff")],
        [(CITY, b"lyon"), (SOURCE, None)],
    ):
        assert not stage.passes_over("observations.v2", headers)
    assert not stage.passes_over("other.v2", internal)
    assert not stage.passes_over(TOPICS.observations_in, internal)
