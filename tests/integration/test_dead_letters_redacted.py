"""The attacker reads dlq.v1 (what the warehouse lands and any operator sees) and the
logs: after ingest and anonymise rejected input full of personal data, pushed through
the real HTTP API to the real broker, none of it is there in clear, in bytes or in
decoded text; the restricted raw.dlq.v1 holds every original whole, and a fixed
source's rejects are replayed from it."""

from __future__ import annotations

import json
import logging
import uuid
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from services.anonymise.policy import load_policies
from services.anonymise.stage import AnonymiseStage, AnonymiseTopics
from services.ingest.core import IngestTopics
from services.ingest.records import column_values, to_column
from services.ingest.service import build_core
from services.node.replay import replay_dead_letters
from services.privacy.keys import KeyStore
from services.runtime import dlq
from services.runtime.cities import load_cities
from services.runtime.kafka import RecordProducer, make_producer
from services.runtime.logs import JsonFormatter
from services.runtime.metrics import ServiceMetrics
from services.runtime.processor import StageRunner
from testkit.fixtures import SAMPLES
from testkit.ingest import serve_ingest
from testkit.kafka import read_all

pytestmark = pytest.mark.integration

CITY = "plantville"
# Random, as `citeplus keys init` makes them (a test-only value).
SECRET = "JLoI2PjFYq6NH-Zrg3N4wiqpvXoVrdyM7VAO3H5emYE"
T0 = 1_763_769_600_000_000  # 2025-11-22T00:00:00Z

EMAIL, PHONE, NAME = "marie.curie@example.fr", "+33 6 12 34 56 78", "Marie Curie"
KEY_EMAIL = "paul.langevin@example.org"  # hidden in a JSON key, not in a value
METER = "12345678901234"  # 14 digits, as a PRM/PDL
BAD_NUMBER = "quatre-vingt"  # the value a parser refuses (old messages quoted it)
ADSC, PRM = "099887766554", "09876543210987"
CSV_METERS = [f"0{i:013d}7" for i in range(50)]  # 14 digits each


def source(sid: str, fmt: str, entity: str, fields: dict[str, str], **extra: Any) -> dict:
    return {
        "id": sid,
        "format": fmt,
        "dataset": sid,
        "domain": "energy",
        "entity": entity,
        "token": f"env:DL_{sid.upper().replace('-', '_')}",
        "privacy": {"version": "dl-1", "personal": True, "consent": True, "fields": fields},
        **extra,
    }


def city_document(csv_decimal: str = ",") -> dict:
    return {
        "code": CITY,
        "name": "Plantville",
        "sources": [
            source(
                "compteurs-csv",
                "csv",
                "prm",
                {"prm": "identifier", "horodate": "measure", "kwh": "measure"},
                csv={"separator": ";", "decimal": csv_decimal},
                numeric=["kwh"],
            ),
            source(
                "compteurs-json",
                "ndjson",
                "meter",
                {"meter": "identifier", "wh": "measure", "t": "measure"},
                numeric=["wh"],
            ),
            source(
                "capteurs",
                "ngsi-v2-normalized",
                "id",
                {"id": "identifier", "temperature": "measure"},
            ),
            source(
                "linky",
                "linky-tic",
                "ADSC",
                {"ADSC": "identifier", "PRM": "identifier", "PCOUP": "measure"},
            ),
        ],
    }


TOKENS = {
    "DL_COMPTEURS_CSV": "t-csv",
    "DL_COMPTEURS_JSON": "t-json",
    "DL_CAPTEURS": "t-capteurs",
    "DL_LINKY": "t-linky",
}
PERSON = f"urn:ngsi-ld:Person:{EMAIL}"  # an entity id that is itself personal data


@pytest.fixture()
def cities(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for name, value in TOKENS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CITEPLUS_PSEUDONYM_SECRET_PLANTVILLE", SECRET)
    (tmp_path / f"{CITY}.yaml").write_text(yaml.safe_dump(city_document(), sort_keys=False))
    return load_cities(tmp_path)


@pytest.fixture()
def topics(isolated_topics):
    return isolated_topics("raw.v1", "dlq.v1", "raw.dlq.v1", "anonymised.v1", "audit.v1")


class JsonLines(logging.Handler):
    """Every log record as the JSON line an operator's log pipeline receives."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter("test"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture()
def logs():
    """The log output of every logger, whatever pytest's own capture does."""
    handler, root = JsonLines(), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield lambda: "\n".join(handler.lines)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def push(url: str, source_id: str, body: bytes) -> httpx.Response:
    token = TOKENS[f"DL_{source_id.upper().replace('-', '_')}"]
    return httpx.post(
        f"{url}/v1/cities/{CITY}/sources/{source_id}/records",
        content=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )


def tic_group(label: str, value: str) -> bytes:
    """A standard-mode group with a valid checksum (label HT data HT checksum)."""
    covered = f"{label}\t{value}\t".encode()
    return covered + bytes([(sum(covered) & 0x3F) + 0x20])


def linky_bad_frame() -> bytes:
    """The real frame with a bad PCOUP checksum, naming our planted meter and PRM."""
    frame = (
        SAMPLES / "linky-tic/enedis_tic2websocket_standard_1frame_bad_checksum_PCOUP.txt"
    ).read_bytes()
    lines = frame.split(b"\n")
    for i, line in enumerate(lines):
        if line.startswith(b"ADSC\t"):
            lines[i] = tic_group("ADSC", ADSC) + b"\r"
        elif line.startswith(b"PRM\t"):
            lines[i] = tic_group("PRM", PRM) + b"\r"
    return b"\n".join(lines)


def csv_whole_payload() -> bytes:
    """50 meters' readings, sent with ',' where the source declares ';': no 'prm'
    column, the whole payload is rejected (and it is larger than one chunk)."""
    lines = ["prm,horodate,kwh"]
    for meter in CSV_METERS:
        lines += [
            f"{meter},2025-11-22T{h:02d}:{m:02d}:00+01:00,1.{h}{m}"
            for h in range(24)
            for m in range(0, 60, 10)
        ]
    return ("\n".join(lines) + "\n").encode()


def planted() -> list[str]:
    return [EMAIL, PHONE, "0612345678", NAME, KEY_EMAIL, METER, BAD_NUMBER, ADSC, PRM, *CSV_METERS]


def leaks(messages, texts: list[str]) -> list[str]:
    """Plants found in raw bytes (key and value) or in the decoded letters' text."""
    found = []
    for message in messages:
        blob = (message.key() or b"") + b"\x00" + (message.value() or b"")
        found += [f"bytes:{p}" for p in planted() if p.encode() in blob]
    for text in texts:
        found += [f"text:{p}" for p in planted() if p in text]
    return found


def raw_originals(node, contracts, topic: str) -> dict[str, list[dict]]:
    by_letter: dict[str, list[dict]] = defaultdict(list)
    codec = contracts.codec(topic)
    for message in read_all(node, topic):
        letter = codec.decode(message.value())
        by_letter[letter["letter_id"]].append(letter)
    return by_letter


def test_ingest_rejects_leave_nothing_personal_in_dlq_answers_or_logs(
    node, cities, topics, logs
) -> None:
    specs, contracts = topics
    names = IngestTopics(raw=specs["raw.v1"].name, dead_letters=specs["dlq.v1"].name)
    assert names.raw_dead_letters == specs["raw.dlq.v1"].name
    core = build_core(node, contracts, cities, topics=names, instance=names.raw)
    bad_csv_line = f"{METER};2025-11-22T00:10:00+01:00;{BAD_NUMBER}\n".encode()
    good_csv = f"prm;horodate;kwh\n{METER};2025-11-22T00:00:00+01:00;1,5\n".encode()
    json_lines = [
        json.dumps({"meter": METER, "t": 1, "wh": 12}),
        json.dumps(
            {"meter": METER, "t": 2, "wh": BAD_NUMBER, "contact": EMAIL, "tel": PHONE, "nom": NAME}
        ),
        json.dumps({"meter": "m2", "t": 3, "wh": True, KEY_EMAIL: 1}),
        '{"meter": "' + METER + '", "contact": "' + EMAIL + '", "wh": ',  # truncated
    ]
    pushes = [
        ("compteurs-csv", good_csv + bad_csv_line),  # one bad line
        ("compteurs-csv", csv_whole_payload()),  # a whole payload of 50 meter ids
        ("compteurs-json", "\n".join(json_lines).encode()),
        ("linky", linky_bad_frame()),
        # An NGSI entity named after a person, one attribute not in normalized form.
        ("capteurs", json.dumps({"id": PERSON, "temperature": {"value": 1}, "nom": NAME}).encode()),
    ]
    with serve_ingest(core, cities) as running:
        answers = [push(running.url, sid, body) for sid, body in pushes]
    assert [a.status_code for a in answers] == [200, 422, 200, 422, 422]
    rejected = sum(a.json()["rejected"] for a in answers)
    assert rejected == 1 + 1 + 3 + 1 + 1

    # The sender reads positions, reasons and declared field names: no value at all.
    assert leaks([], [a.text for a in answers]) == []
    first = answers[0].json()["errors"][0]
    assert (first["position"], first["reason"], first["fields"]) == (
        "line 3",
        "bad-number",
        ["kwh"],
    )

    letters = read_all(node, names.dead_letters, expected=rejected)
    decoded = [contracts.codec(names.dead_letters).decode(m.value()) for m in letters]
    assert len(decoded) == rejected
    assert leaks(letters, [json.dumps(d, default=str) for d in decoded]) == []
    assert leaks([], [logs()]) == [] and '"dead letter"' in logs()

    # What the redacted letters do say, and their pointer to the raw zone.
    pseudonymise = KeyStore(Path("/nonexistent")).pseudonymiser(CITY, _epoch_now())
    by_where = {(d["source"], d["position"]): d for d in decoded}
    assert {(d["source"], d["position"], d["reason"]) for d in decoded} == {
        ("compteurs-csv", "line 3", "bad-number"),
        ("compteurs-csv", "line 1", "missing-entity-column"),
        ("compteurs-json", "line 2", "bad-number"),
        ("compteurs-json", "line 3", "bad-number"),
        ("compteurs-json", "line 4", "bad-json"),
        ("linky", "frame 1 at byte 0", "bad-checksum"),
        ("capteurs", "item 1", "bad-attribute"),
    }
    csv_line, csv_whole = by_where["compteurs-csv", "line 3"], by_where["compteurs-csv", "line 1"]
    json_line, checksum = (
        by_where["compteurs-json", "line 2"],
        by_where["linky", "frame 1 at byte 0"],
    )
    for letter in decoded:
        assert letter["redacted"] is True and letter["original_value"] is None
        assert letter["raw_topic"] == names.raw_dead_letters and letter["letter_id"]
        assert letter["letter_id"] in letter["message"] and letter["original_size"] > 0
    assert csv_line["entity_pseudonyms"] == json_line["entity_pseudonyms"] == [pseudonymise(METER)]
    assert checksum["entity_pseudonyms"] == [pseudonymise(ADSC)]
    person = by_where["capteurs", "item 1"]
    assert person["entity_pseudonyms"] == [pseudonymise(PERSON)] and person["field_names"] == []
    assert checksum["field_names"] == ["PCOUP"] and csv_whole["field_names"] == ["prm"]
    assert json_line["field_names"] == ["wh", "meter", "t"]  # contact, tel, nom: undeclared
    assert "3 undeclared field name(s) withheld" in json_line["message"]

    # The raw zone holds every original whole (the CSV in several chunks) and the full error.
    raw = raw_originals(node, contracts, names.raw_dead_letters)
    assert set(raw) == {d["letter_id"] for d in decoded}
    originals = {lid: dlq.reassemble(parts) for lid, parts in raw.items()}
    assert originals[csv_whole["letter_id"]] == pushes[1][1]
    assert len(raw[csv_whole["letter_id"]]) == -(-len(pushes[1][1]) // dlq.RAW_CHUNK_BYTES) > 1
    assert originals[csv_line["letter_id"]] == b"prm;horodate;kwh\n" + bad_csv_line  # replayable
    assert originals[json_line["letter_id"]] == json_lines[1].encode()
    frame = pushes[3][1]
    assert (
        originals[checksum["letter_id"]] == frame[frame.index(b"\x02") : frame.index(b"\x03") + 1]
    )
    full = raw[checksum["letter_id"]][0]["message"]
    assert "PCOUP" in full and "expected" in full  # the full error stays in the raw zone
    everything = b"".join(o or b"" for o in originals.values())
    assert all(p.encode() in everything for p in planted() if p != "0612345678")


def _epoch_now() -> str:
    from services.privacy.keys import current_epoch

    return current_epoch(timezone="Europe/Paris")  # the test city's zone


def raw_record(entity: str, *, source: str, rows: int = 6) -> dict:
    columns = {
        "pdl": [entity] * rows,
        "kwh": [0.1 * k for k in range(rows)],
        "contact": [f"{NAME} <{EMAIL}> {PHONE}"] * rows,
    }
    return {
        "city": CITY,
        "source": source,
        "dataset": "courbes",
        "format": "ndjson",
        "entity_id": entity,
        "entity_type": None,
        "lineage_id": "batch-1",
        "received_at": T0,
        "row_count": rows,
        "event_times": [T0 + k * 600_000_000 for k in range(rows)],
        "columns": [to_column(name, values) for name, values in columns.items()],
        "attributes": {"owner": NAME},
    }


def test_anonymise_rejects_go_whole_to_the_raw_zone_and_redacted_to_dlq(
    node, cities, topics, logs
) -> None:
    specs, contracts = topics
    stage_topics = AnonymiseTopics(
        raw=specs["raw.v1"].name,
        anonymised=specs["anonymised.v1"].name,
        audit=specs["audit.v1"].name,
    )
    unknown = raw_record(METER, source="inconnue")  # no policy: rejected
    broken = raw_record(ADSC, source="compteurs-json")
    broken["event_times"] = broken["event_times"][:2]  # malformed: rejected
    writer = RecordProducer(make_producer(node), contracts)
    sent = {}
    for record in (unknown, broken):
        key = f"{CITY}|{record['source']}|{record['entity_id']}"
        writer.produce(stage_topics.raw, key, record)
        sent[record["entity_id"]] = (key.encode(), contracts.codec(stage_topics.raw).encode(record))
    assert writer.flush() == 0

    keys = KeyStore(Path("/nonexistent"), environ={"CITEPLUS_PSEUDONYM_SECRET_PLANTVILLE": SECRET})
    stage = AnonymiseStage(load_policies(cities), keys, contracts, topics=stage_topics)
    stage.name = f"anonymise-dl-{uuid.uuid4().hex[:8]}"
    runner = StageRunner(
        stage,
        replace(node, processing=replace(node.processing, batch_size=8)),
        contracts,
        instance=uuid.uuid4().hex[:6],
        metrics=ServiceMetrics("anonymise"),
        dead_letter_topic=specs["dlq.v1"].name,
    )
    runner.run(idle_exit_s=4)
    assert runner.summary.dead_letters == 2

    letters = read_all(node, specs["dlq.v1"].name, expected=2)
    decoded = [contracts.codec(specs["dlq.v1"].name).decode(m.value()) for m in letters]
    assert len(decoded) == 2
    assert leaks(letters, [json.dumps(d, default=str) for d in decoded]) == []
    assert leaks([], [logs()]) == [] and logs().count('"dead letter"') == 2
    for letter in decoded:
        assert letter["redacted"] is True and letter["original_value"] is None
        assert letter["source_topic"] == stage_topics.raw  # and where it was read
    raw = raw_originals(node, contracts, specs["raw.dlq.v1"].name)
    assert set(raw) == {d["letter_id"] for d in decoded}
    wholes = {dlq.reassemble(parts): parts[0]["original_key"] for parts in raw.values()}
    assert wholes == {value: key for key, value in sent.values()}

    # Once fixed, a replay puts the record back on raw.v1 as it was, key and bytes.
    names = IngestTopics(raw=stage_topics.raw, dead_letters=specs["dlq.v1"].name)
    done = replay_dead_letters(
        node, contracts, cities, city=CITY, source="compteurs-json", topics=names
    )
    assert (done.letters, done.requeued) == (1, 1)
    on_raw = [(m.key(), m.value()) for m in read_all(node, stage_topics.raw, expected=3)]
    assert sorted(on_raw) == sorted([*sent.values(), sent[ADSC]])


def test_a_fixed_source_replays_its_raw_dead_letters_once(node, cities, topics, tmp_path) -> None:
    specs, contracts = topics
    names = IngestTopics(raw=specs["raw.v1"].name, dead_letters=specs["dlq.v1"].name)
    core = build_core(node, contracts, cities, topics=names, instance=names.raw)
    # The city file says ',' but the meter platform writes '.': every line is refused.
    body = "prm;horodate;kwh\n" + "".join(
        f"{meter};2025-11-22T00:00:00+01:00;1.5\n" for meter in CSV_METERS[:4]
    )
    with serve_ingest(core, cities) as running:
        answer = push(running.url, "compteurs-csv", body.encode()).json()
    assert (answer["accepted"], answer["rejected"]) == (0, 4)
    assert read_all(node, names.raw, expected=0, settle_s=0.5) == []

    fixed_dir = tmp_path / "fixed"
    fixed_dir.mkdir()
    (fixed_dir / f"{CITY}.yaml").write_text(
        yaml.safe_dump(city_document(csv_decimal="."), sort_keys=False)
    )
    fixed = load_cities(fixed_dir)
    kwargs = dict(city=CITY, source="compteurs-csv", topics=names)
    first = replay_dead_letters(node, contracts, fixed, **kwargs)
    assert (first.letters, first.accepted, first.rejected) == (4, 4, 0)
    second = replay_dead_letters(node, contracts, fixed, **kwargs)
    assert second.letters == 0  # replayed once: marked in the raw zone

    codec = contracts.codec(names.raw)
    records = [codec.decode(m.value()) for m in read_all(node, names.raw, expected=4)]
    assert sorted(r["entity_id"] for r in records) == sorted(CSV_METERS[:4])
    kwh = [column_values(c) for r in records for c in r["columns"] if c["name"] == "kwh"]
    assert kwh == [[1.5]] * 4
