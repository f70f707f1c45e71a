"""energy-analytics: event-time windowed energy aggregates with statistical secrecy.

What is aggregated, over which windows, with which lateness:

- input: energy Observations of ``observations.v1`` (interval energy in kWh of one
  meter: ``active_energy_import``, and ``active_energy_export`` as the
  ``production`` carrier; other carriers come from the record, default
  electricity); a missing zone or sector is ``unknown``;
- cells: city x zone x carrier x sector, plus city totals per sector
  (zone ``*``) and for the city (zone ``*``, sector ``*``);
- windows: the city's local day (its city file's ``timezone``, 23 to 25 hours on
  DST days) and its quarters and hours (:mod:`services.energy.windows`); a window
  the city's data covers in part is flagged ``partial``;
- lateness: a local day stays open until the group's event-time watermark (the
  latest reading end seen for the city and carrier, in the slowest of the
  observations partitions that carry it) passes the day's end plus
  the lateness (48 h by default), so every window accepts data for at least the
  lateness after it ends. Readings of a closed day go to the dead letters
  (``too-late``); the day's state is dropped when it closes;
- provisional upserts (internal): each update re-emits the changed windows of the
  day to ``energy.aggregates.v1``, keyed by
  city|zone|carrier|sector|granularity|window_start, with a version that grows
  with every record that changed the day (consumers keep the highest). They stay
  in the node (the city's own staff); publish never re-sends them;
- the release: when a day closes, every window of it is written once, as it
  finally is, to ``energy.aggregates.released.v2`` (EnergyAggregateRelease), the
  only energy topic that leaves the node. A closed day takes no reading any more
  (``too-late``), so a released value never changes and is never withdrawn:
  nothing released can be subtracted from another release of the same window;
- closing: by the watermark (above), or, for a group that received nothing for
  ``idle_close_us`` of wall-clock time, every day whose end plus the lateness is
  past on the wall clock (:meth:`EnergyStage.on_tick`, called by the runtime when
  idle). The end of the last closed day is kept in the state, so a day closed by
  the wall clock stays closed whatever its watermark says later;
- secrecy: the whole day's table is planned at once (:mod:`services.energy.secrecy`)
  before any record leaves, provisional or released.

Two steps in one consumer group and one Kafka transaction per batch:
observations are keyed by meter, a city's table needs all its meters, so each
record is first sent to its city and carrier's partition of
``energy.regrouped.v1`` (same partition count as ``observations.v1``; key
city|carrier|source partition) and aggregated when it comes back from there.
State lives in a ChangelogStore on ``energy.state.v1``, whose partition is the
regrouped partition of its city and carrier.

Why not faust's tables and ``processing_guarantee="exactly_once"``: measured here
with faust-streaming 0.15.3 / aiokafka 0.14 against Kafka 4.1.2, faust opens one
transactional producer per *input* partition number and puts each output in the
transaction of the partition number the record is *written to*: (1) a
``group_by`` repartition record bound for partition 0 of the repartition topic,
caused by input partition 1, waits in partition 0's transaction, which commits
only when input partition 0 has offsets to commit; with all input on partition 1,
half the records stayed invisible to read_committed readers while partition 1's
offsets were committed, until the broker aborted them (lost); (2) records sent
to a topic the worker does not consume (our sink) bypass the transactions: a
worker killed after sending left its output visible while its table changelog
write was aborted and its offsets uncommitted (duplicated on restart). The
runtime's StageRunner commits outputs, state changes and offsets of a batch in
one transaction, which is what exactly once needs; faust's ideas stay (tables
with changelogs, declared windows, a plain per-record function).

Readings are kept per meter and day (replace, never add: a reading sent twice,
replayed or corrected replaces the first), so nothing is counted twice.
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from prometheus_client import Counter

from services.energy import secrecy
from services.energy.aggregate import (
    DayTable,
    plan_table,
    publish,
    release,
    windows_of_quarters,
)
from services.energy.batch_screen import energy_members
from services.energy.cell_changes import PendingCellChanges
from services.energy.columns import (
    NONE,
    SMALL,
    MeterChange,
    Pieces,
    apply_meter_changes,
    changed_span,
    merge_day,
    pieces_end,
    split_days,
)
from services.energy.day_index import DayIndex, GroupDayKey
from services.energy.day_tables import DayTables
from services.energy.group_days import GroupDayChanges
from services.energy.many_meters import OneDayMembers, one_day_members, watermark_path
from services.energy.readings import known_parts
from services.energy.regroup_columns import CellNames, regrouped_from_columns
from services.energy.regrouped import RegroupedPart, observation_batching, regrouped_messages
from services.energy.secrecy import SecrecyPolicy
from services.energy.state_records import (
    GroupDay,
    MeterDay,
    Watermarks,
    cell_day_key,
    cell_name,
    group_day_key,
    meter_day_key,
    watermarks_key,
)
from services.energy.windows import (
    DAY_US,
    HOUR_US,
    QUARTER_US,
    Piece,
    apply_meter_change,
    day_end,
    day_quarters,
    empty_cell_day,
    merge_pieces,
    pieces_by_day,
    reading_span,
)
from services.runtime import dlq, localday
from services.runtime.batch_messages import member_input
from services.runtime.codec import Contracts
from services.runtime.config import NodeConfig
from services.runtime.errors import ConfigError, RejectedInput
from services.runtime.metrics import ServiceMetrics
from services.runtime.outbox import member_key
from services.runtime.paths import TOPICS_FILE
from services.runtime.stage import BaseStage, Emit, InputMeta, Tally
from services.runtime.state import BatchState, ChangelogStore
from services.runtime.topics import TopicName, TopicRegistry, resolve_topics

log = logging.getLogger(__name__)

NAME = "energy-analytics"
STORE = "energy"
DEFAULT_LATENESS_US = 48 * HOUR_US
DEFAULT_POLICY = SecrecyPolicy()
FUTURE_TOLERANCE_US = DAY_US
# Times a window can hold: before 2000 or from 2200 on, a reading is a broken clock
# or field (epoch seconds read as milliseconds, year 0001 or 9999); outside the years
# 1-9999 no window key can even be written. Such a record is a dead letter, never
# a crash of the batch (services/normalise/timebounds.py filters per source first).
PLAUSIBLE_US = (946_684_800 * 1_000_000, 7_258_118_400 * 1_000_000)  # [2000-01-01, 2200-01-01)
SOURCE_SKEW_US = 7 * DAY_US
UNKNOWN = "unknown"
DEFAULT_CARRIER = "electricity"
CARRIERS = ("electricity", "gas", "heat", "production")
# Interval energy metrics of deploy/vocabulary.yaml that are summed, with the
# carrier they count under (None: the record's carrier, electricity when missing).
METRIC_CARRIERS: dict[str, str | None] = {
    "active_energy_import": None,
    "active_energy_export": "production",
}
CELL_NAMES = CellNames(METRIC_CARRIERS, DEFAULT_CARRIER, UNKNOWN)


def _declared_partitions() -> int:
    return resolve_topics()[TopicName.ENERGY_REGROUPED].partitions


@dataclass(frozen=True)
class EnergyTopics:
    """The topics this stage reads and writes (deploy/topics.yaml), and the partition
    count of the regrouped topic (= observations' and the state's: checked when
    resolved), which decides where a city and carrier's state lives."""

    observations: str = TopicName.OBSERVATIONS
    regrouped: str = TopicName.ENERGY_REGROUPED
    aggregates: str = TopicName.ENERGY_AGGREGATES
    released: str = TopicName.ENERGY_RELEASED
    state: str = TopicName.ENERGY_STATE
    dead_letters: str = dlq.DLQ_TOPIC
    partitions: int = field(default_factory=_declared_partitions)
    # observations.v2 (ObservationBatch), read beside ``observations`` when wired
    observation_batches: str | None = None
    # energy.regrouped.v1 (one meter per message, no longer written): read so that
    # what an upgrade left in flight there is aggregated
    regrouped_v1: str = TopicName.ENERGY_REGROUPED_V1

    @classmethod
    def resolve(cls, topics: TopicRegistry) -> EnergyTopics:
        """The stage's topics under the registry's prefix (observations.v1 and v2 in);
        refuses a topics file whose regrouped, state and observations topics differ in
        partition count."""
        names = (
            TopicName.OBSERVATIONS,
            TopicName.OBSERVATIONS_V2,
            TopicName.ENERGY_REGROUPED_V1,
            TopicName.ENERGY_REGROUPED,
            TopicName.ENERGY_STATE,
        )
        if len({topics[n].partitions for n in names}) != 1:
            raise ConfigError(
                f"{', '.join(names[:-1])} and {names[-1]} must have the same number of "
                "partitions (state follows the regrouped partition)",
                source=str(TOPICS_FILE),
            )
        return cls(
            *(topics.name(n) for n in ENERGY_TOPIC_NAMES),
            partitions=topics[TopicName.ENERGY_REGROUPED].partitions,
            observation_batches=topics.name(TopicName.OBSERVATIONS_V2),
            regrouped_v1=topics.name(TopicName.ENERGY_REGROUPED_V1),
        )

    @property
    def inputs(self) -> list[str]:
        """What the stage reads: observations (v1, and v2 when wired), regrouped (v1
        for what an upgrade left in flight, v2)."""
        batches = [self.observation_batches] if self.observation_batches else []
        return [self.observations, *batches, self.regrouped_v1, self.regrouped]

    @property
    def regrouped_topics(self) -> tuple[str, str]:
        """Where readings come back regrouped (v2, and v1 from before the upgrade)."""
        return (self.regrouped, self.regrouped_v1)

    def prefixed(self, prefix: str) -> EnergyTopics:
        """The declared topics under ``prefix`` (tests, side-by-side runs)."""
        return EnergyTopics.resolve(resolve_topics(prefix))


# What EnergyTopics' first fields name, in their order (provisioned by the service,
# with the observations.v2 and energy.regrouped.v1 it also reads).
ENERGY_TOPIC_NAMES = (
    TopicName.OBSERVATIONS,
    TopicName.ENERGY_REGROUPED,
    TopicName.ENERGY_AGGREGATES,
    TopicName.ENERGY_RELEASED,
    TopicName.ENERGY_STATE,
    TopicName.DEAD_LETTERS,
)


def group_partition(city: str, carrier: str, partitions: int) -> int:
    """The regrouped (and state) partition of a city and carrier: stable everywhere."""
    return zlib.crc32(f"{city}|{carrier}".encode()) % partitions


class Meter(NamedTuple):
    """Where one regrouped record's readings count: its group, cell and meter."""

    city: str
    carrier: str
    zone: str
    sector: str
    meter: str


# Names of the stage's counts (Tally): each counts only once its batch committed.
READINGS = "readings"
UNKNOWN_INTERVALS = "unknown"
AGGREGATES = "aggregates"
DAYS_RELEASED = "days"


def _series_to_aggregate(record: dict[str, Any]) -> bool:
    """Whether an energy series has readings to aggregate; RejectedInput when it is
    not one energy can count (unit, shape, time or values)."""
    if record["unit"] != "kWh":
        raise RejectedInput(
            "energy-unit",
            f"{record['metric']} must be in kWh per interval, got {record['unit']!r}; "
            "fix the unit conversion in normalise",
        )
    values = record["values"]
    if not values:
        return False
    if record["step_seconds"] < 0 or (
        record["step_seconds"] == 0 and len(record["times"]) != len(values)
    ):
        raise RejectedInput(
            "energy-series",
            "a series needs step_seconds > 0, or one time per value when step_seconds is 0",
        )
    first, end = reading_span(record)
    if first < PLAUSIBLE_US[0] or end >= PLAUSIBLE_US[1]:
        raise RejectedInput(
            "time-implausible",
            f"readings from {first} to {end} µs after 1970-01-01 UTC fall outside "
            "2000-01-01 .. 2200-01-01: a broken clock or time field, not energy to "
            "aggregate; fix the source (normalise's plausible_time catches it first)",
        )
    if not _finite_and_positive(values):
        raise RejectedInput(
            "energy-value",
            "interval energy must be a finite number >= 0 "
            "(production is its own carrier, not a negative consumption)",
        )
    return True


def _finite_and_positive(values: list[float]) -> bool:
    """Every value finite and >= 0 (on an array past a few values: no loop per reading)."""
    if len(values) <= 8:
        return all(math.isfinite(v) and v >= 0 for v in values)
    array = np.asarray(values, dtype=np.float64)
    return bool(np.isfinite(array).all() and (array >= 0).all())


def _cell_of(record: dict[str, Any]) -> tuple[str, str, str]:
    """(carrier, zone, sector) of an energy series; RejectedInput for names that
    would break the aggregate keys."""
    carrier = METRIC_CARRIERS[record["metric"]] or record.get("carrier") or DEFAULT_CARRIER
    if carrier not in CARRIERS:
        raise RejectedInput(
            "energy-carrier", f"carrier {carrier!r} is not one of {', '.join(CARRIERS)}"
        )
    zone = record.get("zone") or UNKNOWN
    sector = record.get("sector") or UNKNOWN
    for label, value in (("city", record["city"]), ("zone", zone), ("sector", sector)):
        if "|" in value or value == secrecy.TOTAL:
            raise RejectedInput("energy-name", f"{label} {value!r} may not be '*' nor contain '|'")
    return carrier, zone, sector


def _readings_counter(metrics: ServiceMetrics | None) -> Counter | None:
    if metrics is None:
        return None
    return Counter(
        "citeplus_energy_readings_aggregated",
        "Readings added to energy aggregates",
        ["service"],
        registry=metrics.registry,
    )


class EnergyStage(BaseStage):
    """Observations in, EnergyAggregate upserts out (see the module's docstring).

    Its stores: the changelog (``store``), the batch's writes to it, written once per
    key when the batch ends (``state``), what is derived from it and what the batch
    did (``index``: :class:`DayIndex`), and its counts (``readings``, ``counts``). The
    runtime restores, commits and rolls them back.
    """

    name = NAME
    # A city's regrouped partition, its state partition and the observations partition
    # of the same number go to one worker (services.runtime.copartition).
    co_partitioned = True

    def __init__(
        self,
        topics: EnergyTopics,
        *,
        node: NodeConfig,
        contracts: Contracts,
        policies: Mapping[str, SecrecyPolicy] | None = None,
        default_policy: SecrecyPolicy = DEFAULT_POLICY,
        lateness_us: int = DEFAULT_LATENESS_US,
        metrics: ServiceMetrics | None = None,
        clock: Callable[[], int] = time.time_ns,
        name: str = NAME,
        partitions: int | None = None,
        source_skew_us: int = SOURCE_SKEW_US,
        idle_close_us: int | None = None,
        timezones: Mapping[str, str] | None = None,
        columnar: bool = True,
    ):
        self.name = name
        self.topics = topics
        self.input_topics = topics.inputs
        self.node = node
        self.contracts = contracts
        # city -> its IANA time zone (city file); a day is the city's local day
        self.timezones = dict(timezones or {})
        self.policies = dict(policies or {})
        self.default_policy = default_policy
        self.lateness_us = lateness_us
        self.idle_close_us = idle_close_us
        self.source_skew_us = source_skew_us
        self.clock = clock
        # Columnar (numpy) arithmetic, cell days updated once per batch; False: the
        # per-reading arithmetic of windows.py, each change applied as it comes (the
        # reference the columnar path is tested against, and the bench's "before").
        self.columnar = columnar
        # From the resolved topics: the regrouped topic's partition count.
        self.partitions = partitions if partitions is not None else topics.partitions
        self.store = ChangelogStore(STORE, topics.state, deltas=True)
        self.state = BatchState(self.store)
        self.index = DayIndex(self.store)
        self.cells = PendingCellChanges()
        self.tables = DayTables()
        self._group_days: GroupDayChanges | None = None  # see _aggregate_batch
        self.readings = Tally(_readings_counter(metrics), label=name)
        self.counts = Tally()
        self.stores = (
            self.store,
            self.state,
            self.index,
            self.cells,
            self.tables,
            self.readings,
            self.counts,
        )

    # -- committed counts ----------------------------------------------------------
    @property
    def readings_aggregated(self) -> int:
        return self.readings.total(READINGS)

    @property
    def unknown_intervals(self) -> int:
        """Values that were no reading (see readings.py)."""
        return self.counts.total(UNKNOWN_INTERVALS)

    @property
    def aggregates_published(self) -> int:
        return self.counts.total(AGGREGATES)

    @property
    def days_released(self) -> int:
        return self.counts.total(DAYS_RELEASED)

    # -- per record ----------------------------------------------------------------
    def redact(self, original: bytes | None, record: dict[str, Any] | None) -> bytes | None:
        """No original in this stage's dead letters: an input record is one meter's
        curve (pseudonymised, but a household's all the same), and dlq.v1 lands in the
        warehouse; the letter's topic, partition and offset point to it."""
        return None

    def transform(self, record: dict[str, Any], meta: InputMeta) -> Iterator[Emit]:
        if meta.topic in self.topics.regrouped_topics:
            return self._aggregate(record, meta)
        return self._regroup(record, meta)

    def _regroup(self, record: dict[str, Any], meta: InputMeta) -> Iterator[Emit]:
        """Keep energy readings, send them to their city and carrier's partition.

        The key also names the observations partition they came from: the
        watermark follows each source partition (see :meth:`_aggregate`).
        """
        if record["domain"] != "energy" or record["metric"] not in METRIC_CARRIERS:
            return
        if not _series_to_aggregate(record):
            return
        yield from regrouped_messages(self._regrouped(record, meta), self.topics.regrouped)

    def process_batch(self, batch: dict[str, Any], meta: InputMeta) -> list[Emit] | None:
        """An ObservationBatch (observations.v2): its energy members regrouped exactly
        as the per-record path would, chosen and checked on the batch's columns
        (:mod:`services.energy.batch_screen`), many meters to a regrouped message;
        None when one of them would be rejected (the per-record path then decides,
        member by member). A regrouped.v2 message: its members aggregated at once
        (:meth:`_aggregate_batch`)."""
        if meta.topic == self.topics.regrouped:
            return self._aggregate_batch(batch, meta)
        if meta.topic != self.topics.observation_batches:
            return None
        chosen = energy_members(
            batch,
            METRIC_CARRIERS,
            plausible=PLAUSIBLE_US,
            carriers=CARRIERS,
            default_carrier=DEFAULT_CARRIER,
            forbidden=secrecy.TOTAL,
        )
        if not chosen:
            return chosen  # None: a member to reject; []: no energy in this batch
        lane = self._lane_of(batch["city"], meta.partition)
        cut = regrouped_from_columns(
            batch, chosen, names=CELL_NAMES, lane_of=lane, topic=self.topics.regrouped
        )
        if cut is not None:
            return cut
        members = observation_batching().explode(batch)  # unknown intervals: parts
        parts = (part for index in chosen for part in self._regrouped(members[index], meta))
        return regrouped_messages(parts, self.topics.regrouped)

    def _lane_of(self, city: str, source: int) -> Callable[[str], tuple[str, int]]:
        """A carrier's regrouped message key and partition, for one city and source
        partition (as :meth:`_regrouped` names them)."""
        return lambda carrier: (
            f"{city}|{carrier}|{source}",
            group_partition(city, carrier, self.partitions),
        )

    def _aggregate_batch(self, batch: dict[str, Any], meta: InputMeta) -> list[Emit] | None:
        """A regrouped message's members aggregated under the one savepoint the runner
        opened for the message, each with the input place the record path gives it.
        The record path (a savepoint per member, its outputs encoded and checked one
        by one) was as much of the stage's time on single readings as the aggregate
        itself. None when a member is refused: the runner undoes the message's writes
        and takes its members one by one, each refusal its own letter."""
        self._group_days = GroupDayChanges()
        try:
            emits = self._aggregate_together(batch, meta)
            if emits is None:
                emits = self._aggregate_members(batch, meta)
        except RejectedInput:
            return None
        finally:
            changes, self._group_days = self._group_days, None
        changes.write(self.state)
        return emits

    def _aggregate_members(self, batch: dict[str, Any], meta: InputMeta) -> list[Emit]:
        """A regrouped message's members aggregated one after the other."""
        found = observation_batching()
        emits: list[Emit] = []
        for member in found.explode(batch):
            key = member_key(found.spec.member, member).encode()
            emits.extend(self._aggregate(member, member_input(meta, key)))
        return emits

    def _aggregate_together(self, batch: dict[str, Any], meta: InputMeta) -> list[Emit] | None:
        """A message of short series, each inside one open local day, none in the
        future and no day closing (services/energy/many_meters.py): the watermarks
        and days computed once for all, each meter's day merged in arrival order; the
        state members one by one give. None when any of that does not hold."""
        if not self.columnar:  # cells changed at once, not when the batch ends
            return None
        city = batch["city"]
        timezone = self.timezone(city)
        members = one_day_members(batch, timezone, SMALL)
        if members is None:
            return None
        latest = meta.timestamp_ms * 1000 + FUTURE_TOLERANCE_US
        if meta.timestamp_ms > 0 and int(members.starts.max()) > latest:
            return None  # the record path says which member and why
        source = self._source_of(meta.key)  # the message's own key
        wm_key = watermarks_key(city, members.carrier)
        marks = Watermarks.read(self.state.get(wm_key), int(members.starts[0]))
        path = watermark_path(marks.partitions, marks.earliest, source, members, self._watermark)
        if not self._stays_open(city, members, marks.closed, path.highest):
            return None
        self.index.heard[(city, members.carrier)] = self.clock() // 1000
        for meter, zone, sector, day, pieces in zip(
            members.meters,
            members.zones,
            members.sectors,
            members.days,
            members.pieces,
            strict=True,
        ):
            meter_of = Meter(city, members.carrier, zone, sector, meter)
            self._apply_columns(meter_of, day, pieces, meta.partition)
        self.readings.add(READINGS, members.readings)
        if path.changed:
            marks = Watermarks(path.partitions, path.earliest, marks.closed)
            self.state.set(wm_key, marks.stored(), meta.partition)
        return []

    def _stays_open(self, city: str, members: OneDayMembers, closed: int, highest: int) -> bool:
        """Whether every member's day is open and every open day of the group stays
        open under the highest watermark the members are checked against or make
        (then their order decides nothing: no member is late, no day closes)."""
        if min(members.days) < closed:
            return False
        days = {*members.days, *self.index.days.get((city, members.carrier), {})}
        timezone = self.timezone(city)
        return all(self._open(day, highest, timezone) for day in days)

    def _regrouped(self, record: dict[str, Any], meta: InputMeta) -> Iterator[RegroupedPart]:
        """The regrouped parts of a checked energy series (its known parts)."""
        carrier, zone, sector = _cell_of(record)
        parts, unknown = known_parts(record)  # an unknown interval is not a measured 0
        self.counts.add(UNKNOWN_INTERVALS, unknown)
        key, partition = self._lane_of(record["city"], meta.partition)(carrier)
        for part in parts:
            yield RegroupedPart(
                key, partition, {**part, "carrier": carrier, "zone": zone, "sector": sector}
            )

    def _aggregate(self, record: dict[str, Any], meta: InputMeta) -> Iterator[Emit]:
        """Add a regrouped record's readings to its open days; move the group's
        watermark, which may close days (released at the end of the batch)."""
        meter = Meter(
            record["city"],
            record["carrier"],
            record["zone"],
            record["sector"],
            record["entity_pseudonym"],
        )
        first, _ = reading_span(record)
        if meta.timestamp_ms > 0 and first > meta.timestamp_ms * 1000 + FUTURE_TOLERANCE_US:
            raise RejectedInput(
                "future-reading",
                "readings start more than a day after the record was written: "
                "a wrong clock would close every open window",
            )
        source = self._source_partition(meta)
        wm_key = watermarks_key(meter.city, meter.carrier)
        marks = Watermarks.read(self.state.get(wm_key), first)
        sources, earliest = dict(marks.partitions), min(marks.earliest, first)
        watermark = self._watermark(sources, earliest) if sources else None
        split = split_days if self.columnar else pieces_by_day
        by_day = split(record, self.timezone(meter.city))  # plausible: _regroup
        self.index.heard[(meter.city, meter.carrier)] = self.clock() // 1000
        open_days = self._open_days(by_day, marks.closed, watermark, meter.city)
        newest = self._apply_days(meter, open_days, meta.partition, sources.get(source, 0))
        late = len(by_day) - len(open_days)
        letter = self._late_letter(record, meta, late, len(by_day)) if late else None
        if newest > sources.get(source, 0) or earliest < marks.earliest:
            sources[source] = max(newest, sources.get(source, 0))
            self.state.set(
                wm_key, Watermarks(sources, earliest, marks.closed).stored(), meta.partition
            )
            advanced = self._watermark(sources, earliest)
            if watermark is None or advanced > watermark:
                self._close_days(meter.city, meter.carrier, advanced, meta.partition)
        if letter is not None:
            yield letter

    def _source_partition(self, meta: InputMeta) -> str:
        """The observations partition a regrouped reading came from, which its
        watermark follows: the last part of its message's key (a v2 member's own key
        names its meter, so a v2 message without a key cannot say it)."""
        key = meta.key if meta.topic == self.topics.regrouped_v1 else meta.batch_key
        return self._source_of(key)

    def _source_of(self, key: bytes | None) -> str:
        """The source partition a regrouped message's key names."""
        if key is None:
            raise RejectedInput(
                "regrouped-key",
                "a regrouped message needs its key city|carrier|source partition: only "
                "energy-analytics writes this topic",
            )
        return key.decode().rsplit("|", 1)[-1]

    def _open_days(
        self, by_day: dict[int, Any], closed: int, watermark: int | None, city: str
    ) -> dict[int, Any]:
        """The days of ``by_day`` that still take readings; RejectedInput when none does."""
        timezone = self.timezone(city)
        open_days = {
            d: p
            for d, p in by_day.items()
            if d >= closed and (watermark is None or self._open(d, watermark, timezone))
        }
        if not open_days:
            raise RejectedInput(
                "too-late",
                f"every reading falls in a local day ({timezone}) closed more than "
                f"{self.lateness_us / HOUR_US:g} h ago (lateness); nothing was aggregated",
            )
        return open_days

    def _apply_days(
        self, meter: Meter, open_days: dict[int, Any], partition: int, newest: int
    ) -> int:
        """Apply the pieces of every open day (a list of pieces, or Pieces when
        columnar); returns the latest reading end seen."""
        readings = 0
        for day, pieces in sorted(open_days.items()):
            if self.columnar:
                self._apply_columns(meter, day, pieces, partition)
            else:
                self._apply(meter, day, pieces, partition)
            end = day + pieces_end(pieces)
            readings += len(pieces)
            newest = max(newest, end)
        self.readings.add(READINGS, readings)
        return newest

    def _watermark(self, sources: Mapping[str, int], earliest: int) -> int:
        """The group's event time: the slowest observations partition's latest reading end.

        Partitions move at their own pace (a backfill, a slow producer), so the
        latest reading of all would close days that a slower partition still
        feeds. A partition not heard of yet counts as being at the group's
        earliest reading; one more than ``source_skew_us`` behind the fastest
        (or never heard of by then: a city with few meters) stops holding the
        others back. Deterministic: it depends only on the records.
        """
        marks = [sources.get(str(p), earliest) for p in range(self.partitions)]
        marks += [v for k, v in sources.items() if not (k.isdigit() and int(k) < self.partitions)]
        top = max(marks)
        return min(m for m in marks if m >= top - self.source_skew_us)

    def timezone(self, city: str) -> str:
        """The city's time zone, whose local days the aggregates count."""
        return self.timezones.get(city, localday.DEFAULT_TIMEZONE)

    def _open(self, day: int, watermark: int, timezone: str) -> bool:
        return day_end(day, timezone) + self.lateness_us > watermark

    def _apply(self, meter: Meter, day: int, pieces: list[Piece], partition: int) -> None:
        """Replace the meter's readings of the day by the merge with ``pieces`` (a
        reading sent twice replaces the first), and the cell and group day with them."""
        city, carrier = meter.city, meter.carrier
        md_key = meter_day_key(city, carrier, day, meter.zone, meter.sector, meter.meter)
        stored = self.state.get(md_key)
        old: list[Piece] = MeterDay.read(stored).pieces() if stored else []
        merged, removed, added = merge_pieces(old, pieces)
        if not removed and not added:
            return
        cell = cell_name(meter.zone, meter.sector)
        cd_key = cell_day_key(city, carrier, day, cell)
        cell_day = self.state.get(cd_key) or empty_cell_day(day_quarters(day, self.timezone(city)))
        self.state.set(cd_key, apply_meter_change(cell_day, old, merged, removed, added), partition)
        self.state.set(md_key, MeterDay.of(merged).stored(), partition)
        changed = (*removed, *added)
        low = min(a for a, _, _ in changed)
        high = max(a + max(length, 1) - 1 for a, length, _ in changed)
        self._day_changed(meter, day, md_key, (low, high), partition)

    def _apply_columns(
        self, meter: Meter, day: int, pieces: Pieces | list[Piece], partition: int
    ) -> None:
        """:meth:`_apply` on columns: the meter's day is merged now, its cell's day
        when the batch ends (every change of the batch to that cell day at once)."""
        city, carrier = meter.city, meter.carrier
        md_key = meter_day_key(city, carrier, day, meter.zone, meter.sector, meter.meter)
        stored = self.state.get(md_key)
        old = NONE
        if stored:
            kept = MeterDay.read(stored)
            old = (kept.offsets, kept.lengths, kept.values)
        merged, removed, added = merge_day(old, pieces)
        if not removed[0] and not added[0]:
            return
        cd_key = cell_day_key(city, carrier, day, cell_name(meter.zone, meter.sector))
        quarters = day_quarters(day, self.timezone(city))
        self.cells.add(cd_key, partition, quarters, MeterChange(old, merged, removed, added))
        self.state.set(md_key, MeterDay(*merged).stored(), partition)
        self._day_changed(meter, day, md_key, changed_span(removed, added), partition)

    def _day_changed(
        self, meter: Meter, day: int, md_key: str, span: tuple[int, int], partition: int
    ) -> None:
        """A meter's day changed between ``span`` (µs from the day's start, both
        included): the group's day gets a version more, the quarters are due."""
        city, carrier = meter.city, meter.carrier
        gd_key = group_day_key(city, carrier, day)
        cell = cell_name(meter.zone, meter.sector)
        if self._group_days is not None:  # a regrouped message taken whole
            self._group_days.changed(gd_key, cell, partition)
        else:
            group_day = GroupDay.read(self.state.get(gd_key)) or GroupDay()
            self.state.set(gd_key, group_day.changed(cell).stored(), partition)
        quarters = range(span[0] // QUARTER_US, span[1] // QUARTER_US + 1)
        self.index.touch((city, carrier, day), quarters, md_key)

    def _apply_cell_changes(self) -> None:
        """The batch's meter changes, applied to their cell days (see cell_changes)."""
        for key, pending in self.cells.drain().items():
            cell = self.state.get(key) or empty_cell_day(pending.quarters)
            self.state.set(key, apply_meter_changes(cell, pending.changes), pending.partition)

    def _close_days(
        self, city: str, carrier: str, watermark: int, partition: int, by: str = "watermark"
    ) -> None:
        """Days no reading may change any more: released at the end of the batch
        (and published one last time if the batch changed them), then their state
        is dropped. Every day before the last one closed counts as closed from now
        on, whatever the watermark says later (a close by the wall clock)."""
        days = self.index.days.get((city, carrier), {})
        timezone = self.timezone(city)
        closing = sorted(d for d in days if not self._open(d, watermark, timezone))
        for day in closing:
            self.index.close((city, carrier, day), partition, by)
        if not closing:
            return
        wm_key = watermarks_key(city, carrier)
        stored = self.state.get(wm_key)
        bound = localday.day_end(closing[-1], timezone)
        if stored is not None:
            marks = Watermarks.read(stored, 0)
            if marks.closed < bound:
                marks.closed = bound
                self.state.set(wm_key, marks.stored(), partition)

    def _release_closed_days(self, released_at: int) -> list[Emit]:
        """The one release of every day closed by this batch (or tick)."""
        emits = []
        for (city, carrier, day), closing in sorted(self.index.batch.closing.items(), key=_first):
            table = self._table(city, carrier, day)
            if table is None:
                continue
            policy = self.policies.get(city, self.default_policy)
            records = release(
                table,
                city=city,
                carrier=carrier,
                plan=plan_table(table, policy),
                released_at=released_at,
                closed_by=closing.by,
            )
            emits += [Emit(self.topics.released, k, v, readings=0) for k, v in records]
            self.counts.add(DAYS_RELEASED)
        return emits

    def _table(
        self, city: str, carrier: str, day: int, group_day: GroupDay | None = None
    ) -> DayTable | None:
        """The day's table of cells, as the batch sees it (None: no such day)."""
        group_day = group_day or GroupDay.read(self.state.get(group_day_key(city, carrier, day)))
        if group_day is None:
            return None
        states = {}
        for name in group_day.cells:
            zone, sector = name.split("|")
            states[(zone, sector)] = self.state.get(cell_day_key(city, carrier, day, name))
        return self.tables.table((city, carrier, day), day, states)

    def _drop_closed_days(self) -> None:
        for day_key, closing in sorted(self.index.batch.closing.items(), key=_first):
            city, carrier, day = day_key
            gd_key = group_day_key(city, carrier, day)
            group_day = GroupDay.read(self.state.get(gd_key))
            for name in group_day.cells if group_day else ():
                self.state.delete(cell_day_key(city, carrier, day, name), closing.partition)
            self.state.delete(gd_key, closing.partition)
            for md_key in closing.meter_keys:
                self.state.delete(md_key, closing.partition)
            self.index.drop(day_key)
            self.tables.drop(day_key)
            log.info("energy day closed", extra={"city": city, "carrier": carrier, "day": day})

    def _late_letter(self, record: dict[str, Any], meta: InputMeta, late: int, days: int) -> Emit:
        letter = dlq.dead_letter(
            stage=self.name,
            reason="too-late",
            message=(
                f"{late} of {days} local days of this series were closed (lateness "
                f"{self.lateness_us / HOUR_US:g} h): their readings were not aggregated, "
                "the other days were"
            ),
            original_value=None,  # one meter's curve: it stays on its input topic (see redact)
            original_key=meta.key,
            source_topic=meta.topic,
            source_partition=meta.partition,
            source_offset=meta.offset,
            city=record["city"],
            source=record.get("source"),
        )
        return Emit(
            self.topics.dead_letters,
            dlq.dead_letter_key(self.name, record["city"]),
            letter,
            readings=0,
        )

    # -- per batch -----------------------------------------------------------------
    def end_batch(self) -> Iterable[Emit]:
        """Publish the changed windows of every day touched by the batch, then the
        batch's state changes; all of it commits with the batch's offsets."""
        now = self.clock() // 1000
        self._apply_cell_changes()
        emits: list[Emit] = []
        for day_key, quarters in sorted(self.index.batch.dirty.items()):
            emits += self._publish_day(day_key, quarters, now)
        emits.extend(self._release_closed_days(now))
        self._drop_closed_days()
        self.state.flush()
        return emits

    def _publish_day(self, day_key: GroupDayKey, quarters: set[int], now: int) -> list[Emit]:
        """The day's windows that changed since they were last published (all of them
        when its withheld pattern or its cells changed: the records of a day never
        depend on the order in which its cells appeared)."""
        city, carrier, day = day_key
        group_day = GroupDay.read(self.state.get(group_day_key(city, carrier, day)))
        if group_day is None:
            return []
        table = self._table(city, carrier, day, group_day)
        pattern = plan_table(table, self.policies.get(city, self.default_policy))
        shape = (pattern[0], tuple(group_day.cells))
        changed = self.index.shapes.get(day_key) != shape
        records = publish(
            table,
            city=city,
            carrier=carrier,
            plan=pattern,
            version=group_day.version,
            computed_at=now,
            only=None if changed else windows_of_quarters(quarters),
        )
        self.index.batch.shapes[day_key] = shape
        published, pending = self.index.published[day_key], self.index.batch.published[day_key]
        emits = []
        for key, value in records:
            fingerprint = tuple(value[k] for k in _FINGERPRINT)
            if published.get(key) == fingerprint:
                continue
            pending[key] = fingerprint
            emits.append(Emit(self.topics.aggregates, key, value, readings=0))
        self.counts.add(AGGREGATES, len(emits))
        return emits

    def on_tick(self) -> Iterable[Emit]:
        """Close, by the wall clock, the days of groups that went quiet.

        A group (city and carrier) that received nothing for ``idle_close_us``
        has every day whose end plus the lateness is past on the wall clock
        closed and released, as the watermark would once the group's next
        readings moved it: a city whose meters stopped reporting still gets its
        release. The runtime calls this when no input came; what it returns
        commits in one transaction. After a restart, the idle time counts from
        the restart (a close is never earlier than without the restart).
        """
        if self.idle_close_us is None:
            return []
        now = self.clock() // 1000
        for (city, carrier), days in sorted(self.index.days.items(), key=_first):
            heard = self.index.heard.setdefault((city, carrier), now)
            if not days or now - heard < self.idle_close_us:
                continue
            partition = group_partition(city, carrier, self.partitions)
            self._close_days(city, carrier, now, partition, by="idle")
        if not self.index.batch.closing:
            return []
        return self.end_batch()

    def on_commit(self) -> None:
        """The stores commit (the runtime's part); a batch that met values that were no
        reading says so once."""
        unknown = self.counts.batch(UNKNOWN_INTERVALS)
        super().on_commit()
        if unknown:
            log.info("unknown intervals not aggregated", extra={"values": unknown})


def _first(item: tuple[Any, Any]) -> Any:
    return item[0]


_FINGERPRINT = (
    "partial",
    "energy_kwh",
    "meter_count",
    "peak_kw",
    "largest_share",
    "suppressed",
    "suppression_reason",
    "derived",
)


def timezones_from_cities(cities: Mapping[str, Any]) -> dict[str, str]:
    """Each city's time zone (its city file's ``timezone``, validated at load)."""
    return {code: city.timezone for code, city in cities.items()}


def policies_from_cities(cities: Mapping[str, Any]) -> dict[str, SecrecyPolicy]:
    """Each city's ``secrecy:`` block (defaults where a city has none)."""
    return {
        code: SecrecyPolicy.from_config(getattr(city, "secrecy", None), source=city.path)
        for code, city in cities.items()
    }
