"""One RawRecord through its policy: deny by default, pseudonyms, generalisation,
the safety net, attributes, redacted dead letters; every shipped source's
simulated and sample feeds pass their policy with nothing undeclared."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.anonymise import columns
from services.anonymise.generalise import cell_of
from services.anonymise.policy import (
    Band,
    FieldRule,
    Policy,
    Prefix,
    load_policies,
)
from services.anonymise.transform import (
    DROPPED_UNDECLARED,
    TransformError,
    anonymise,
    apply_policy,
    redacted_raw,
)
from services.runtime.cities import load_cities
from testkit.anonymise import T0, policy_of, pseudonymiser, raw, values_of
from testkit.normalise import normaliser

CITIES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "cities"
SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "samples"

RULES = [
    FieldRule("", "identifier"),
    FieldRule("", "measure"),
    FieldRule("", "free-text"),
    FieldRule("", "drop"),
    FieldRule("", "quasi-identifier", Prefix(3)),
    FieldRule("", "quasi-identifier", Band(10.0)),
]
names = st.text("abcdefgh_@.", min_size=1, max_size=6)
cell_values = st.one_of(
    st.none(), st.text(max_size=8), st.integers(-1000, 1000), st.floats(allow_nan=False, width=32)
)


@st.composite
def records_and_policies(draw) -> tuple[dict[str, Any], Policy, set[str]]:
    rows = draw(st.integers(0, 12))
    column_names = draw(st.lists(names, min_size=1, max_size=10, unique=True))
    declared = draw(st.lists(st.sampled_from(column_names), unique=True))
    fields = {}
    for name in declared + draw(st.lists(names, max_size=3)):  # some declared, never sent
        rule = draw(st.sampled_from(RULES))
        fields[name] = FieldRule(name, rule.cls, rule.generalisation)
    secrets = set()
    data: dict[str, list[Any]] = {}
    for i, name in enumerate(column_names):
        rule = fields.get(name)
        base, _, qualifier = name.rpartition("@")
        parent = fields.get(base)
        follows = qualifier in ("unitCode", "observedAt") and parent is not None and parent.kept
        if (rule is None and not follows) or (rule is not None and not rule.kept):
            # A field the output must never show: mark every value with a token.
            token = f"PII{i:03d}x"
            secrets.add(token)
            data[name] = [f"{token}{r}" for r in range(rows)]
        else:
            data[name] = [draw(cell_values) for _ in range(rows)]
    attribute_names = draw(st.lists(names, max_size=4, unique=True))
    attributes, attribute_rules = {}, {}
    for j, name in enumerate(attribute_names):
        if draw(st.booleans()):
            attribute_rules[name] = FieldRule(name, draw(st.sampled_from(["measure", "drop"])))
        if attribute_rules.get(name) is None or attribute_rules[name].cls == "drop":
            token = f"PII9{j:02d}y"
            secrets.add(token)
            attributes[name] = token
        else:
            attributes[name] = "kept"
    record = raw(data, attributes=attributes) if rows else raw({}, attributes=attributes)
    if not rows:
        record["columns"] = [columns.make(n, "string", []) for n in column_names]
    policy = Policy("testville", "meters", "7", fields, attribute_rules)
    return record, policy, secrets


@settings(max_examples=400, deadline=None)
@given(records_and_policies())
def test_no_field_absent_from_the_policy_ever_reaches_the_output(case) -> None:
    record, policy, secrets = case
    out, audit = anonymise(record, policy, pseudonymiser())
    allowed = policy.output_names()
    for column in out["columns"]:
        name = column["name"]
        base, _, qualifier = name.rpartition("@")
        assert name in allowed or (qualifier in ("unitCode", "observedAt") and base in allowed), (
            name
        )
    assert set(out["attributes"]) <= {n for n, r in policy.attributes.items() if r.kept}
    text = json.dumps(out, default=str)
    assert not [s for s in secrets if s in text]
    assert record["entity_id"] not in text
    dropped = sum(
        columns.present(c) for c in record["columns"] if policy.rule(c["name"]) is None
    ) + sum(1 for n in record["attributes"] if n not in policy.attributes)
    assert audit.decisions.get(DROPPED_UNDECLARED, 0) == dropped


def test_identifiers_become_keyed_pseudonyms(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path,
        {"version": "1", "fields": {"pdl": "identifier", "kwh": "measure", "note": "free-text"}},
    )
    record = raw(
        {"pdl": ["04512345678901"] * 3, "kwh": [0.1, None, 0.3], "note": ["a", "b", None]},
        entity="04512345678901",
    )
    ps = pseudonymiser()
    out, audit = anonymise(record, policy, ps)
    assert out["entity_pseudonym"] == ps("04512345678901")
    assert values_of(out, "pdl") == [out["entity_pseudonym"]] * 3  # joins with the entity
    assert values_of(out, "kwh") == [0.1, None, 0.3]
    assert [c["name"] for c in out["columns"]] == ["pdl", "kwh"]
    assert out["key_epoch"] == "2025-01" and out["policy_version"] == "1"
    assert "04512345678901" not in json.dumps(out)
    assert audit.decisions == {"pseudonymised": 4, "kept": 2, "removed-free-text": 2}
    assert audit.rows == 3


def test_safety_net_removes_personal_data_from_kept_fields(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path,
        {
            "version": "1",
            "fields": {"status": "measure", "iris": {"class": "quasi-identifier", "prefix": 5}},
            "attributes": {"zone": "measure"},
        },
    )
    record = raw(
        {
            "status": ["ok", "call 06 12 34 56 78", "ok", "AB-123-CD seen"],
            "iris": ["751010203"] * 4,
        },
        attributes={"zone": "contact jean@example.fr"},
    )
    out, audit = anonymise(record, policy, pseudonymiser())
    assert values_of(out, "status") == ["ok", None, "ok", None]
    assert values_of(out, "iris") == ["75101"] * 4
    assert out["attributes"] == {}
    assert audit.incidents == {"phone": 1, "plate": 1, "email": 1}
    assert audit.decisions["removed-by-safety-net"] == 3


def test_grid_generalises_every_form_of_position(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path,
        {
            "version": "1",
            "fields": {
                "geo": {"class": "quasi-identifier", "grid": 500},
                "latlon": {"class": "quasi-identifier", "grid": 500, "output": "both"},
                "lat": {"class": "quasi-identifier", "grid": 500, "lon": "lon"},
            },
        },
    )
    point = json.dumps({"type": "Point", "coordinates": [2.33314, 48.83504]})
    line = json.dumps({"type": "LineString", "coordinates": [[2.33, 48.83], [2.34, 48.84]]})
    record = raw(
        {
            "geo": [point, line, "not a place"],
            "latlon": ["48.83504,2.33314", "48.83504, 2.33314", None],
            "lat": [48.83504, 48.83504, None],
            "lon": [2.33314, 2.33314, 2.1],
        }
    )
    out, audit = anonymise(record, policy, pseudonymiser())
    cell, lat_c, lon_c = cell_of(48.83504, 2.33314, 500)
    geo = values_of(out, "geo")
    assert json.loads(geo[0]) == {"type": "Point", "coordinates": [lon_c, lat_c]}
    assert json.loads(geo[1])["type"] == "Point" and geo[2] is None
    assert values_of(out, "latlon") == [f"{lat_c},{lon_c}", f"{lat_c},{lon_c}", None]
    assert values_of(out, "latlon@cell") == [cell, cell, None]
    assert values_of(out, "lat") == [lat_c, lat_c, None]
    assert values_of(out, "lon") == [lon_c, lon_c, None]
    assert audit.decisions["removed-ungeneralisable"] == 2  # "not a place", the lone 2.1
    assert abs(lat_c - 48.83504) * 111_320 <= 250 and abs(lon_c - 2.33314) * 73_000 <= 260


@settings(max_examples=300, deadline=None)
@given(st.floats(41, 51.5), st.floats(-5.5, 9.6), st.sampled_from([100, 250, 500, 1000]))
def test_grid_cells_contain_their_points(lat: float, lon: float, metres: int) -> None:
    cell, lat_c, lon_c = cell_of(lat, lon, metres)
    assert abs(lat - lat_c) * 111_320 <= metres / 2 + 1
    assert abs(lon - lon_c) * 111_320 * math.cos(math.radians(lat_c)) <= metres / 2 + 1
    assert cell_of(lat_c, lon_c, metres)[0] == cell  # the centre is in its own cell


def test_band_and_bucket(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path,
        {
            "version": "1",
            "fields": {
                "age": {"class": "quasi-identifier", "band": 10},
                "kw": {"class": "quasi-identifier", "band": 0.5},
                "seen": {"class": "quasi-identifier", "bucket": "PT1H"},
                "day": {"class": "quasi-identifier", "bucket": "P1D", "format": "%Y-%m-%d %H:%M"},
            },
        },
    )
    record = raw(
        {
            "age": [37, 40, None],
            "kw": [1.26, 0.49, 3.0],
            "seen": ["2025-01-13T08:47:12+01:00", "2025-01-13T07:00:00Z", "garbage"],
            "day": ["2025-01-13 23:30", "2025-01-14 00:10", "2025-03-30 02:30"],
        }
    )
    out, audit = anonymise(record, policy, pseudonymiser())
    assert values_of(out, "age") == [30, 40, None]
    assert values_of(out, "kw") == [1.0, 0.0, 3.0]
    assert values_of(out, "seen") == ["2025-01-13T07:00:00Z", "2025-01-13T07:00:00Z", None]
    # local days of Europe/Paris; 02:30 on the spring-forward day never happened
    assert values_of(out, "day") == ["2025-01-12T23:00:00Z", "2025-01-13T23:00:00Z", None]
    assert audit.decisions["removed-ungeneralisable"] == 2


def test_undeclared_and_dropped_attributes_are_removed(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path,
        {
            "version": "1",
            "fields": {"kwh": "measure"},
            "attributes": {"zone": "measure", "owner": "identifier", "mode": "drop"},
        },
    )
    record = raw(
        {"kwh": [1.0]},
        attributes={"zone": "693810202", "owner": "Dupont", "mode": "standard", "gateway": "gw-7"},
    )
    out, audit = anonymise(record, policy, pseudonymiser())
    assert out["attributes"] == {"zone": "693810202", "owner": pseudonymiser()("Dupont")}
    assert audit.decisions["dropped-undeclared"] == 1 and audit.decisions["dropped-by-policy"] == 1


def test_a_malformed_record_is_refused_without_quoting_it(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, {"version": "1", "fields": {"kwh": "measure"}})
    record = raw({"kwh": [1.0, 2.0], "jean@example.fr": ["x", "y"]})
    record["columns"][1]["strings"] = ["x"]
    with pytest.raises(TransformError) as caught:
        anonymise(record, policy, pseudonymiser())
    assert caught.value.reason == "malformed-record"
    assert "jean@example.fr" not in str(caught.value) and "an undeclared field" in str(caught.value)


def test_redacted_dead_letter_keeps_no_personal_field(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path,
        {"version": "1", "fields": {"pdl": "identifier", "status": "measure", "note": "free-text"}},
    )
    record = raw(
        {
            "pdl": ["0451"] * 2,
            "status": ["jean@example.fr", "ok"],
            "note": ["06 12 34 56 78"] * 2,
            "plate": ["AB-123-CD"] * 2,
        },
        entity="0451",
        attributes={"owner": "Jean Dupont"},
    )
    text = json.dumps(redacted_raw(record, policy, pseudonymiser()))
    for planted in ("jean@example.fr", "06 12 34 56 78", "AB-123-CD", "Jean Dupont", '"0451"'):
        assert planted not in text
    bare = redacted_raw(record, None, None)
    assert (
        bare["columns"] == []
        and bare["entity_id"] == ""
        and bare["attributes"] == {"anonymise.redacted": "fields removed"}
    )
    broken = {**record, "columns": [{**record["columns"][1], "strings": ["jean@example.fr"]}]}
    assert "jean@example.fr" not in json.dumps(redacted_raw(broken, policy, pseudonymiser()))


# -- the shipped policies against the feeds they receive ----------------------------------------
@pytest.fixture(scope="module")
def shipped():
    cities = load_cities(CITIES_DIR)
    return cities, load_policies(cities)


def _through(source, policy, payload: bytes, attributes=None):
    from services.ingest.formats import parse_payload
    from services.ingest.records import raw_record

    parsed = parse_payload(payload, source)
    assert not parsed.rejected, parsed.rejected[:1]
    outputs = []
    for entity in parsed.entities:
        record = raw_record(
            entity,
            source,
            lineage_id="l",
            received_at_us=T0,
            attributes=(attributes or {}).get(entity.entity_id),
        )
        outputs.append((record, *anonymise(record, policy, pseudonymiser())))
    return outputs


def test_every_simulated_feed_is_fully_declared(shipped) -> None:
    from services.ingest.service import reference_attributes
    from services.simulate.generator import SimulationConfig, generate

    cities, policies = shipped
    reference = reference_attributes(cities)
    norm = normaliser(*cities.values())
    seen = set()
    for payload in generate(SimulationConfig(meters=12, days=1), cities):
        source = cities[payload.city].source(payload.source)
        policy = policies.get(payload.city, payload.source)
        attributes = reference.get(f"{payload.city}/{payload.source}")
        personal = bool((source.privacy or {}).get("personal"))
        for record, out, audit in _through(source, policy, payload.body, attributes):
            seen.add((payload.city, payload.source))
            # where the entity is survives anonymise for a station, a road or a car
            # park, and never leaves normalise for a personal source
            positions = [o["position"] for o in norm.normalise(out, {}.get).observations]
            if personal:
                assert positions == [None] * len(positions), payload.source
            elif source.domain != "energy":
                assert positions and None not in positions, payload.source
            assert DROPPED_UNDECLARED not in audit.decisions, (payload.source, audit.decisions)
            assert not audit.incidents, (payload.source, audit.incidents)
            entity_rule = policy.rule(source.entity)
            if entity_rule is None or entity_rule.cls == "identifier":  # meters, not stations
                assert record["entity_id"] not in json.dumps(out)
            if policy.coarsening is not None:
                assert out["row_count"] < record["row_count"]
                assert out["attributes"]["anonymise.coarsened"] == "P1D"
    assert len(seen) == 28  # energy, air, traffic, charging of five cities; bikes, parks, weather


@pytest.mark.parametrize(
    ("city", "source", "sample"),
    [
        ("lyon", "linky-habitat", "linky-tic/enedis_tic2websocket_standard_1frame.txt"),
        ("angers", "linky-batiments", "linky-tic/enedis_tic2websocket_standard_1frame.txt"),
        ("angers", "linky-batiments", "linky-tic/pyteleinfo_historique_tempo_bbr_10frames.txt"),
        ("angers", "linky-batiments", "linky-tic/nokyyz_historique_hchp_rawstream_2.txt"),
        (
            "angers",
            "linky-batiments",
            "linky-tic/openhab_standard_3ph_tempo_producer.index-text.txt",
        ),
        ("paris", "velo-compteurs", "opendata/paris_comptage-velo-donnees-compteurs.csv"),
        (
            "paris",
            "comptages-routiers",
            "opendata/paris_comptages-routiers-permanents_champs-elysees.head300.csv",
        ),
        ("paris", "velib-disponibilite", "opendata/velib_gbfs_station_status.first20stations.json"),
        (
            "paris",
            "enedis-conso-departement",
            "opendata/enedis_consommation-electrique-par-secteur-dactivite-departement.head10.csv",
        ),
        (
            "paris",
            "airparif-qualite-air",
            "smart-data-models/AirQualityObserved.normalized-ld.json",
        ),
        ("lyon", "atmo-aura-qualite-air", "smart-data-models/AirQualityObserved.keyvalues.json"),
        ("lyon", "onlymoov-trafic", "smart-data-models/TrafficFlowObserved.normalized.json"),
        ("nice", "compteurs-communicants", "smart-data-models/ACMeasurement.normalized-ld.json"),
        ("lyon", "eau-compteurs", "smart-data-models/WaterConsumptionObserved.normalized-ld.json"),
        ("nice", "parcs-azur", "smart-data-models/OffStreetParking.normalized.json"),
        ("nice", "meteo-stations", "smart-data-models/WeatherObserved.normalized.json"),
        ("angers", "velo-stations", "smart-data-models/BikeHireDockingStation.keyvalues.json"),
    ],
)
def test_real_samples_pass_their_policy(shipped, city: str, source: str, sample: str) -> None:
    path = SAMPLES / sample
    assert path.exists(), f"fixture missing: {path}"
    cities, policies = shipped
    config = cities[city].source(source)
    results = _through(config, policies.get(city, source), path.read_bytes())
    assert results
    policy = policies.get(city, source)
    for record, out, audit in results:
        undeclared = {c["name"] for c in record["columns"] if policy.rule(c["name"]) is None}
        # The only fields left undeclared on purpose: NGSI-LD "observedBy" relationships
        # (the device that measured: for a home's water meter, an identifier).
        assert {name.rpartition(".")[2] for name in undeclared} <= {"observedBy"}, undeclared
        assert not audit.incidents
        entity_rule = policy.rule(config.entity)
        if entity_rule is None or entity_rule.cls == "identifier":
            assert record["entity_id"] not in json.dumps(out)


def test_linky_sample_meter_ids_never_leave(shipped) -> None:
    cities, policies = shipped
    path = SAMPLES / "linky-tic/pyteleinfo_historique_tempo_bbr_10frames.txt"
    assert path.exists(), f"fixture missing: {path}"
    source = cities["angers"].source("linky-batiments")
    [(record, out, _)] = _through(
        source, policies.get("angers", "linky-batiments"), path.read_bytes()
    )
    adco = record["entity_id"]
    assert adco not in json.dumps(out)
    assert set(values_of(out, "ADCO")) == {out["entity_pseudonym"]}


def test_apply_policy_counts_the_entity_once(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, {"version": "1", "fields": {"kwh": "measure"}})
    applied = apply_policy(raw({"kwh": [1.0, 2.0]}), policy, pseudonymiser())
    assert applied.audit.decisions == {"pseudonymised": 1, "kept": 2}


def test_a_value_hidden_at_a_missing_position_never_leaves(tmp_path: Path) -> None:
    """A missing position's placeholder is meaningless to every reader, so nothing
    looks at it: the safety net scanned present values only and the columns went on
    as they were, placeholder included. A raw record built with personal data there
    carried it to anonymised in clear (failed before placeholders were blanked)."""
    policy = policy_of(
        tmp_path,
        {"version": "1", "fields": {"status": "measure", "kwh": "measure", "n": "measure"}},
    )
    record = raw({"status": ["ok", "ok"], "kwh": [1.0, 2.0], "n": [1, 2]})
    hidden = {"status": "jean.dupont@example.fr", "kwh": 33612345678.0, "n": 33612345678}
    for column in record["columns"]:
        array = columns.ARRAY_OF[column["kind"]]
        column[array][1] = hidden[column["name"]]
        column["missing"] = [1]
    out, _ = anonymise(record, policy, pseudonymiser())
    text = json.dumps(out)
    assert "jean.dupont" not in text and "33612345678" not in text, text
    for column in out["columns"]:
        assert columns.typed(column)[1] == columns.PLACEHOLDER[column["kind"]], column


def test_a_value_hidden_in_a_column_array_of_another_kind_never_leaves(tmp_path: Path) -> None:
    """A column holds its values in the array its kind names; the other arrays are
    empty. A raw record built with personal data in a `double` column's `strings` went
    on with them, to anonymised and to the redacted dead letter on dlq.v1 (found by
    review; failed before columns were rebuilt from their own array)."""
    policy = policy_of(tmp_path, {"version": "1", "fields": {"kwh": "measure"}})
    record = raw({"kwh": [1.5, 2.5]})
    record["columns"][0]["strings"] = ["jean.dupont@example.fr", "06 12 34 56 78"]
    record["columns"][0]["longs"] = [33612345678, 2]
    out, _ = anonymise(record, policy, pseudonymiser())
    letter = redacted_raw(record, policy, pseudonymiser())
    for text in (json.dumps(out), json.dumps(letter)):
        assert "jean.dupont" not in text and "06 12 34" not in text, text
        assert "33612345678" not in text, text
    assert values_of(out, "kwh") == [1.5, 2.5]
