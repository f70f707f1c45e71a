"""The columnar fast path gives exactly what the per-record path gives: for random
RawBatches of several sources and policies, every output member, pseudonym, epoch and
audit count is the per-record one, or the fast path declines (returns None) and the
per-record path decides. Values that look personal, undeclared fields, entity types,
times near a clock change and month ends are drawn on purpose."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from services.anonymise.columnar import anonymise_batch
from services.anonymise.policy import Policy, PolicySet
from services.anonymise.stage import AnonymiseStage, AnonymiseTopics
from services.anonymise.transform import RecordAudit, anonymise_by_epoch
from services.privacy.keys import KeyStore
from services.runtime.batches import batching, entity_partition
from services.runtime.errors import RejectedInput
from services.runtime.outbox import Outbox
from services.runtime.stage import Emit, InputMeta
from testkit.anonymise import T0, policy_of, pseudonymiser, raw
from testkit.fixture_secrets import fixture_secret

US = 1_000_000
PARTITIONS = 3
FEB_1_PARIS = 1_738_364_400 * US  # 2025-02-01T00:00+01:00: a new key epoch begins
OCT_26_FOLD = "2025-10-26T02:30:00"  # local wall time that happens twice in Paris

PERSONAL = {
    "version": "p1",
    "consent": True,
    "fields": {
        "meter": "identifier",
        "kwh": "measure",
        "status": "measure",
        "note": "free-text",
        "photo": "drop",
        "iris": {"class": "quasi-identifier", "prefix": 5},
        "pos": {"class": "quasi-identifier", "grid": 500, "output": "both"},
        "lat": {"class": "quasi-identifier", "grid": 200, "lon": "lng"},
        "age": {"class": "quasi-identifier", "band": 10},
        "heure": {"class": "quasi-identifier", "bucket": "PT1H", "format": "iso8601"},
        "debut": "measure",
    },
    "attributes": {"zone": "measure", "owner": "identifier", "comment": "free-text"},
}
PUBLIC = {
    "version": "q7",
    "personal": False,
    "places": ["name", "address"],
    "fields": {
        "name": "measure",
        "address": "measure",
        "value": "measure",
        "code": {"class": "quasi-identifier", "prefix": 2},
        "heure": {"class": "quasi-identifier", "bucket": "P1D", "format": "iso8601"},
    },
    "attributes": {"zone": "measure"},
}
MAPPING = {"time": {"field": "debut", "format": "epoch_s"}, "step": {"seconds": 600}}


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Policy]:
    return {
        "personal": policy_of(tmp_path_factory.mktemp("p"), PERSONAL, mapping=MAPPING),
        "public": policy_of(tmp_path_factory.mktemp("q"), PUBLIC),
    }


TEXTS = [
    "ok",
    "",
    "12 rue Victor Hugo",
    "jean.dupont@example.fr",
    "06 12 34 56 78",
    "45.7640,4.8357",
    "751010203",
    "0612345678",
    "33612345678",
    "04512345678901",
    "Jean Dupont",
    "2025-01-13T08:00:00Z",
    "2025-01-31T23:30:00",
    OCT_26_FOLD,
    '{"type":"Point","coordinates":[4.83,45.76]}',
    "AB-123-CD",
    "é",
]
NUMBERS = [0, 7, 33612345678, 4512345678901, 185057800608436, 45, 1_736_755_200]
TIMES = [T0, T0 + 600 * US, FEB_1_PARIS - 600 * US, FEB_1_PARIS + 600 * US]
KINDS = ("string", "double", "long", "boolean")


def cell(kind: str) -> st.SearchStrategy[Any]:
    if kind == "string":
        return st.sampled_from(TEXTS)
    if kind == "double":
        return st.sampled_from([float(n) for n in NUMBERS] + [45.764, -1.5, float("inf")])
    if kind == "long":
        return st.sampled_from(NUMBERS)
    return st.booleans()


def column(name: str, kind: str, rows: int) -> st.SearchStrategy[dict[str, Any]]:
    def build(values: list[Any], absent: set[int]) -> dict[str, Any]:
        own = {"string": "strings", "double": "doubles", "long": "longs", "boolean": "booleans"}
        out = {"name": name, "kind": kind, "strings": [], "doubles": [], "longs": []}
        out["booleans"] = []
        out[own[kind]] = values
        out["missing"] = sorted(i for i in absent if i < rows)
        return out

    return st.builds(
        build,
        st.lists(cell(kind), min_size=rows, max_size=rows),
        st.sets(st.integers(0, max(rows - 1, 0)), max_size=1),
    )


@st.composite
def raw_batch(draw: st.DrawFn, policy: Policy) -> dict[str, Any]:
    names = [*sorted(policy.fields), "kwh@unitCode", "undeclared", "lng"]
    chosen = draw(st.lists(st.sampled_from(names), min_size=1, max_size=6, unique=True))
    kinds = {name: draw(st.sampled_from(KINDS)) for name in chosen}
    events = draw(st.booleans())
    attributes = draw(
        st.dictionaries(st.sampled_from(["zone", "owner", "comment", "x"]), st.sampled_from(TEXTS))
    )
    members = []
    for _ in range(draw(st.integers(1, 6))):
        rows = draw(st.sampled_from([1, 1, 1, 0, 2, 3]))
        record = raw({}, entity=draw(st.sampled_from(["m1", "m2", "04512345678901", "a@b.fr"])))
        record.update(
            source=policy.source,
            row_count=rows,
            attributes=attributes,
            entity_type=draw(st.sampled_from([None, "Meter", "", "jean.dupont@example.fr"])),
            event_times=draw(st.lists(st.sampled_from(TIMES), min_size=rows, max_size=rows))
            if events
            else [],
            columns=[draw(column(n, kinds[n], rows)) for n in chosen],
        )
        members.append(record)
    [batch] = batching("RawRecord").implode(members)
    return batch


def per_record(batch: dict[str, Any], policy: Policy) -> tuple[list, RecordAudit, set[str]]:
    """The members through the per-record path: outputs, summed audit, epochs."""
    outputs, total, epochs = [], RecordAudit(), set()
    for member in batching("RawRecord").explode(batch):
        for epoch, out, audit in anonymise_by_epoch(member, policy, lambda e: pseudonymiser(e)):
            outputs.append(out)
            epochs.add(epoch)
            total.rows += audit.rows
            for name, count in audit.decisions.items():
                total.add(name, count)
            total.incident(audit.incidents)
    return outputs, total, epochs


def check_equal(batch: dict[str, Any], policy: Policy) -> bool:
    """Assert the fast path equals the per-record path; whether it took the batch."""
    try:
        fast = anonymise_batch(batch, policy, lambda e: pseudonymiser(e), PARTITIONS)
    except Exception:  # raising declines too: the per-record path decides
        fast = None
    try:
        outputs, audit, epochs = per_record(batch, policy)
    except Exception:  # the stage rejects the member (transform errors and any other)
        assert fast is None  # a member the per-record path rejects: never the fast path
        return False
    if fast is None:
        return False
    assert epochs == {fast.epoch} and fast.members == len(outputs)
    assert (fast.audit.rows, fast.audit.decisions) == (audit.rows, audit.decisions)
    assert fast.audit.incidents == audit.incidents
    carrier = batching("AnonymisedRecord")
    for partition, out in fast.batches:
        expected = [
            o
            for o in outputs
            if entity_partition(f"{o['city']}|{o['entity_pseudonym']}", PARTITIONS) == partition
        ]
        assert carrier.explode(out) == expected
    assert sum(len(carrier.explode(out)) for _, out in fast.batches) == len(outputs)
    return True


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_the_fast_path_equals_the_per_record_path(
    policies: dict[str, Policy], data: st.DataObject
) -> None:
    policy = policies[data.draw(st.sampled_from(sorted(policies)))]
    taken = check_equal(data.draw(raw_batch(policy)), policy)
    event("fast path" if taken else "per-record path")


def single_readings(policy: Policy, count: int, **extra: Any) -> dict[str, Any]:
    members = [
        raw(
            {"name": [f"Station {k}"], "value": [float(k)], "heure": ["2025-01-13T08:00:00Z"]},
            entity=f"station-{k}",
            source=policy.source,
            event_times=[T0],
            **extra,
        )
        for k in range(count)
    ]
    [batch] = batching("RawRecord").implode(members)
    return batch


def test_a_batch_of_single_readings_takes_the_fast_path(policies: dict[str, Policy]) -> None:
    batch = single_readings(policies["public"], 50, attributes={"zone": "nord", "x": "y"})
    assert check_equal(batch, policies["public"])
    fast = anonymise_batch(batch, policies["public"], pseudonymiser, PARTITIONS)
    assert fast is not None and len(fast.batches) == PARTITIONS
    assert fast.audit.decisions["dropped-undeclared"] == 50  # the attribute x, per member


def test_what_it_cannot_do_exactly_is_left_to_the_per_record_path(
    policies: dict[str, Policy],
) -> None:
    public = policies["public"]
    across_months = single_readings(public, 2)
    across_months["event_times"] = [T0, FEB_1_PARIS + US]
    assert anonymise_batch(across_months, public, pseudonymiser, PARTITIONS) is None
    folded = single_readings(public, 2)
    folded["columns"][2]["strings"] = [OCT_26_FOLD, OCT_26_FOLD]  # heure, local wall clock
    assert anonymise_batch(folded, public, pseudonymiser, PARTITIONS) is None
    lying = single_readings(public, 2)
    lying["columns"][0]["missing"] = [2]  # past the batch's rows
    assert anonymise_batch(lying, public, pseudonymiser, PARTITIONS) is None
    short = single_readings(public, 2)
    short["row_count"] = [1, 2]
    assert anonymise_batch(short, public, pseudonymiser, PARTITIONS) is None


def test_words_and_arrays_no_member_keeps_never_leave(policies: dict[str, Policy]) -> None:
    public = policies["public"]
    batch = single_readings(public, 3)
    batch["dictionary"] = ["jean.dupont@example.fr", "Station"]
    batch["entity_type"] = [0, 1, -1]
    batch["columns"][0]["longs"] = [33612345678]  # a stray array beside the strings
    fast = anonymise_batch(batch, public, pseudonymiser, 1)
    assert fast is not None
    [(_, out)] = fast.batches
    assert "jean.dupont@example.fr" not in repr(out) and "33612345678" not in repr(out)
    assert out["dictionary"] == ["Station"] and out["entity_type"] == [-1, 0, -1]
    assert fast.audit.incidents == {"email": 1}


# -- the stage: process_batch against every member through process, imploded ----------------
BATCH_META = InputMeta("raw.v2", 0, 0, None, 0)


@pytest.fixture(scope="module")
def stage_parts(
    policies: dict[str, Policy], tmp_path_factory: pytest.TempPathFactory
) -> tuple[PolicySet, KeyStore]:
    stations = replace(policies["public"], source="stations")
    keys = KeyStore(
        tmp_path_factory.mktemp("keys"),
        environ={"CITEPLUS_PSEUDONYM_SECRET_TESTVILLE": fixture_secret("columnar")},
    )
    return PolicySet([policies["personal"], stations]), keys


def new_stage(parts: tuple[PolicySet, KeyStore]) -> AnonymiseStage:
    topics = AnonymiseTopics(anonymised="anonymised.v2", raw_batches="raw.v2")
    return AnonymiseStage(*parts, topics=topics, clock=lambda: 1_000.0)


def through_members(stage: AnonymiseStage, batch: dict[str, Any]) -> tuple[dict, list[str]]:
    """What the runner makes of the batch member by member: partition -> output
    members (imploded as the runner does, then exploded), and the dead letters' reasons."""
    outbox, letters = Outbox(), []
    for member in batching("RawRecord").explode(batch):
        try:
            emits = list(stage.process(member, BATCH_META))
        except RejectedInput as exc:
            stage.on_record_failed()
            letters.append(exc.reason)
            continue
        for emit in emits:
            outbox.add_member(emit, stage._batch_partitions)  # type: ignore[arg-type]
    produced = outbox.drain(lambda _: batching("AnonymisedRecord"), lambda _: lambda b: b"")
    return exploded_by_partition([p.emit for p in produced]), letters


def exploded_by_partition(emits: list[Emit]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for emit in emits:
        assert emit.batched and emit.partition is not None and emit.key is None
        out.setdefault(emit.partition, []).extend(batching("AnonymisedRecord").explode(emit.value))
    return out


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_process_batch_equals_every_member_through_process(
    policies: dict[str, Policy], stage_parts: tuple[PolicySet, KeyStore], data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(["personal", "public"]))
    batch = data.draw(raw_batch(policies[name]))
    batch["source"] = "meters" if name == "personal" else "stations"
    slow, fast = new_stage(stage_parts), new_stage(stage_parts)
    expected, letters = through_members(slow, batch)
    for store in fast.stores:
        store.begin_record()
    try:
        emits = fast.process_batch(batch, BATCH_META)
    except Exception:  # raising declines: the runner rolls back and goes member by member
        emits = None
    if emits is None:
        fast.on_record_failed()
        assert fast.end_batch() == []  # nothing counted for a declined batch
        event("per-record path")
        return
    event("fast path")
    assert letters == []  # a member the per-record path rejects never takes the fast path
    assert exploded_by_partition(emits) == expected
    assert sum(e.readings for e in emits) == sum(batch["row_count"])
    assert fast.end_batch() == slow.end_batch()  # audit records, to the last count


def test_a_stage_wired_on_v1_has_no_fast_path(policies: dict[str, Policy], stage_parts) -> None:
    stage = AnonymiseStage(*stage_parts, clock=lambda: 1_000.0)  # anonymised.v1
    batch = single_readings(policies["public"], 3)
    batch["source"] = "stations"
    assert stage.process_batch(batch, BATCH_META) is None
    assert new_stage(stage_parts).process_batch(batch, BATCH_META) is not None


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(max_size=30), max_size=40))
def test_many_pseudonyms_at_once_are_the_pseudonyms_one_by_one(values: list[str]) -> None:
    keyed = pseudonymiser("2025-03", key=b"another key of 32 bytes, exactly")
    assert keyed.many(values) == [keyed(v) for v in values]
