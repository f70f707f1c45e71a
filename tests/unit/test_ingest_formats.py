"""Ingest parsers on the real sample files in ``tests/fixtures/samples`` (copies, with provenance),
plus small hand-made payloads for the failure cases the samples do not cover."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.batch import EntityRows, ParseResult
from services.ingest.formats import parse_payload
from services.ingest.formats.linky import horodate_us
from services.runtime.cities import CsvOptions, load_city
from testkit.ingest_sources import parser_source

REPO = Path(__file__).resolve().parents[2]
CITIES = REPO / "deploy" / "cities"
SAMPLES = REPO / "tests" / "fixtures" / "samples"


@pytest.fixture(scope="session")
def samples() -> Path:
    path = SAMPLES
    if not (path / "PROVENANCE.md").is_file():
        pytest.fail(
            f"sample inputs not found at {path} "
            "(these tests must run on the real samples, they are never skipped)"
        )
    return path


source = parser_source


def only_entity(result: ParseResult) -> EntityRows:
    assert len(result.entities) == 1, result.entities
    return result.entities[0]


def check_shape(result: ParseResult) -> None:
    """Invariants every parser keeps: equal column lengths, times all-or-nothing."""
    assert result.accepted_rows == sum(e.row_count for e in result.entities)
    for entity in result.entities:
        assert entity.row_count > 0
        assert {len(values) for values in entity.columns.values()} == {entity.row_count}
        assert entity.event_times_us == [] or len(entity.event_times_us) == entity.row_count


def us(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp()) * 1_000_000


# --- Linky TIC -------------------------------------------------------------------------

LINKY_VALID = {
    # file: (rows, skipped partial frames, entity)
    "pyteleinfo_historique_tempo_bbr_10frames.txt": (10, 0, "021861348497"),
    "nokyyz_historique_hchp_rawstream_1.txt": (13, 2, "031328187235"),
    "nokyyz_historique_hchp_rawstream_2.txt": (124, 1, "031328187235"),
    "enedis_tic2websocket_historique_base_1frame.txt": (1, 0, "812164417227"),
    "enedis_tic2websocket_standard_1frame.txt": (1, 0, "031664001115"),
    "openhab_standard_1ph_producer.index-text.txt": (1, 2, "123456789012"),
    "openhab_standard_3ph_tempo_producer.index-text.txt": (2, 2, "123456789012"),
    "openhab_historique_3ph_base.index-text.txt": (1, 2, "XXXXXXXXXXXX"),
    "openhab_historique_3ph_ejp.index-text.txt": (1, 2, "XXXXXXXXXX"),
}


@pytest.mark.parametrize("name", sorted(LINKY_VALID))
def test_every_valid_linky_sample_parses(samples: Path, name: str) -> None:
    rows, skipped, meter = LINKY_VALID[name]
    result = parse_payload((samples / "linky-tic" / name).read_bytes(), source("linky-tic", "ADSC"))
    check_shape(result)
    assert result.rejected == []
    assert result.accepted_rows == rows
    assert result.skipped == skipped
    assert only_entity(result).entity_id == meter


def test_historique_capture_gives_ten_rows_for_one_meter(samples: Path) -> None:
    data = (samples / "linky-tic" / "pyteleinfo_historique_tempo_bbr_10frames.txt").read_bytes()
    meter = only_entity(parse_payload(data, source("linky-tic", "ADCO")))
    assert meter.entity_type == "linky-historique"
    assert meter.row_count == 10
    assert meter.columns["OPTARIF"] == ["BBR("] * 10
    assert meter.columns["PTEC"][0] == "HCJB"
    assert meter.columns["ADCO"][0] == "021861348497"
    assert meter.columns["BBRHCJB"][0] == "018328856"
    assert meter.event_times_us == []  # historique frames carry no time


def test_checksum_character_may_be_a_space(samples: Path) -> None:
    # "PTEC HP.. " + checksum " ": the separator and the checksum are both SP.
    data = (samples / "linky-tic" / "nokyyz_historique_hchp_rawstream_2.txt").read_bytes()
    meter = only_entity(parse_payload(data, source("linky-tic")))
    assert set(meter.columns["PTEC"]) == {"HP.."}
    assert len(set(meter.columns["PAPP"])) > 1  # the power changes over the capture


def test_bad_pcoup_checksum_rejects_the_frame(samples: Path) -> None:
    data = (
        samples / "linky-tic" / "enedis_tic2websocket_standard_1frame_bad_checksum_PCOUP.txt"
    ).read_bytes()
    result = parse_payload(data, source("linky-tic"))
    assert result.entities == []
    assert result.accepted_rows == 0
    [rejection] = result.rejected
    assert rejection.reason == "bad-checksum"
    # The label is a field name (kept for the letter, declared ones only); the
    # checksums, a function of the group's data, stay in the raw letter's detail.
    assert rejection.fields == ("PCOUP",) and "PCOUP" in (rejection.detail or "")
    assert "PCOUP" not in rejection.message and "expected" not in rejection.message
    assert rejection.position == "frame 1 at byte 0"
    assert rejection.original == data


def test_standard_frame_columns_and_event_time(samples: Path) -> None:
    data = (samples / "linky-tic" / "enedis_tic2websocket_standard_1frame.txt").read_bytes()
    meter = only_entity(parse_payload(data, source("linky-tic")))
    assert meter.entity_type == "linky-standard"
    assert meter.columns["DATE"] == [""]
    assert meter.columns["DATE@time"] == ["E170915101601"]
    assert meter.columns["SMAXSN"] == ["00000"]
    assert meter.columns["SMAXSN@time"] == ["E170915100926"]
    assert meter.columns["NGTF"] == ["H PLEINE/CREUSE "]  # spaces inside data kept
    assert meter.event_times_us == [us("2017-09-15T10:16:01+02:00")]
    assert len([c for c in meter.columns if "@" not in c]) == 38


def test_three_phase_producer_labels(samples: Path) -> None:
    data = (
        samples / "linky-tic" / "openhab_standard_3ph_tempo_producer.index-text.txt"
    ).read_bytes()
    meter = only_entity(parse_payload(data, source("linky-tic")))
    for label in ("IRMS1", "IRMS3", "URMS2", "SINSTS3", "SMAXSN1", "UMOY3", "EAIT", "CCAIN"):
        assert label in meter.columns, label
    assert meter.columns["NGTF"][0] == "     TEMPO      "
    assert len(meter.event_times_us) == 2
    assert meter.event_times_us[0] < meter.event_times_us[1]


def tic_group(
    label: str, data: str, horodate: str | None = None, *, standard: bool = True
) -> bytes:
    if standard:
        covered = "\t".join([label, *([horodate] if horodate else []), data]) + "\t"
        return f"\n{covered}{chr((sum(covered.encode()) & 0x3F) + 0x20)}\r".encode()
    covered = f"{label} {data}"
    return f"\n{covered} {chr((sum(covered.encode()) & 0x3F) + 0x20)}\r".encode()


def tic_frame(*groups: bytes) -> bytes:
    return b"\x02" + b"".join(groups) + b"\x03"


def test_mixed_stream_of_two_meters_in_both_modes() -> None:
    standard = tic_frame(
        tic_group("ADSC", "041234567890"),
        tic_group("DATE", "", "H240115081000"),
        tic_group("EAST", "000123456"),
    )
    historique = tic_frame(
        tic_group("ADCO", "021234567890", standard=False),
        tic_group("BASE", "012345678", standard=False),
    )
    result = parse_payload(b"\x00\x00" + standard + historique + standard, source("linky-tic"))
    check_shape(result)
    assert [(e.entity_id, e.entity_type, e.row_count) for e in result.entities] == [
        ("041234567890", "linky-standard", 2),
        ("021234567890", "linky-historique", 1),
    ]
    assert result.entities[0].event_times_us == [us("2024-01-15T08:10:00+01:00")] * 2


def test_interrupted_and_meterless_frames_are_rejected() -> None:
    good = tic_frame(tic_group("ADSC", "041234567890"), tic_group("EAST", "000000001"))
    interrupted = b"\x02" + tic_group("ADSC", "041234567890") + b"\x04"
    no_meter = tic_frame(tic_group("EAST", "000000001"))
    result = parse_payload(good + interrupted + no_meter + good, source("linky-tic"))
    assert result.accepted_rows == 2
    assert [(r.position.split(" at ")[0], r.reason) for r in result.rejected] == [
        ("frame 2", "truncated-frame"),
        ("frame 3", "missing-entity"),
    ]


def test_leading_and_trailing_partial_frames_are_skipped() -> None:
    good = tic_frame(tic_group("ADSC", "041234567890"), tic_group("EAST", "000000001"))
    tail_of_previous = tic_group("EAST", "000000001") + b"\x03"
    head_of_next = b"\x02" + tic_group("ADSC", "041234567890")[:5]
    result = parse_payload(tail_of_previous + good + head_of_next, source("linky-tic"))
    assert result.accepted_rows == 1
    assert result.skipped == 2
    assert result.rejected == []


@pytest.mark.parametrize(
    ("horodate", "expected"),
    [
        ("E240701120000", "2024-07-01T12:00:00+02:00"),
        ("H240115081000", "2024-01-15T08:10:00+01:00"),
        ("e240701120000", "2024-07-01T12:00:00+02:00"),  # degraded clock: still its best reading
        (" 240701120000", None),  # no season: no offset, no time
        ("E241301120000", None),  # month 13
        ("E2407011200", None),
    ],
)
def test_horodate(horodate: str, expected: str | None) -> None:
    assert horodate_us(horodate) == (us(expected) if expected else None)


# --- Smart Data Models / NGSI ------------------------------------------------------------

SDM_FORMS = {
    "keyvalues": "sdm-keyvalues",
    "normalized": "ngsi-v2-normalized",
    "keyvalues-ld": "ngsi-ld",
    "normalized-ld": "ngsi-ld",
}


def sdm_samples() -> list[str]:
    folder = SAMPLES / "smart-data-models"
    return sorted(p.name for p in folder.glob("*.json"))


@pytest.mark.parametrize("name", sdm_samples() or ["<missing samples>"])
def test_every_smart_data_model_sample_parses(samples: Path, name: str) -> None:
    model, form, _ = name.split(".")
    result = parse_payload(
        (samples / "smart-data-models" / name).read_bytes(), source(SDM_FORMS[form])
    )
    check_shape(result)
    assert result.rejected == []
    entity = only_entity(result)
    assert entity.entity_type == model
    assert entity.row_count == 1
    assert (
        "id" not in entity.columns
        and "type" not in entity.columns
        and "@context" not in entity.columns
    )
    if model != "ThreePhaseAcMeasurement":  # the only sample without a location
        assert json.loads(entity.columns["location"][0])["type"] in ("Point", "LineString")


def test_there_are_32_smart_data_model_samples(samples: Path) -> None:
    assert len(sdm_samples()) == 32


def read_sdm(samples: Path, name: str) -> EntityRows:
    form = name.split(".")[1]
    return only_entity(
        parse_payload((samples / "smart-data-models" / name).read_bytes(), source(SDM_FORMS[form]))
    )


def test_ngsi_ld_keeps_unit_codes(samples: Path) -> None:
    air = read_sdm(samples, "AirQualityObserved.normalized-ld.json")
    assert air.columns["no2"] == [69]
    assert air.columns["no2@unitCode"] == ["GQ"]
    assert air.columns["co@unitCode"] == ["GP"]
    assert air.columns["refPointOfInterest"] == [
        "urn:ngsi-ld:PointOfInterest:28079004-Pza.deEspanya"
    ]
    assert air.event_times_us == []  # dateObserved has no offset: normalise decides
    water = read_sdm(samples, "WaterConsumptionObserved.normalized-ld.json")
    assert water.columns["waterConsumption"] == [191051]
    assert water.columns["waterConsumption@unitCode"] == ["LTR"]
    assert water.columns["waterConsumption.observedBy"] == ["urn:ngsi-ld:Device:01"]
    assert water.event_times_us == [us("2021-05-23T23:14:16+00:00")]


def test_ngsi_v2_normalized_metadata_unit_code(samples: Path) -> None:
    air = read_sdm(samples, "AirQualityObserved.normalized.json")
    assert air.columns["no2"] == [69]
    assert air.columns["no2@unitCode"] == ["GQ"]
    assert air.columns["precipitation"] == [False]


def test_keyvalues_native_types(samples: Path) -> None:
    air = read_sdm(samples, "AirQualityObserved.keyvalues.json")
    assert air.columns["co2"] == [69]
    assert air.columns["temperature"] == [12.2]
    assert json.loads(air.columns["address"][0])["addressLocality"] == "Madrid"
    weather = read_sdm(samples, "WeatherObserved.keyvalues.json")
    assert weather.event_times_us == [us("2016-11-30T07:00:00+00:00")]


def test_malformed_date_observed_does_not_crash(samples: Path) -> None:
    ac = read_sdm(samples, "ACMeasurement.normalized-ld.json")
    assert ac.columns["dateObserved"] == ["2020-03-17TT08:45:00Z"]
    assert ac.columns["activePower.measurementType"] == ["average"]
    assert json.loads(ac.columns["activePower"][0]) == {
        "L1": 11996.416016,
        "L2": 9461.501953,
        "L3": 10242.351562,
    }
    # the event time comes from observedAt, not from the malformed date
    assert ac.event_times_us == [us("2020-02-24T22:00:00+00:00") + 173_000]
    only_bad_date = {
        "id": "urn:x:1",
        "type": "ACMeasurement",
        "frequency": {"type": "Property", "value": 50.0},
        "dateObserved": {
            "type": "Property",
            "value": {"@type": "DateTime", "@value": "2020-03-17TT08:45:00Z"},
        },
    }
    entity = only_entity(parse_payload(json.dumps(only_bad_date).encode(), source("ngsi-ld")))
    assert entity.columns["dateObserved"] == ["2020-03-17TT08:45:00Z"]
    assert entity.event_times_us == []


def test_entities_are_grouped_per_id_with_missing_attributes_as_none() -> None:
    payload = [
        {"id": "a", "type": "T", "x": 1, "dateObserved": "2024-01-01T00:00:00Z"},
        {"id": "b", "type": "T", "x": 5},
        {
            "id": "a",
            "type": "T",
            "x": 2.5,
            "y": "late",
            "dateObserved": "2024-01-01T00:10:00+00:00",
        },
        {"type": "T", "x": 9},
        "not an entity",
    ]
    result = parse_payload(json.dumps(payload).encode(), source("sdm-keyvalues"))
    check_shape(result)
    a, b = result.entities
    assert (a.entity_id, a.row_count, b.entity_id, b.row_count) == ("a", 2, "b", 1)
    assert a.columns["x"] == [1.0, 2.5]  # int and float in one column become float
    assert a.columns["y"] == [None, "late"]
    assert a.event_times_us == [us("2024-01-01T00:00:00+00:00"), us("2024-01-01T00:10:00+00:00")]
    assert b.event_times_us == []
    assert [(r.position, r.reason) for r in result.rejected] == [
        ("item 4", "missing-entity"),
        ("item 5", "not-an-object"),
    ]


def test_ngsi_v2_normalized_refuses_key_values_attributes() -> None:
    payload = {"id": "a", "type": "T", "x": {"type": "Number", "value": 1}, "y": 2}
    result = parse_payload(json.dumps(payload).encode(), source("ngsi-v2-normalized"))
    [rejection] = result.rejected
    assert rejection.reason == "bad-attribute"
    # The attribute is named in the fields (a letter keeps it if the source declares
    # it) and in the raw letter's detail, never in the message.
    assert rejection.fields == ("y",) and "'y'" in (rejection.detail or "")
    assert "'y'" not in rejection.message


def test_notifications_and_bad_payloads() -> None:
    notification = {"subscriptionId": "s1", "data": [{"id": "a", "type": "T", "x": {"value": 3}}]}
    result = parse_payload(json.dumps(notification).encode(), source("ngsi-v2-normalized"))
    assert only_entity(result).columns == {"x": [3]}
    result = parse_payload(b'{"id": "a", "x": ', source("ngsi-ld"))
    assert [(r.position, r.reason) for r in result.rejected] == [("payload", "bad-json")]
    result = parse_payload(b'"hello"', source("sdm-keyvalues"))
    assert [r.reason for r in result.rejected] == ["not-an-entity"]


# --- CSV ---------------------------------------------------------------------------------

SEMICOLON = CsvOptions(separator=";")


def test_paris_bike_counter_export(samples: Path) -> None:
    paris = load_city(CITIES / "paris.yaml")
    data = (samples / "opendata" / "paris_comptage-velo-donnees-compteurs.csv").read_bytes()
    result = parse_payload(data, paris.source("velo-compteurs"))
    check_shape(result)
    assert result.rejected == []
    counter = only_entity(result)
    assert counter.entity_id == "100003096-353242251"
    assert counter.entity_type is None
    assert counter.row_count == 21
    assert len(counter.columns) == 16
    assert counter.columns["Comptage horaire"][0] == 3.0
    assert counter.columns["Coordonnées géographiques"][0] == "48.83504,2.33314"
    assert counter.columns["Date et heure de comptage"][0] == "2021-09-01T03:00:00+02:00"
    assert counter.event_times_us == []


def test_paris_traffic_export_with_bom_and_quoted_geojson(samples: Path) -> None:
    paris = load_city(CITIES / "paris.yaml")
    data = (
        samples / "opendata" / "paris_comptages-routiers-permanents_champs-elysees.head300.csv"
    ).read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    arc = only_entity(parse_payload(data, paris.source("comptages-routiers")))
    assert arc.entity_id == "4264"
    assert arc.row_count == 300
    assert arc.columns["Débit horaire"][:2] == [1034.0, 1119.0]
    assert arc.columns["Taux d'occupation"][0] == 22.86333
    assert json.loads(arc.columns["geo_shape"][0])["type"] == "LineString"


def test_enedis_department_export(samples: Path) -> None:
    paris = load_city(CITIES / "paris.yaml")
    data = (
        samples
        / "opendata"
        / "enedis_consommation-electrique-par-secteur-dactivite-departement.head10.csv"
    ).read_bytes()
    result = parse_payload(data, paris.source("enedis-conso-departement"))
    check_shape(result)
    assert result.rejected == []
    assert len(result.entities) == 10
    lozere = result.entities[0]
    assert lozere.entity_id == "48"
    assert lozere.columns["Nb sites Résidentiel"] == [52508]
    assert lozere.columns["Conso totale Résidentiel (MWh)"] == [194663.1455]
    assert lozere.columns["Nom département"] == ["Lozère"]


def test_csv_decimal_comma_and_grouping_per_entity() -> None:
    data = (
        b"prm;horodate;puissance_w;pas\r\n"
        b"09876543210123;2024-03-31T01:50:00+01:00;1234,5;PT10M\r\n"
        b"01111111111111;2024-03-31T01:50:00+01:00;12;PT10M\r\n"
        b"09876543210123;2024-03-31T03:00:00+02:00;-0,25;PT10M\r\n"
        b"09876543210123;2024-03-31T03:10:00+02:00;;PT10M\r\n"
    )
    options = CsvOptions(separator=";", decimal=",")
    result = parse_payload(data, source("csv", "prm", csv=options, numeric=("puissance_w",)))
    check_shape(result)
    first, second = result.entities
    assert first.entity_id == "09876543210123"
    assert first.columns["puissance_w"] == [1234.5, -0.25, None]
    assert first.columns["horodate"][1] == "2024-03-31T03:00:00+02:00"
    assert second.columns["puissance_w"] == [12]


def test_csv_bad_lines_are_rejected_alone() -> None:
    data = (
        b"id;label;value\n"
        b'a;"semi;colon\nand newline";1,5\n'
        b"a;short\n"
        b";no entity;2\n"
        b"b;bad number;1.5\n"
        b"\n"
        b'b;"quoted ""word""";3\n'
    )
    options = CsvOptions(separator=";", decimal=",")
    result = parse_payload(data, source("csv", "id", csv=options, numeric=("value",)))
    check_shape(result)
    a, b = result.entities
    assert a.columns == {"id": ["a"], "label": ["semi;colon\nand newline"], "value": [1.5]}
    assert b.columns["label"] == ['quoted "word"']
    assert [(r.position, r.reason) for r in result.rejected] == [
        ("line 4", "wrong-column-count"),
        ("line 5", "missing-entity"),
        ("line 6", "bad-number"),
    ]
    # The header comes with the line: a payload the parser reads alone, for replays.
    assert result.rejected[0].original == b"id;label;value\na;short\n"
    assert "expected 3 fields" in result.rejected[0].message
    assert "'value'" in result.rejected[2].message


def test_csv_without_header_uses_declared_columns() -> None:
    data = b"25114523661201;2024-01-15 08:10;0,842;kWh\n25114523661201;2024-01-15 08:20;0,917;kWh\n"
    nice = load_city(CITIES / "nice.yaml")
    meter = only_entity(parse_payload(data, nice.source("batiments-courbes-charge")))
    assert meter.columns["energie_kwh"] == [0.842, 0.917]
    assert meter.columns["horodate_locale"] == ["2024-01-15 08:10", "2024-01-15 08:20"]


def test_csv_whole_payload_problems_give_one_rejection() -> None:
    no_entity_column = parse_payload(b"a;b\n1;2\n", source("csv", "id", csv=SEMICOLON))
    assert [r.reason for r in no_entity_column.rejected] == ["missing-entity-column"]
    latin1 = parse_payload(
        "id;nom\n1;Lozère\n".encode("latin-1"), source("csv", "id", csv=SEMICOLON)
    )
    assert [r.reason for r in latin1.rejected] == ["bad-encoding"]
    declared = CsvOptions(separator=";", encoding="latin-1")
    fixed = parse_payload("id;nom\n1;Lozère\n".encode("latin-1"), source("csv", "id", csv=declared))
    assert only_entity(fixed).columns["nom"] == ["Lozère"]
    duplicate_header = parse_payload(b"id;x;x\n1;2;3\n", source("csv", "id", csv=SEMICOLON))
    assert [r.reason for r in duplicate_header.rejected] == ["bad-header"]


# --- JSON / NDJSON ---------------------------------------------------------------------------


def test_velib_gbfs_document(samples: Path) -> None:
    paris = load_city(CITIES / "paris.yaml")
    data = (samples / "opendata" / "velib_gbfs_station_status.first20stations.json").read_bytes()
    result = parse_payload(data, paris.source("velib-disponibilite"))
    check_shape(result)
    assert result.rejected == []
    assert len(result.entities) == 20
    station = result.entities[0]
    assert station.entity_id == "213688169"
    assert station.columns["num_bikes_available"] == [1]
    assert station.columns["stationCode"] == ["16107"]
    assert json.loads(station.columns["num_bikes_available_types"][0]) == [
        {"mechanical": 1},
        {"ebike": 0},
    ]


def test_json_top_level_object_is_one_clear_rejection(samples: Path) -> None:
    data = (samples / "opendata" / "velib_gbfs_station_status.first20stations.json").read_bytes()
    result = parse_payload(data, source("json", "station_id"))
    assert result.entities == []
    [rejection] = result.rejected
    assert rejection.reason == "not-an-array"
    assert "json.records" in rejection.message
    assert rejection.original == data


def test_json_array_records() -> None:
    payload = [
        {"bac": "ANG-OM-0193", "remplissage_pct": "71", "ok": True, "pos": {"lat": 47.4}},
        {"bac": "ANG-OM-0193", "remplissage_pct": 72.5},
        {"bac": 12, "remplissage_pct": "plein"},
        {"remplissage_pct": 3},
    ]
    angers = load_city(CITIES / "angers.yaml")
    result = parse_payload(json.dumps(payload).encode(), angers.source("bacs-enterres"))
    check_shape(result)
    bin_ = only_entity(result)
    assert bin_.columns["remplissage_pct"] == [71.0, 72.5]
    assert bin_.columns["ok"] == [True, None]
    assert bin_.columns["pos"] == ['{"lat":47.4}', None]
    assert [(r.position, r.reason) for r in result.rejected] == [
        ("item 3", "bad-number"),
        ("item 4", "missing-entity"),
    ]
    # A dead letter carries the rejected item itself, not the whole array.
    assert [json.loads(r.original) for r in result.rejected] == payload[2:]


def test_ndjson_lines() -> None:
    data = (
        b'{"number": 10021, "available_bikes": 4, "last_update": "2024-05-02T08:41:07+02:00"}\n'
        b"\n"
        b'{"number": 10021, "available_bikes": "5"\n'
        b'{"number": 10022, "available_bikes": "3"}\r\n'
        b"[1, 2]\n"
        b'{"number": 10021, "available_bikes": 6}'
    )
    lyon = load_city(CITIES / "lyon.yaml")
    result = parse_payload(data, lyon.source("velov-disponibilite"))
    check_shape(result)
    first, second = result.entities
    assert (first.entity_id, first.columns["available_bikes"]) == ("10021", [4, 6])
    assert first.columns["last_update"] == ["2024-05-02T08:41:07+02:00", None]
    assert (second.entity_id, second.columns["available_bikes"]) == ("10022", [3])
    assert [(r.position, r.reason) for r in result.rejected] == [
        ("line 3", "bad-json"),
        ("line 5", "not-an-object"),
    ]
    assert result.rejected[0].original == b'{"number": 10021, "available_bikes": "5"'


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=5),
)
_VALUES = st.one_of(
    _SCALARS,
    st.lists(_SCALARS, max_size=2),
    st.dictionaries(st.text(max_size=2), _SCALARS, max_size=2),
)
_RECORDS = st.lists(
    st.fixed_dictionaries(
        {"meter": st.sampled_from(["m1", "m2", 7, ""])},
        optional={"wh": _SCALARS, "note": _VALUES, "t": st.integers(0, 10**10), "x": _VALUES},
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(records=_RECORDS, numeric=st.sampled_from([(), ("wh",)]))
def test_whole_batches_read_column_wise_equal_reading_record_by_record(records, numeric) -> None:
    """The column-wise fast path gives exactly what the record-by-record path gives."""
    from services.ingest.batch import BatchBuilder
    from services.ingest.formats import json_format

    meters = source("ndjson", "meter", numeric=numeric)
    fast = json_format._clean_batch(records, meters)
    careful = BatchBuilder()
    for number, record in enumerate(records, start=1):
        json_format._add(careful, record, meters, f"line {number}", b"")
    expected = careful.result()
    if fast is None:  # only batches with something to reject or convert go the careful way
        assert expected.rejected or any(isinstance(r.get(n), str) for r in records for n in numeric)
        return
    assert fast == expected
    body = "\n".join(json.dumps(r) for r in records).encode()
    assert parse_payload(body, meters) == expected


_CSV_CELLS = st.one_of(
    st.sampled_from(["", " ", "12", "1,5", "-0,25", "1 234,5", "abc", "x;y", 'say "hi"', "a\nb"]),
    st.text(alphabet='ab1,; "', max_size=4),
)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.sampled_from(["m1", "m2", " m3 ", ""]), _CSV_CELLS, _CSV_CELLS),
        max_size=10,
    ),
    ragged=st.booleans(),
)
def test_whole_csv_batches_read_column_wise_equal_reading_line_by_line(rows, ragged) -> None:
    """The column-wise fast path gives exactly what the line-by-line reader gives."""
    import csv
    import io

    from services.ingest.formats import csv_format

    meters = source("csv", "meter", numeric=("wh",), csv=CsvOptions(separator=";", decimal=","))
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\n")
    writer.writerow(["meter", "wh", "note"])
    writer.writerows(rows)
    text = buffer.getvalue() + ("m1;2\n" if ragged else "")
    fast = csv_format._clean_batch(csv_format.clean_layout(text, meters.csv, meters), meters.csv)
    expected = csv_format._parse_by_line(text.encode(), text, "utf-8", meters.csv, meters)
    if fast is None:  # only batches with a line to reject go line by line
        assert expected.rejected
    else:
        assert fast == expected and not expected.rejected
