"""The attacker's view of anonymise: personal data of every kind the wider net
knows, planted in every place a value can hide, must not be readable in the
AnonymisedRecord a partner receives (any spelling, anywhere in the record) when
the source carries personal data; on a source of public infrastructure, declared
place names and positions stay and what the net finds there is reported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from services.anonymise.transform import anonymise
from services.runtime.errors import ConfigError
from testkit.anonymise import policy_of, pseudonymiser, raw, values_of


def _nir(body: int) -> str:
    return f"{body}{97 - body % 97:02d}"


NIR = _nir(1850578006084)
# kind -> the planted text and the spellings an attacker would look for.
PLANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "email": ("jean.dupont@example.fr", ("jean.dupont@example.fr",)),
    "phone": ("06 12 34 56 78", ("06 12 34 56 78",)),
    "name": ("Chloé Lefèvre", ("Chloé Lefèvre", "Lefèvre")),
    "name-civility": ("Mme Zwingli", ("Zwingli",)),
    "name-reversed": ("DURAND Sylvie", ("DURAND",)),
    "address": ("12 bis rue des Lilas, 49100 Angers", ("rue des Lilas",)),
    "ipv4": ("192.168.41.17", ("192.168.41.17",)),
    "ipv6": ("2001:db8:85a3::8a2e:370:7334", ("2001:db8:85a3::8a2e:370:7334",)),
    "mac": ("00:1A:2B:3C:4D:5E", ("00:1A:2B:3C:4D:5E",)),
    "prm": ("09876543210123", ("09876543210123",)),
    "nir": (
        f"{NIR[0]} {NIR[1:3]} {NIR[3:5]} {NIR[5:7]} {NIR[7:10]} {NIR[10:13]} {NIR[13:]}",
        (NIR[7:13],),
    ),
    "coordinates": ("47.473612,-0.551389", ("47.473612",)),
}
PERSONAL = {
    "version": "t-1",
    "fields": {
        "prm": "identifier",
        "statut": "measure",
        "detail": "measure",
        "compteur": "measure",
        "index": "measure",
        "iris": {"class": "quasi-identifier", "prefix": 5},
    },
    "attributes": {"zone": "measure"},
}


def _record(plant: str) -> dict[str, Any]:
    record = raw(
        {
            "prm": ["04512345678901"] * 3,
            "statut": ["ok", f"rappeler {plant} demain", "ok"],  # a kept string value
            "detail": [  # nested JSON in a value, the plant as a value and as a key
                json.dumps({"contact": {"qui": plant}}, ensure_ascii=False),
                json.dumps({plant: 3}, ensure_ascii=False),
                json.dumps({"etat": "ok"}),
            ],
            "iris": [f"491{k:06d}" for k in range(3)],
            plant: ["x", "y", "z"],  # an undeclared field named by the plant
        },
        attributes={"zone": f"secteur {plant}", plant: "1"},
    )
    record["entity_type"] = f"Compteur {plant}"
    return record


def _clear_text(record: dict[str, Any]) -> str:
    """Everything a partner receives, as one text (values, keys, names)."""
    return json.dumps(record, ensure_ascii=False)


@pytest.mark.parametrize("kind", sorted(PLANTS))
def test_no_planted_value_is_readable_in_any_placement(tmp_path: Path, kind: str) -> None:
    plant, spellings = PLANTS[kind]
    out, audit = anonymise(_record(plant), policy_of(tmp_path, PERSONAL), pseudonymiser())
    text = _clear_text(out)
    assert [s for s in spellings if s in text] == [], kind
    assert values_of(out, "statut") == ["ok", None, "ok"]
    assert values_of(out, "detail")[2] == '{"etat": "ok"}'  # its clean neighbour stays
    assert audit.decisions["removed-by-safety-net"] >= 4  # statut, 2 x detail, zone
    assert out["entity_type"] is None


@pytest.mark.parametrize(
    ("number", "detector"),
    [(int(NIR), "nir"), (25123456789012, "prm"), (33612345678, "phone")],
)
def test_identifiers_sent_as_numbers_are_removed(
    tmp_path: Path, number: int, detector: str
) -> None:
    record = raw({"prm": ["04512345678901"] * 3, "index": [1200, number, 1300]})
    out, audit = anonymise(record, policy_of(tmp_path, PERSONAL), pseudonymiser())
    assert values_of(out, "index") == [1200, None, 1300]
    assert str(number) not in _clear_text(out)
    assert audit.incidents == {detector: 1}


def test_a_float_column_holding_a_nir_is_removed(tmp_path: Path) -> None:
    record = raw({"prm": ["04512345678901"] * 2, "index": [0.5, float(int(NIR))]})
    out, audit = anonymise(record, policy_of(tmp_path, PERSONAL), pseudonymiser())
    assert values_of(out, "index") == [0.5, None]
    assert audit.incidents == {"nir": 1}


PUBLIC = {
    "version": "t-1",
    "places": ["name", "address", "location"],
    "fields": {
        "name": "measure",
        "address": "measure",
        "location": "measure",
        "status": "measure",
        "free": "measure",
    },
}


def test_public_sources_keep_declared_places_and_report_the_rest(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, PUBLIC)
    assert not policy.personal
    location = json.dumps({"type": "Point", "coordinates": [-0.551389, 47.473612]})
    record = raw(
        {
            "name": ["Station Victor Hugo", "Place Jean Jaurès"],
            "address": ["12 rue Victor Hugo, 49100 Angers", "3 place Jean Jaurès"],
            "location": [location, location],
            "status": ["en service", "fermé: voir Mme Zwingli"],
            "free": ["contact jean.dupont@example.fr", "ok"],
        }
    )
    out, audit = anonymise(record, policy, pseudonymiser())
    assert values_of(out, "name") == ["Station Victor Hugo", "Place Jean Jaurès"]
    assert values_of(out, "address") == ["12 rue Victor Hugo, 49100 Angers", "3 place Jean Jaurès"]
    assert values_of(out, "location") == [location, location]
    assert values_of(out, "status") == ["en service", "fermé: voir Mme Zwingli"]  # reported
    assert values_of(out, "free") == [None, "ok"]  # an e-mail is never a place
    assert audit.decisions["reported-by-safety-net"] == 1
    assert audit.decisions["removed-by-safety-net"] == 1
    assert audit.incidents == {"name": 1, "email": 1}


def test_a_source_with_identifiers_carries_personal_data_unless_it_says_otherwise(
    tmp_path: Path,
) -> None:
    assert policy_of(tmp_path, PERSONAL).personal
    assert not policy_of(tmp_path, {"version": 1, "fields": {"n": "measure"}}).personal
    # (a personal source also needs consent or daily coarsening: see test_anonymise_daily)
    forced = {"version": 1, "personal": True, "consent": True, "fields": {"n": "measure"}}
    assert policy_of(tmp_path, forced).personal
    public = {"version": 1, "personal": False, "consent": True, "fields": {"n": "measure"}}
    assert not policy_of(tmp_path, public).personal


@pytest.mark.parametrize(
    ("privacy", "key"),
    [
        ({**PERSONAL, "places": ["statut"]}, "places"),  # a personal source exempts nothing
        ({**PUBLIC, "places": ["nowhere"]}, "places[0]"),
        ({**PUBLIC, "personal": "no"}, "personal"),
    ],
)
def test_place_declarations_are_checked(tmp_path: Path, privacy: dict, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        policy_of(tmp_path, privacy)
    assert f"privacy.{key}" in str(caught.value)
