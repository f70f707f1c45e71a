"""One meter's energy Observation as normalise writes it, for the energy tests
(unit and broker alike): only what a test varies is a parameter."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from services.energy.regrouped import observation_batching
from services.energy.stage import EnergyStage, EnergyTopics
from services.runtime.batch_messages import member_input
from services.runtime.batches import batching
from services.runtime.config import NodeConfig
from services.runtime.errors import RejectedInput
from services.runtime.outbox import member_key
from services.runtime.processor import InputMeta
from services.runtime.stage import Emit

TOPICS = EnergyTopics()
HOUR_US = 3600 * 1_000_000


def energy_observation(
    meter: str,
    zone: str,
    start: int,
    values: list[float],
    *,
    step_seconds: int = 600,
    sector: str = "residential",
) -> dict[str, Any]:
    """Interval energy (kWh) of ``meter`` from ``start`` (UTC µs), one value per step."""
    return {
        "city": "lyon",
        "domain": "energy",
        "metric": "active_energy_import",
        "unit": "kWh",
        "entity_pseudonym": meter,
        "entity_type": "ElectricityMeter",
        "zone": zone,
        "position": None,
        "start": start,
        "step_seconds": step_seconds,
        "times": [],
        "values": values,
        "quality": [],
        "source": "enedis-courbes-charge",
        "dataset": "courbes-de-charge-10min",
        "lineage_id": "test",
        "key_epoch": "2025-11",
        "sector": sector,
        "carrier": "electricity",
    }


def iso(t_us: int) -> str:
    """A window start as the aggregate keys write it."""
    return dt.datetime.fromtimestamp(t_us / 1e6, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the stage, fed record by record, without a broker ----------------------------------


def regrouped_members(emit: Emit, meta: InputMeta) -> Iterator[tuple[dict[str, Any], InputMeta]]:
    """What the runner hands the stage for one regrouped message (``meta``: where it
    is read, keyed by the message): each member of the ObservationBatch, with its own
    key and the message's (``batch_key``), as services/runtime/batch_messages.py does."""
    if not emit.batched:
        yield emit.value, meta
        return
    for member in observation_batching().explode(emit.value):
        yield member, member_input(meta, member_key("Observation", member).encode())


def deliver(stage: EnergyStage, emit: Emit, meta: InputMeta) -> list[Emit]:
    """Every member of a regrouped message through ``stage.process`` (see
    :func:`regrouped_members`), their outputs in order."""
    return [out for m, where in regrouped_members(emit, meta) for out in stage.process(m, where)]


class FakeCodec:
    def encode(self, record: dict[str, Any]) -> bytes:
        return b"\x00\x00\x00\x00\x01"


class FakeContracts:
    def codec(self, topic: str) -> FakeCodec:
        return FakeCodec()


class EnergyHarness:
    """Feeds records to the stage as one batch per call, like the StageRunner."""

    def __init__(
        self,
        *,
        now_us: int,
        topics: EnergyTopics = TOPICS,
        regrouped_fast: bool = True,
        **kwargs: Any,
    ):
        self.now_us = now_us  # the records' Kafka timestamp (readings after it are refused)
        # False: every regrouped member through process, as a runner whose stage had
        # no fast path for regrouped messages (what the fast path must equal)
        self.regrouped_fast = regrouped_fast
        kwargs.setdefault("lateness_us", 48 * HOUR_US)
        kwargs.setdefault("partitions", 1)
        kwargs.setdefault("clock", lambda: 0)
        self.topics = topics
        self.stage = EnergyStage(topics, node=NodeConfig(), contracts=FakeContracts(), **kwargs)
        self.offset = 0
        self.latest: dict[str, dict[str, Any]] = {}
        self.released: dict[str, dict[str, Any]] = {}
        self.dead: list[str] = []
        self.fast_paths = 0  # batch messages the stage's fast path took whole
        self.fast_regrouped = 0  # regrouped messages aggregated whole

    def batch(self, *records: dict[str, Any]) -> list[dict[str, Any]]:
        """One transaction of v1 observations (one record per message)."""
        return self.messages(*records)

    def messages(self, *messages: dict[str, Any] | list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One transaction of messages: a dict is a v1 observation, a list the members
        of one ObservationBatch (observations.v2), handled as the StageRunner does:
        the stage's fast path, else member by member with a savepoint each."""
        regrouped = []
        for message in messages:
            if isinstance(message, list):
                regrouped += self._batch_message(message)
            else:
                regrouped += self._record(message, self._meta(self.topics.observations))
        emitted = []
        for emit in regrouped:
            message = self._meta(self.topics.regrouped, emit.key.encode())
            fast = (
                self._whole(emit.value, message) if emit.batched and self.regrouped_fast else None
            )
            if fast is not None:
                self.fast_regrouped += 1
            if fast is not None:
                emitted += fast
                continue
            for member, meta in regrouped_members(emit, message):
                try:
                    emitted += list(self.stage.process(member, meta))
                except RejectedInput as exc:
                    self.stage.on_record_failed()
                    self.dead.append(exc.reason)
        emitted += list(self.stage.end_batch())
        self.stage.on_commit()
        return self._collect(emitted)

    def _whole(self, batch: dict[str, Any], meta: InputMeta) -> list[Emit] | None:
        """A batch message through the stage's fast path under one savepoint, as the
        runner tries it first (None: its writes undone, the members go one by one)."""
        for store in self.stage.stores:
            store.begin_record()
        try:
            fast = self.stage.process_batch(batch, meta)
        except Exception:
            fast = None
        if fast is None:
            self.stage.on_record_failed()
        return fast

    def _record(self, record: dict[str, Any], meta: InputMeta) -> list[Any]:
        try:
            return list(self.stage.process(record, meta))
        except RejectedInput as exc:
            self.stage.on_record_failed()
            self.dead.append(exc.reason)
            return []

    def _batch_message(self, members: list[dict[str, Any]]) -> list[Any]:
        (batch,) = batching("Observation").implode(members)
        meta = self._meta(self.topics.observation_batches or "observations.v2")
        fast = self._whole(batch, meta)
        if fast is not None:
            self.fast_paths += 1
            return fast
        return [
            out for m in batching("Observation").explode(batch) for out in self._record(m, meta)
        ]

    def tick(self) -> list[dict[str, Any]]:
        emitted = list(self.stage.on_tick())
        self.stage.on_commit()
        self._collect(emitted)
        return [e.value for e in emitted if e.topic == TOPICS.released]

    def _collect(self, emitted: list[Any]) -> list[dict[str, Any]]:
        out = []
        for emit in emitted:
            if emit.topic == TOPICS.released:
                assert emit.key not in self.released, "a window was released twice"
                self.released[emit.key] = emit.value
            if emit.topic == TOPICS.aggregates:
                assert emit.value["version"] > self.latest.get(emit.key, {}).get("version", 0)
                self.latest[emit.key] = emit.value
                out.append(emit.value)
            elif emit.topic == TOPICS.dead_letters:
                self.dead.append(emit.value["reason"])
        return out

    def _meta(self, topic: str, key: bytes = b"lyon|m") -> InputMeta:
        self.offset += 1
        return InputMeta(topic, 0, self.offset, key, self.now_us // 1000)

    def get(self, zone: str, sector: str, granularity: str, start: int) -> dict[str, Any]:
        when = iso(start)
        return self.latest[f"lyon|{zone}|electricity|{sector}|{granularity}|{when}"]
