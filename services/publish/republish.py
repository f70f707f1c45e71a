"""Re-publishing for partner cities: open datasets on ``public.observations.v1``,
shared ones on one topic per named partner. Released energy aggregates
(``energy.aggregates.released.v2``: each window once, when its day closed, past
statistical secrecy) follow the node's ``energy_aggregates`` sharing
(deploy/federation.yaml) the same way: open on ``public.energy.aggregates.v2``,
shared on one topic per partner, internal not at all. The provisional upserts
(``energy.aggregates.v1``) are never read here: every version of them could be
subtracted from another, so ``public.energy.aggregates.v1`` is no longer written.
Internal datasets never leave, and neither does a personal source on the public
topic, even when its city marked it open (services/policy/access.py: entity-level
data of a personal source goes only to the partners a city names). Exactly once,
like every stage."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from services.policy.access import PUBLIC_AUDIENCE, may_read_entities, source_is_personal
from services.policy.sharing import SharingPolicy, sharing_policies
from services.runtime.cities import CityConfig
from services.runtime.processor import BaseStage, Emit, InputMeta
from services.runtime.source_headers import Headers, source_of
from services.runtime.topics import TopicName, TopicRegistry, partner_topic

INTERNAL = SharingPolicy()
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublicTopics:
    """The names of the stage's topics, as resolved by its builder (deploy/topics.yaml);
    the shared ones are ``{partner}`` templates."""

    observations_in: str = TopicName.OBSERVATIONS
    aggregates_in: str = TopicName.ENERGY_RELEASED
    public_observations: str = TopicName.PUBLIC_OBSERVATIONS
    shared_observations: str = TopicName.SHARED_OBSERVATIONS
    public_aggregates: str = TopicName.PUBLIC_AGGREGATES
    shared_aggregates: str = TopicName.SHARED_AGGREGATES
    # observations.v2, read beside observations_in when wired; the public topics stay
    # v1, one entity per message (partners' contract)
    observation_batches: str | None = None

    @classmethod
    def resolve(cls, topics: TopicRegistry) -> PublicTopics:
        """The stage's topics under the registry's prefix (observations v1 and v2 in)."""
        return cls(
            *(
                topics.name(n)
                for n in (
                    TopicName.OBSERVATIONS,
                    TopicName.ENERGY_RELEASED,
                    TopicName.PUBLIC_OBSERVATIONS,
                    TopicName.SHARED_OBSERVATIONS,
                    TopicName.PUBLIC_AGGREGATES,
                    TopicName.SHARED_AGGREGATES,
                )
            ),
            observation_batches=topics.name(TopicName.OBSERVATIONS_V2),
        )


class Republisher(BaseStage):
    name = "publish-public"

    def __init__(
        self,
        policies: dict[tuple[str, str], SharingPolicy],
        topics: PublicTopics,
        aggregates: SharingPolicy = INTERNAL,
        *,
        personal: frozenset[tuple[str, str]] = frozenset(),
    ):
        """``personal``: the (city, source) pairs whose records are personal data."""
        self.policies = policies
        self.personal = personal
        self.topics = topics
        self.aggregates = aggregates
        self.input_topics = [topics.observations_in]
        if topics.observation_batches:
            self.input_topics.append(topics.observation_batches)
        if aggregates.level != "internal":  # nothing to read when nothing may leave
            self.input_topics.append(topics.aggregates_in)

    def process(self, record: dict[str, Any], meta: InputMeta) -> Iterable[Emit]:
        if meta.topic == self.topics.aggregates_in:
            for topic in self._destinations(
                self.aggregates, self.topics.public_aggregates, self.topics.shared_aggregates
            ):
                yield Emit(topic, meta.key, record)
            return
        readings = len(record["values"])
        for topic in self._observation_destinations(record["city"], record["source"]):
            yield Emit(topic, meta.key, record, readings=readings)

    def passes_over(self, topic: str, headers: Headers | None) -> bool:
        """An observations.v2 message whose headers name a source that goes nowhere:
        nothing to send, known without decoding it (the sink decodes it already). A
        message without them is decoded and decided by its own fields; headers never
        send anything anywhere (a header naming an open source is only decoded)."""
        if topic != self.topics.observation_batches:
            return False
        named = source_of(headers)
        return named is not None and not self._observation_destinations(*named)

    def process_batch(self, batch: dict[str, Any], meta: InputMeta) -> list[Emit] | None:
        """An observations.v2 batch whose source goes nowhere (internal, or personal on
        the public topic): nothing to send, decided once for the batch, so none of its
        members is exploded. A batch that does leave goes member by member (None): the
        partners' topics stay v1, one entity per message."""
        if meta.topic != self.topics.observation_batches:
            return None
        if self._observation_destinations(batch["city"], batch["source"]):
            return None
        return []

    def _observation_destinations(self, city: str, source: str) -> list[str]:
        """The topics a source's observations go to (a city and source are a batch's
        own fields: every member of a batch shares them)."""
        policy = self.policies.get((city, source), INTERNAL)
        if policy.level == "open" and not may_read_entities(
            policy, PUBLIC_AUDIENCE, home="", personal=(city, source) in self.personal
        ):
            return []
        return self._destinations(
            policy, self.topics.public_observations, self.topics.shared_observations
        )

    @staticmethod
    def _destinations(policy: SharingPolicy, public: str, shared: str) -> list[str]:
        """The topics a record of this policy goes to (none for internal)."""
        if policy.level == "open":
            return [public]
        if policy.level == "shared":
            return [partner_topic(shared, partner) for partner in policy.partners]
        return []


def personal_sources(cities: dict[str, CityConfig]) -> frozenset[tuple[str, str]]:
    """(city, source) of every personal source; one marked open is named in the log,
    since its records will not reach the public topic (docs/federation.md)."""
    found = frozenset(
        (city.code, source.id)
        for city in cities.values()
        for source in city.sources
        if source_is_personal(source)
    )
    policies = sharing_policies(cities)
    for key in sorted(found):
        if policies[key].level == "open":
            log.warning(
                "personal source marked open: its readings stay off the public topic; "
                "share it with named partners (level: shared) or open its aggregates",
                extra={"city": key[0], "source": key[1]},
            )
    return found
