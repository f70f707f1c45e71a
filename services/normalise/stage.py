"""The normalise stage: ``anonymised.v1``/``v2`` → ``observations.v2`` (or v1 when so
configured), exactly once. A batch of single readings on ``anonymised.v2`` takes the
columnar fast path (fastpath.py) when it covers it, else goes member by member.

Per-entity state (registers, published times) lives in a ChangelogStore on
``normalise.state.v1``, written in each batch's transaction and restored on
partition assignment, so a restarted or moved instance differences registers
and drops duplicates exactly where the previous one stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import Counter

from services.normalise import state_text
from services.normalise.dropped_attributes import DroppedAttributes
from services.normalise.fastpath import BatchNormaliser
from services.normalise.mapping import SourceMapping, compile_city
from services.normalise.observation_rows import ObservationRows
from services.normalise.rejects import AttributeReject, attribute_record
from services.normalise.transform import Normaliser
from services.normalise.vocabulary import Vocabulary, load_vocabulary
from services.runtime import dlq
from services.runtime.batches import entity_partition
from services.runtime.cities import CityConfig
from services.runtime.codec import Contracts
from services.runtime.config import NodeConfig
from services.runtime.metrics import ServiceMetrics
from services.runtime.source_headers import source_headers
from services.runtime.stage import BaseStage, Emit, InputMeta, StageStore, Tally
from services.runtime.state import ChangelogStore
from services.runtime.topics import TopicName, TopicRegistry, resolve_topics

log = logging.getLogger(__name__)

STORE = "series"
# Observations per ObservationBatch the fast path writes: ~70-150 bytes each, under
# the message limit (a larger one would make the runner refuse the fast path's
# outputs and the per-record path split them).
ROWS_PER_MESSAGE = 2000


@dataclass(frozen=True)
class NormaliseTopics:
    """The names of the stage's topics, as resolved by its builder (deploy/topics.yaml).

    ``input_batches``: a second input of AnonymisedBatch messages (anonymised.v2), read
    beside ``input`` while a node migrates. Resolved, the stage reads anonymised.v1 and
    v2 and writes observations.v2; a caller naming v1 topics alone keeps v1."""

    input: str = TopicName.ANONYMISED
    output: str = TopicName.OBSERVATIONS
    state: str = TopicName.NORMALISE_STATE
    dead_letters: str = dlq.DLQ_TOPIC  # the runner's: letters for one attribute go there
    input_batches: str | None = None

    @classmethod
    def resolve(cls, topics: TopicRegistry) -> NormaliseTopics:
        """The stage's topics under the registry's prefix (the v2 wiring)."""
        return cls(
            topics.name(TopicName.ANONYMISED),
            topics.name(TopicName.OBSERVATIONS_V2),
            topics.name(TopicName.NORMALISE_STATE),
            topics.name(TopicName.DEAD_LETTERS),
            input_batches=topics.name(TopicName.ANONYMISED_V2),
        )

    @property
    def inputs(self) -> list[str]:
        """What the stage reads: anonymised.v1, and anonymised.v2 when wired."""
        return [self.input] + ([self.input_batches] if self.input_batches else [])


def compile_mappings(
    cities: dict[str, CityConfig], vocabulary: Vocabulary
) -> dict[tuple[str, str], SourceMapping]:
    """Every source's mapping, validated (ConfigError naming file and key)."""
    out: dict[tuple[str, str], SourceMapping] = {}
    for city in cities.values():
        for source_id, mapping in compile_city(city, vocabulary).items():
            out[(city.code, source_id)] = mapping
    return out


class NormaliseStage(BaseStage):
    name = "normalise"
    # Partition n of anonymised.v1, anonymised.v2 and normalise.state.v1 on one worker:
    # an entity's state is one worker's, and its delta changelog has one writer.
    co_partitioned = True

    def __init__(
        self,
        node: NodeConfig,
        contracts: Contracts,
        cities: dict[str, CityConfig],
        *,
        topics: NormaliseTopics | None = None,
        vocabulary: Vocabulary | None = None,
        metrics: ServiceMetrics | None = None,
    ):
        self.node = node
        self.contracts = contracts
        self.topics = topics or NormaliseTopics()
        self.input_topics = self.topics.inputs
        self.vocabulary = vocabulary or load_vocabulary()
        mappings = compile_mappings(cities, self.vocabulary)
        unmapped = sorted(
            f"{city.code}/{source.id}"
            for city in cities.values()
            for source in city.sources
            if (city.code, source.id) not in mappings
        )
        if unmapped:
            log.warning(
                "sources without a mapping: their records will go to the dead letters",
                extra={"sources": unmapped},
            )
        self.normaliser = Normaliser(self.vocabulary, mappings)
        self.fast = BatchNormaliser(self.normaliser)
        self.store = ChangelogStore(STORE, self.topics.state, deltas=True, text_of=_state_text)
        registry = (metrics or ServiceMetrics(self.name)).registry
        self.dropped = Counter(
            "citeplus_normalise_dropped_readings",
            "Readings not published: duplicate, stale-register, too-late, time-invalid, ...",
            ["reason"],
            registry=registry,
        )
        self.dropped_attributes = DroppedAttributes(registry)
        self.drops = Tally(self.dropped)  # readings not published, by reason
        self.position_drops = Tally(
            Counter(
                "citeplus_normalise_positions_dropped",
                "Rows whose position was unreadable or out of range: published without one",
                ["reason"],
                registry=registry,
            )
        )
        self.columnar = _columnar_tally(registry)
        self.stores = (
            self.store,
            self.drops,
            self.columnar,
            self.position_drops,
            _AttributeDrops(self.dropped_attributes),
        )

    # -- transform ----------------------------------------------------------------------
    def transform(self, record: dict[str, Any], meta: InputMeta) -> Iterable[Emit]:
        outcome = self.normaliser.normalise(record, self.store.get)
        if outcome.dropped_attributes:
            self.dropped_attributes.note(
                record["city"], record["source"], outcome.dropped_attributes
            )
        partition = meta.partition
        for key, state in outcome.states.items():
            self._put_state(key, state, partition)
        emits: list[Emit] = []
        output = self.topics.output
        for observation in outcome.observations:
            key = f"{observation['city']}|{observation['entity_pseudonym']}"
            emits.append(Emit(output, key, observation, readings=len(observation["values"])))
        for reason, count in outcome.dropped.items():
            self.drops.add(reason, count)
        for reason, count in outcome.position_drops.items():
            self.position_drops.add(reason, count)
        for reject in outcome.rejected:
            emits.append(self._attribute_letter(record, meta, reject))
            self.drops.add(reject.reason, reject.readings)
        emits += [self._letter(record, meta, *letter) for letter in outcome.letters]
        return emits

    def process_batch(self, batch: dict[str, Any], meta: InputMeta) -> list[Emit] | None:
        """An AnonymisedBatch of single readings on whole columns (fastpath.py): the
        states per entity and metric, and ObservationBatch messages written as they
        are. None (the per-record path decides) for what the fast path does not cover,
        or when the output is a v1 topic (one message per observation anyway)."""
        output = self.topics.output
        if self.contracts.batching(output) is None:
            return None
        outcome = self.fast.normalise_batch(batch, self.store.get)
        if outcome is None:
            return None
        partition = meta.partition
        for key, state in outcome.states.items():
            self._put_state(key, state, partition)
        self.columnar.add("columnar", outcome.readings)
        for reason, count in outcome.dropped.items():
            self.drops.add(reason, count)
        partitions = self.contracts.codec(output).spec.partitions
        return observation_batches(outcome.rows, output, partitions)

    def _put_state(self, key: str, state: dict[str, Any], partition: int) -> None:
        """Stage an entity-metric state, its changelog text built from the text of the
        state it replaces (state_text.py: a sensor's window of values is rewritten with
        every reading; its text is json's, made of the previous one)."""
        text, memo = state_text.encode(state, self.store.memo(key))
        self.store.put(key, state, partition, text=text, memo=memo)

    def _attribute_letter(
        self, record: dict[str, Any], meta: InputMeta, reject: AttributeReject
    ) -> Emit:
        """The dead letter of one attribute set aside: its original is the record
        without the entity's other measured attributes (published already), so a
        replay once fixed publishes only this one."""
        original = self.contracts.codec(self.topics.input).encode(attribute_record(record, reject))
        message = (
            f"attribute {reject.attribute} set aside ({reject.readings} readings), the "
            f"entity's other attributes were published: {reject.message}. The original "
            "holds this attribute alone: once the mapping or the unit is fixed, produce "
            f"it again to {self.topics.input}"
        )
        return self._letter(record, meta, reject.reason, message, original, [reject.attribute])

    def _letter(
        self,
        record: dict[str, Any],
        meta: InputMeta,
        reason: str,
        message: str,
        original: bytes | None = None,
        field_names: list[str] | None = None,
    ) -> Emit:
        """A dead letter for part of a record (its other readings went on): it points to
        the record by topic, partition and offset, where it stays whole."""
        letter = dlq.dead_letter(
            stage=self.name,
            reason=reason,
            message=message,
            original_value=original,
            original_key=meta.key,
            source_topic=meta.topic,
            source_partition=meta.partition,
            source_offset=meta.offset,
            city=record["city"],
            source=record.get("source"),
        )
        if field_names is not None:
            letter["field_names"] = field_names
        key = dlq.dead_letter_key(self.name, record["city"])
        return Emit(self.topics.dead_letters, key, letter, readings=0)


def _columnar_tally(registry: Any) -> Tally:
    """Readings the columnar fast path normalised (the rest went record by record)."""
    counter = Counter(
        "citeplus_normalise_columnar_readings",
        "Readings normalised by the columnar fast path of batches of single readings",
        ["path"],
        registry=registry,
    )
    return Tally(counter, label="columnar")


def observation_batches(rows: ObservationRows, topic: str, partitions: int) -> list[Emit]:
    """The observations as ObservationBatch emits: each to its entities' partition
    (``city|entity_pseudonym``, as the per-record path keys them), in order, at most
    ROWS_PER_MESSAGE per message, its city and source named in its headers (a reader
    with nothing for that source passes over it undecoded)."""
    city = rows.shared["city"]
    headers = source_headers(city, rows.shared["source"])
    keys = (f"{city}|{pseudonym}" for pseudonym in rows.pseudonyms.tolist())
    places = np.fromiter((entity_partition(k, partitions) for k in keys), dtype=np.int64)
    emits = []
    for partition in dict.fromkeys(places.tolist()):
        chosen = np.flatnonzero(places == partition)
        for start in range(0, len(chosen), ROWS_PER_MESSAGE):
            part = chosen[start : start + ROWS_PER_MESSAGE]
            batch = rows.batch(part)
            emits.append(
                Emit(
                    topic,
                    None,
                    batch,
                    readings=len(part),
                    partition=partition,
                    batched=True,
                    headers=headers,
                )
            )
    return emits


class _AttributeDrops(StageStore):
    """Dropped attributes as a declared store: a record's count joins the batch when
    the next record begins (or the batch commits), and is forgotten if it failed."""

    def __init__(self, dropped: DroppedAttributes):
        self.dropped = dropped

    def begin_record(self) -> None:
        self.dropped.end_record()

    def rollback_record(self) -> None:
        self.dropped.end_record(failed=True)

    def commit(self) -> None:
        self.dropped.commit()

    def abort(self) -> None:
        self.dropped.abort()


def build_stage(
    node: NodeConfig,
    contracts: Contracts,
    cities: dict[str, CityConfig],
    metrics: ServiceMetrics,
) -> NormaliseStage:
    """The factory ``run_stage`` calls (declared topics, the repository's vocabulary)."""
    topics = NormaliseTopics.resolve(resolve_topics())
    return NormaliseStage(node, contracts, cities, topics=topics, metrics=metrics)


def _state_text(state: dict[str, Any], memo: Any) -> str:
    """A kept state's changelog text when a delta carries it forward, from its memo
    (json's whole text of a 288-value state was a fifth of normalise's time)."""
    return state_text.encode(state, memo)[0]
