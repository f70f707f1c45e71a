"""Coarsening to the day whatever the message boundaries, seen by an attacker who
reads everything anonymise releases (no broker here; the broker test is
tests/integration/test_anonymise_daily_kafka.py)."""

from __future__ import annotations

import base64
import hashlib
import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.anonymise import daily
from services.anonymise.policy import COARSENED_ROWS, Coarsening, PolicySet
from services.anonymise.stage import AnonymiseStage
from services.ingest.records import to_column
from services.privacy.keys import KeyStore
from services.runtime.errors import ConfigError, RejectedInput
from services.runtime.metrics import ServiceMetrics
from services.runtime.processor import Emit, InputMeta
from testkit.anonymise import policy_of, raw, values_of

TEN_MINUTES = 600_000_000
HOUR = 3_600_000_000
DAY1 = 1_736_722_800_000_000  # 2025-01-13T00:00:00+01:00 (a Paris local midnight)
DAY2 = DAY1 + 24 * HOUR
# A secret as random-looking as a generated one (weak secrets are refused by keys' guards).
SECRET = (
    base64.urlsafe_b64encode(hashlib.sha256(b"tests/unit/test_anonymise_daily.py").digest())
    .decode()
    .rstrip("=")
)
PRIVACY = {
    "version": "7",
    "fields": {"meter": "identifier", "kwh": "measure", "index_wh": "measure", "q": "measure"},
    "coarsen": {
        "to": "P1D",
        "sum": ["kwh"],
        "registers": ["index_wh"],
        "lateness": "PT1H",
        "quiet": "PT2H",
    },
}


def utc_us(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1_000_000)


class Clock:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self) -> float:
        return self.seconds


def make_stage(tmp_path: Path, privacy: dict[str, Any] = PRIVACY) -> tuple[AnonymiseStage, Clock]:
    clock = Clock(1_800_000_000.0)
    keys = KeyStore(tmp_path, environ={"CITEPLUS_PSEUDONYM_SECRET_TESTVILLE": SECRET})
    stage = AnonymiseStage(
        PolicySet([policy_of(tmp_path, privacy)]),
        keys,
        metrics=ServiceMetrics("anonymise"),
        clock=clock,
    )
    return stage, clock


def curve(meter: int, start: int, slots: int) -> list[tuple[int, float, int]]:
    """(time, kWh, register in Wh) of a meter's 10-minute curve, irregular values."""
    rng = random.Random(meter)
    out, index = [], 1_000_000 * meter
    for k in range(slots):
        kwh = round(rng.uniform(0.01, 0.9), 3)
        out.append((start + k * TEN_MINUTES, kwh, index))
        index += round(kwh * 1000)
    return out


def one_reading(meter: int, t: int, kwh: float, index: int, lineage: str = "l") -> dict:
    record = raw(
        {"meter": [f"0451234567{meter:04d}"], "kwh": [kwh], "index_wh": [index], "q": ["ok"]},
        entity=f"0451234567{meter:04d}",
        event_times=[t],
    )
    record["lineage_id"] = lineage
    return record


def run(
    stage: AnonymiseStage, records: list[dict], batch: int = 50, partition: int = 0
) -> list[Emit]:
    """Records through the stage in committed batches; every emit that left."""
    out: list[Emit] = []
    meta = InputMeta("raw.v1", partition, 0, b"k", 0)
    for i in range(0, len(records), batch):
        for record in records[i : i + batch]:
            out += list(stage.process(record, meta))
        out += list(stage.end_batch())
        stage.on_commit()
    return out


def idle(stage: AnonymiseStage) -> list[Emit]:
    emits = list(getattr(stage, "on_tick", lambda: [])())
    stage.on_commit()
    return emits


def released(emits: list[Emit]) -> list[dict]:
    return [e.value for e in emits if e.topic == "anonymised.v1"]


def one_message_per_reading(meters: int) -> tuple[list[dict], dict]:
    """Two days of 10-minute readings, one message each, meters interleaved in time."""
    curves = {m: curve(m, DAY1, 288) for m in range(meters)}
    records = [
        one_reading(m, *curves[m][k], lineage=f"req-{m}-{k}")
        for k in range(288)
        for m in range(meters)
    ]
    return records, curves


def test_attacker_gets_only_day_sums_from_one_message_per_reading(tmp_path: Path) -> None:
    stage, clock = make_stage(tmp_path)
    records, curves = one_message_per_reading(3)
    out = run(stage, records)
    clock.seconds += 3 * 3600  # the source went quiet: its last day closes
    out += idle(stage)
    seen = released(out)
    # What a partner reading anonymised.v1 gets: one record per meter and local day...
    days = Counter((r["entity_pseudonym"], tuple(r["event_times"])) for r in seen)
    assert sorted(t for (_, t) in days) == sorted([(DAY1,), (DAY2,)] * 3)
    assert set(days.values()) == {1}
    for r in seen:
        assert r["row_count"] == 1 and r["attributes"]["anonymise.coarsened"] == "P1D"
        assert values_of(r, COARSENED_ROWS) == [144]
    # ...whose values are the day sums, never a 10-minute reading.
    readings = {kwh for c in curves.values() for _, kwh, _ in c}
    sums = sorted(round(values_of(r, "kwh")[0], 6) for r in seen)
    expected = sorted(
        round(sum(kwh for _, kwh, _ in curves[m][k * 144 : (k + 1) * 144]), 6)
        for m in curves
        for k in (0, 1)
    )
    assert sums == expected
    assert not readings & set(sums)


def test_registers_keep_the_index_at_the_start_of_the_day_only(tmp_path: Path) -> None:
    stage, clock = make_stage(tmp_path)
    curves = {0: curve(0, DAY1, 288 + 6)}  # two days and the first hour of a third
    out = run(stage, [one_reading(0, *reading) for reading in curves[0]])
    clock.seconds += 3 * 3600
    out += idle(stage)
    seen = sorted(released(out), key=lambda r: r["event_times"])
    indexes = [values_of(r, "index_wh")[0] for r in seen]
    starts = {t: index for t, _, index in curves[0]}
    assert indexes == [starts[DAY1], starts[DAY2], starts[DAY2 + 24 * HOUR]]
    # The attacker subtracts every pair of released indexes: only whole days come out.
    day_totals = [
        round(sum(kwh for _, kwh, _ in curves[0][k * 144 : (k + 1) * 144]) * 1000) for k in (0, 1)
    ]
    differences = {b - a for a in indexes for b in indexes if b > a}
    assert differences == {day_totals[0], day_totals[1], day_totals[0] + day_totals[1]}


def test_a_reading_sent_twice_or_corrected_counts_once(tmp_path: Path) -> None:
    stage, clock = make_stage(tmp_path)
    readings = curve(1, DAY1, 144)
    records = [one_reading(1, *r) for r in readings]
    records += [one_reading(1, *r) for r in readings[:10]]  # an HTTP retry of ten readings
    t, _, index = readings[20]
    records.append(one_reading(1, t, 5.0, index))  # a correction of one reading
    out = run(stage, records)
    clock.seconds += 3 * 3600
    [day] = released(out + idle(stage))
    expected = sum(kwh for _, kwh, _ in readings) - readings[20][1] + 5.0
    assert values_of(day, "kwh")[0] == pytest.approx(expected)
    assert values_of(day, COARSENED_ROWS) == [144]


def test_a_reading_of_a_released_day_is_a_dead_letter_not_a_second_record(tmp_path: Path) -> None:
    stage, clock = make_stage(tmp_path)
    readings = curve(2, DAY1, 144 + 12)  # day 1 and two hours of day 2: day 1 closes
    out = run(stage, [one_reading(2, *r) for r in readings[1:]])
    assert [r["event_times"] for r in released(out)] == [[DAY1]]
    with pytest.raises(RejectedInput) as caught:
        run(stage, [one_reading(2, *readings[0])])  # day 1's first reading, late
    assert caught.value.reason == "day-released"
    stage.on_record_failed()
    stage.on_abort()
    # A record holding a late day and an open one: the open day is kept, the late
    # one is a dead letter that carries no value.
    both = raw(
        {"meter": ["04512345670002"] * 2, "kwh": [0.5, 0.7], "index_wh": [1, 2], "q": ["a", "b"]},
        entity="04512345670002",
        event_times=[readings[0][0], DAY2 + 3 * HOUR],
    )
    emits = run(stage, [both])
    [letter] = [e.value for e in emits if e.topic == "dlq.v1"]
    assert letter["reason"] == "day-released" and letter["original_value"] is None
    clock.seconds += 3 * 3600
    days = {r["event_times"][0]: r for r in released(idle(stage))}
    assert set(days) == {DAY2}
    assert values_of(days[DAY2], "kwh")[0] == pytest.approx(
        sum(kwh for _, kwh, _ in readings[144:]) + 0.7
    )


def test_an_aborted_batch_leaves_the_days_as_they_were(tmp_path: Path) -> None:
    stage, clock = make_stage(tmp_path)
    readings = curve(3, DAY1, 144 + 12)
    meta = InputMeta("raw.v1", 0, 0, b"k", 0)
    for r in readings:
        list(stage.process(one_reading(3, *r), meta))
    list(stage.end_batch())
    stage.on_abort()  # the transaction failed: nothing of it happened
    out = run(stage, [one_reading(3, *r) for r in readings], batch=1000)
    clock.seconds += 3 * 3600
    out += idle(stage)
    assert [values_of(r, COARSENED_ROWS) for r in released(out)] == [[144], [12]]


def test_days_are_local_days_across_dst() -> None:
    # 2025-03-30 in Paris lasts 23 hours: 23:00Z on the 29th to 22:00Z on the 30th.
    start = utc_us(2025, 3, 29, 23)
    assert daily.day_end(start, "Europe/Paris") == utc_us(2025, 3, 30, 22)
    times = [start + i * TEN_MINUTES for i in range(23 * 6 + 6)]
    by_day = daily.rows_by_day(times, "Europe/Paris")
    assert {k: len(v) for k, v in by_day.items()} == {start: 138, utc_us(2025, 3, 30, 22): 6}
    # Feb 1st in Paris starts on Jan 31 in UTC: its key is February's, the month of its middle.
    assert daily.epoch_of_day(utc_us(2025, 1, 31, 23), "Europe/Paris") == "2025-02"


COARSENING = Coarsening("P1D", 86400, sum=("kwh",), mean=("kw",), registers=("idx",))


def fold(messages: list[list[int]], rows: list[tuple[int, float | None, float, int]]) -> list:
    """The released days of ``rows`` (time, kwh, kw, idx) sent as ``messages`` (row positions)."""
    docs: dict[int, Any] = {}
    for positions in messages:
        times = [rows[i][0] for i in positions]
        for day, members in daily.rows_by_day(times, "Europe/Paris").items():
            picked = [positions[i] for i in members]
            cols = [
                to_column("kwh", [rows[i][1] for i in picked]),
                to_column("kw", [rows[i][2] for i in picked]),
                to_column("idx", [rows[i][3] for i in picked]),
            ]
            head = {"e": "p", "ty": None, "ds": "d", "fm": "f", "ln": "l", "ra": 0, "ep": "e",
                    "pv": "1", "at": {}}  # fmt: skip
            docs[day] = daily.merge(
                docs.get(day), head, cols, [rows[i][0] for i in picked], COARSENING
            )
    return [
        daily.released(doc, city="c", source="s", day_start_us=day, coarsening=COARSENING)
        for day, doc in sorted(docs.items())
    ]


rows_strategy = st.lists(
    st.tuples(
        st.one_of(st.none(), st.integers(0, 5000).map(lambda v: v / 1000)),
        st.floats(0, 50, allow_nan=False),
    ),
    min_size=1,
    max_size=200,
)


@settings(max_examples=150, deadline=None)
@given(rows_strategy, st.randoms(use_true_random=False))
def test_message_boundaries_and_order_do_not_change_the_days(values, rnd) -> None:
    rows = [(DAY1 + k * TEN_MINUTES, kwh, kw, 1000 + k) for k, (kwh, kw) in enumerate(values)]
    whole = fold([list(range(len(rows)))], rows)
    order = list(range(len(rows)))
    rnd.shuffle(order)
    cuts = sorted(rnd.sample(range(1, len(rows)), min(len(rows) - 1, rnd.randint(0, 30))))
    pieces = [order[a:b] for a, b in zip([0, *cuts], [*cuts, len(rows)], strict=True)]
    split = fold(pieces, rows)
    assert len(split) == len(whole)
    for a, b in zip(whole, split, strict=True):
        assert a["event_times"] == b["event_times"]
        assert values_of(a, COARSENED_ROWS) == values_of(b, COARSENED_ROWS)
        assert values_of(a, "idx") == values_of(b, "idx")  # the day's first index
        for name in ("kwh", "kw"):
            x, y = values_of(a, name)[0], values_of(b, name)[0]
            assert (x is None and y is None) or x == pytest.approx(y)
    for day in whole:
        members = [r for r in rows if daily.rows_by_day([r[0]], "Europe/Paris")
                   == {day["event_times"][0]: [0]}]  # fmt: skip
        assert values_of(day, "idx") == [members[0][3]]
        present = [r[1] for r in members if r[1] is not None]
        got = values_of(day, "kwh")[0]
        assert (got is None) if not present else got == pytest.approx(sum(present))


def test_a_text_in_a_summed_field_is_refused_without_quoting_it(tmp_path: Path) -> None:
    stage, _ = make_stage(tmp_path)
    record = one_reading(4, DAY1, 0.1, 1)
    record["columns"][1] = to_column("kwh", ["relevé 12,5"])
    with pytest.raises(RejectedInput) as caught:
        list(stage.process(record, InputMeta("raw.v1", 0, 0, b"k", 0)))
    assert caught.value.reason == "cannot-coarsen" and "12,5" not in str(caught.value)


# -- start-up refuses personal curves without consent nor daily coarsening ----------------
@pytest.mark.parametrize(
    ("privacy", "key", "words"),
    [
        ({"version": "1", "fields": {"kwh": "measure"}}, "sources[0].privacy.personal", "energy"),
        (
            {"version": "1", "personal": True, "fields": {"kwh": "measure"}},
            "sources[0].privacy.coarsen",
            "P1D",
        ),
        (
            {
                "version": "1",
                "personal": True,
                "fields": {"kwh": "measure"},
                "coarsen": {"to": "PT1H", "sum": ["kwh"]},
            },
            "sources[0].privacy.coarsen.to",
            "finer than a day",
        ),
        (
            {
                "version": "1",
                "personal": "yes",
                "fields": {"kwh": "measure"},
            },
            "sources[0].privacy.personal",
            "true or false",
        ),
        (
            {
                "version": "1",
                "personal": True,
                "fields": {"kwh": "measure"},
                "coarsen": {"to": "P1D", "sum": ["kwh"], "lateness": "6 hours"},
            },
            "sources[0].privacy.coarsen.lateness",
            "ISO 8601",
        ),
        (
            {
                "version": "1",
                "personal": True,
                "fields": {"kwh": "measure"},
                "coarsen": {"to": "P1D", "sum": ["kwh"], "registers": ["kwh"]},
            },
            "sources[0].privacy.coarsen.registers",
            "not aggregated",
        ),
    ],
)
def test_personal_curves_need_consent_or_daily_coarsening(
    tmp_path: Path, privacy: dict, key: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        policy_of(tmp_path, privacy, domain="energy")
    assert caught.value.key == key and words in str(caught.value)
    assert "testville.yaml" in str(caught.value)


def test_personal_sources_with_consent_or_daily_coarsening_start(tmp_path: Path) -> None:
    base = {"version": "1", "personal": True, "fields": {"kwh": "measure"}}
    assert policy_of(tmp_path, {**base, "consent": True}, domain="water").coarsening is None
    daily_policy = policy_of(
        tmp_path, {**base, "coarsen": {"to": "P1D", "sum": ["kwh"]}}, domain="water"
    )
    assert daily_policy.coarsening.daily and daily_policy.coarsening.lateness_s == 6 * 3600
    public = policy_of(tmp_path, {**base, "personal": False}, domain="energy")
    assert not public.personal and public.coarsening is None


def test_every_shipped_personal_source_has_consent_or_daily_coarsening() -> None:
    from services.anonymise.policy import load_policies
    from services.runtime.cities import load_cities
    from services.runtime.paths import CITIES_DIR

    cities = load_cities(CITIES_DIR)
    policies = {(p.city, p.source): p for p in load_policies(cities)}
    water = policies[("lyon", "eau-compteurs")]
    assert water.personal and water.coarsening is not None and water.coarsening.daily
    assert "waterConsumption" in water.coarsening.registers
    households = [
        (city.code, source.id)
        for city in cities.values()
        for source in city.sources
        if source.domain in ("energy", "water") and source.privacy.get("personal")
    ]
    assert len(households) == 7
    for key in households:
        policy = policies[key]
        assert policy.consent or policy.coarsening.daily, key


# -- normalise reads the daily records unchanged --------------------------------------
@pytest.mark.parametrize("code", ["bordeaux", "nice", "angers", "lyon"])
def test_daily_records_of_single_reading_messages_normalise_to_the_day_energy(
    tmp_path: Path, code: str
) -> None:
    """Lyon's Linky pilot declares consent: here it is withdrawn (``consent: false``),
    and its frames' cumulative registers must leave as the index at each day's start."""
    from dataclasses import replace
    from datetime import date

    from services.anonymise.policy import load_policies
    from services.ingest.formats import parse_payload
    from services.ingest.records import raw_record
    from services.runtime.cities import load_cities
    from services.runtime.paths import CITIES_DIR
    from services.simulate.formats import ENERGY_RENDERERS
    from services.simulate.generator import ENERGY_SOURCES
    from testkit.energy_blocks import PARIS, blocks
    from testkit.normalise import Run, normaliser

    first = date(2025, 10, 25)  # the 25-hour DST day is the second
    meters, energy_blocks = blocks(first, 3)
    cities = load_cities(CITIES_DIR)
    if code == "lyon":
        linky = cities[code].source(ENERGY_SOURCES[code])
        withdrawn = replace(linky, privacy={**linky.privacy, "consent": False})
        others = tuple(withdrawn if s.id == linky.id else s for s in cities[code].sources)
        cities[code] = replace(cities[code], sources=others)
    source = cities[code].source(ENERGY_SOURCES[code])
    policies = load_policies({code: cities[code]})
    assert policies.get(code, source.id).coarsening.daily
    keys = KeyStore(tmp_path, environ={f"CITEPLUS_PSEUDONYM_SECRET_{code.upper()}": SECRET})
    clock = Clock(1_800_000_000.0)
    stage = AnonymiseStage(policies, keys, metrics=ServiceMetrics("anonymise"), clock=clock)
    out: list[Emit] = []
    for n, block in enumerate(energy_blocks):
        parsed = parse_payload(ENERGY_RENDERERS[code](source, block), source)
        zones = {m.entity: {"zone": m.zone, "sector": m.sector} for m in meters}
        records = [
            raw_record(
                entity,
                source,
                lineage_id=f"{code}-{n}",
                received_at_us=0,
                attributes=zones[entity.entity_id] if code == "lyon" else {},
            )
            for entity in parsed.entities
        ]
        # one message per reading, as a gateway pushing each interval would send them
        singles = [daily.subset(r, [k]) for r in records for k in range(r["row_count"])]
        out += run(stage, singles, batch=211)
    clock.seconds += 3 * 3600
    out += idle(stage)
    records = sorted(released(out), key=lambda r: r["event_times"][0])
    assert {values_of(r, COARSENED_ROWS)[0] for r in records} <= {144, 150, 138}
    if code == "lyon":  # EAST (a cumulative register): only its index at the day's start
        pseudonym = keys.pseudonymiser(code, "2025-10")
        released_at = {(r["entity_pseudonym"], r["event_times"][0]): r for r in records}
        assert len(released_at) == len(records) == 3 * len(meters)
        for block in energy_blocks:
            day_start = int(block.starts[0].timestamp()) * 1_000_000
            for i, meter in enumerate(block.meters):
                record = released_at[(pseudonym(meter.entity), day_start)]
                assert int(values_of(record, "EAST")[0]) == block.total_wh[i][0] % 10**9
                assert record["attributes"]["zone"] == meter.zone
    normalise = Run(normaliser(cities[code]))
    got: dict[tuple[str, date], float] = Counter()
    for record in records:
        for o in normalise(record):
            for k, value in enumerate(o["values"]):
                start = o["start"] + k * o["step_seconds"] * 1_000_000
                got[(o["entity_pseudonym"], datetime.fromtimestamp(start / 1e6, PARIS).date())] += (
                    value
                )
    pseudonymise = keys.pseudonymiser(code, "2025-10")
    expected: dict[tuple[str, date], float] = Counter()
    for block in energy_blocks:
        for meter, readings in zip(block.meters, block.energy_wh, strict=True):
            for t, wh in zip(block.starts, readings, strict=True):
                expected[(pseudonymise(meter.entity), t.astimezone(PARIS).date())] += wh / 1000
    for day in (first.fromordinal(first.toordinal() + d) for d in range(2)):
        for meter in meters:
            key = (pseudonymise(meter.entity), day)
            assert got[key] == pytest.approx(expected[key], abs=1e-6), (code, day)


def test_a_rejected_record_undoes_its_own_writes_only(tmp_path: Path) -> None:
    stage, clock = make_stage(tmp_path)
    meta = InputMeta("raw.v1", 0, 0, b"k", 0)
    list(stage.process(one_reading(5, DAY1, 0.25, 1), meta))
    unknown = one_reading(5, DAY1 + TEN_MINUTES, 0.5, 2)
    unknown["source"] = "unknown"
    with pytest.raises(RejectedInput):
        list(stage.process(unknown, meta))
    stage.on_record_failed()  # as the runner does before writing the dead letter
    list(stage.end_batch())
    stage.on_commit()
    clock.seconds += 3 * 3600
    [day] = released(idle(stage))
    assert values_of(day, "kwh") == [0.25]  # the first record's reading was kept


def test_personal_is_inferred_outside_households_domains_and_binds_only_when_declared(
    tmp_path: Path,
) -> None:
    counters = {"version": "1", "fields": {"site": "identifier", "count": "measure"}}
    inferred = policy_of(tmp_path, counters, domain="mobility")
    assert inferred.personal and inferred.coarsening is None  # the safety net removes
    with pytest.raises(ConfigError) as caught:
        policy_of(tmp_path, {**counters, "personal": True}, domain="mobility")
    assert caught.value.key == "sources[0].privacy.coarsen"
