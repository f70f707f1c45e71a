"""Re-publishing for partner cities: open datasets on ``public.observations.v1``,
shared ones on one topic per named partner, energy aggregates (already past
statistical secrecy) on ``public.energy.aggregates.v1``. Internal datasets
never leave. Exactly once, like every stage."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from services.publish.sharing import SharingPolicy
from services.runtime.processor import BaseStage, Emit, InputMeta
from services.runtime.topics import partner_topic

INTERNAL = SharingPolicy()


@dataclass(frozen=True)
class PublicTopics:
    observations_in: str = "observations.v1"
    aggregates_in: str = "energy.aggregates.v1"
    public_observations: str = "public.observations.v1"
    shared_observations: str = "public.shared.{partner}.observations.v1"
    public_aggregates: str = "public.energy.aggregates.v1"


class Republisher(BaseStage):
    name = "publish-public"

    def __init__(self, policies: dict[tuple[str, str], SharingPolicy], topics: PublicTopics):
        self.policies = policies
        self.topics = topics
        self.input_topics = [topics.observations_in, topics.aggregates_in]

    def process(self, record: dict[str, Any], meta: InputMeta) -> Iterable[Emit]:
        if meta.topic == self.topics.aggregates_in:
            yield Emit(self.topics.public_aggregates, meta.key, record)
            return
        policy = self.policies.get((record["city"], record["source"]), INTERNAL)
        readings = len(record["values"])
        if policy.level == "open":
            yield Emit(self.topics.public_observations, meta.key, record, readings=readings)
        elif policy.level == "shared":
            for partner in policy.partners:
                topic = partner_topic(self.topics.shared_observations, partner)
                yield Emit(topic, meta.key, record, readings=readings)
