"""The safety net finds personal data hidden in free values, and the shape
pre-filter that makes it cheap never misses what the exact detectors find."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.provisional import domains

from services.anonymise import safety_net
from services.anonymise.safety_net import find, scan_values

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "samples"
SIV = "ABCDEFGHJKLMNPQRSTVWXYZ"  # no I, O, U
DEPARTMENTS = [f"{d:02d}" for d in range(1, 96)] + ["2A", "2B", "971", "974", "976"]
SEPARATOR = st.sampled_from([" ", " : ", ", ", "; ", " (", "\n", " / ", "\t"])
# Free text around the planted value: letters, digits, punctuation, accents.
filler = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


def local_part() -> st.SearchStrategy[str]:
    atom = st.text(
        "abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=12
    )
    return st.lists(atom, min_size=1, max_size=3).map(".".join)


emails = st.builds(lambda user, domain: f"{user}@{domain}", local_part(), domains())


@st.composite
def french_phones(draw) -> str:
    first = draw(st.sampled_from("123456789"))
    pairs = [f"{draw(st.integers(0, 99)):02d}" for _ in range(4)]
    sep = draw(st.sampled_from(["", " ", ".", "-"]))
    body = sep.join([first, *pairs]) if sep else first + "".join(pairs)
    prefix = draw(st.sampled_from(["0", "+33 ", "+33", "0033 ", "+33 (0)"]))
    return prefix + body if prefix != "0" else "0" + body


@st.composite
def plates(draw) -> str:
    if draw(st.booleans()):
        letters = [draw(st.sampled_from(SIV)) for _ in range(4)]
        number = f"{draw(st.integers(1, 999)):03d}"
        sep = draw(st.sampled_from(["-", " ", ""]))
        return f"{letters[0]}{letters[1]}{sep}{number}{sep}{letters[2]}{letters[3]}"
    number = draw(st.integers(1, 9999))
    letters = "".join(
        draw(st.sampled_from("ABCDEFGHJKLMNPRSTVWXYZ")) for _ in range(draw(st.integers(1, 3)))
    )
    return f"{number} {letters} {draw(st.sampled_from(DEPARTMENTS))}"


@st.composite
def ibans(draw) -> str:
    bban = "".join(draw(st.sampled_from("0123456789")) for _ in range(23))
    check = 98 - int("".join(str(int(c, 36)) for c in bban + "FR00")) % 97
    compact = f"FR{check:02d}{bban}"
    if draw(st.booleans()):
        return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))
    return compact


personal = st.one_of(
    emails.map(lambda v: ("email", v)),
    french_phones().map(lambda v: ("phone", v)),
    plates().map(lambda v: ("plate", v)),
    ibans().map(lambda v: ("iban", v)),
)


@settings(max_examples=600, deadline=None)
@given(filler, SEPARATOR, personal, SEPARATOR, filler)
def test_personal_data_hidden_in_free_text_is_found(before, sep1, planted, sep2, after) -> None:
    detector, value = planted
    text = f"{before}{sep1}{value}{sep2}{after}"
    assert detector in find(text), (detector, text)
    positions, counts = scan_values(["ordinary label", text, "ordinary label"])
    assert positions == [1] and counts.get(detector) == 1, (detector, text)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(filler, SEPARATOR, personal, SEPARATOR, filler), min_size=1, max_size=8),
    st.integers(1, 144),
)
def test_a_planted_value_is_removed_wherever_it_sits_in_a_column(planted, rows) -> None:
    texts = [f"{a}{s}{v}{t}{b}" for a, s, (_, v), t, b in planted]
    column = [f"reading {i}" for i in range(rows)]
    where = sorted({(i * 37) % rows for i in range(len(texts))})
    for position, text in zip(where, texts, strict=False):
        column[position] = text
    positions, _ = scan_values(column)
    assert set(where) <= set(positions)


@settings(max_examples=1500, deadline=None)
@given(st.one_of(filler, st.text("0123456789 .-+()@ABCDEFabcdefXYZ", max_size=60)))
def test_the_shape_prefilter_never_misses_what_the_detectors_find(text: str) -> None:
    assume("\x00" not in text)
    assert bool(scan_values([text])[0]) == bool(find(text)), text


def test_checksums_keep_false_alarms_out() -> None:
    assert find("FR76 3000 6000 0112 3456 7890 189") == {"iban"}
    assert find("FR76 3000 6000 0112 3456 7890 188") == set()
    assert find("4111 1111 1111 1111") == {"card"}
    assert find("4111 1111 1111 1112") == set()
    body = 1850578006084
    assert find(f"1 85 05 78 006 084 {97 - body % 97:02d}") == {"nir"}
    assert find(f"1 85 05 78 006 084 {(97 - body % 97 + 1) % 97:02d}") == set()


@pytest.mark.parametrize(
    "value",
    [
        "2025-01-14 08:10:00",
        "2021-09-01T03:00:00+02:00",
        "H250113081000",
        "000012345",
        "20250113081000",  # a compact time is not a delivery point
        "751010203",
        "48.835,2.333",  # a position to 100 m is not precise
        "Station Saint Louis",
        "Saint Jean de Luz",
        "Gare de Lyon Part Dieu",
        "Place de la Comédie",
        "Parque de estacionamento Trindade",
        "rue Denfert Rochereau",  # a street, no number: no one's address
        "12:30:00",
        "1.2.3",
        "urn:ngsi-ld:AirQualityObserved:paris-PA04",
        "  HEURE CREUSE  ",
        "H PLEINE/CREUSE ",
        "X2H20012081",
        "ANG-OM-0193",
        "BX-VER-00412",
        "1736722800",
        '{"type":"Point","coordinates":[2.35,48.85]}',
        "100003096-353242251",
        "003A0001",
    ],
)
def test_ordinary_values_of_city_feeds_are_not_incidents(value: str) -> None:
    assert find(value) == set()
    assert scan_values([value]) == ([], {})


@pytest.mark.parametrize(
    ("value", "detector"),
    [
        ("09876543210123", "prm"),  # a delivery point in a measure field (not a phone)
        ("48.83504,2.33314", "coordinates"),  # a counter's position, to the metre
        ("POINT (2.33314 48.83504)", "coordinates"),
        ("97 avenue Denfert Rochereau", "address"),
        ("3, place Jean Jaurès 49000 Angers", "address"),
        ("Jean Dupont", "name"),
        ("M. Dupont", "name"),
        ("DURAND Sylvie", "name"),
        ("Mme Le Goff", "name"),
        ("M. de Weck", "name"),
        ("Jean de La Fontaine", "name"),
        ("tel 33612345678", "phone"),  # +33 written as a number
        ("10.0.12.7", "ip"),
        ("fe80::1ff:fe23:4567:890a", "ip"),
        ("00-1a-2b-3c-4d-5e", "mac"),
        ("001a.2b3c.4d5e", "mac"),
    ],
)
def test_identifiers_places_and_people(value: str, detector: str) -> None:
    assert detector in find(value)
    assert scan_values([value]) == ([0], {d: 1 for d in find(value)})


def test_real_samples_raise_no_identifier_incident() -> None:
    """Every cell of the open-data exports and Smart Data Models examples is free of
    identifiers (their latitudes once looked like phone numbers: 45.0512477167);
    their places and positions are measured in test_anonymise_safety_net_rates."""
    texts = []
    for path in sorted((SAMPLES / "opendata").glob("*.csv")):
        for line in path.read_text(encoding="utf-8-sig").splitlines()[:60]:
            texts.extend(line.split(";"))
    for path in sorted((SAMPLES / "smart-data-models").glob("*.json")):
        texts.append(path.read_text(encoding="utf-8"))
    assert texts, "fixtures missing: tests/fixtures/samples"
    flagged = [(t[:80], find(t, places=False)) for t in texts if find(t, places=False)]
    assert flagged == []  # coordinates, GeoJSON, codes, timestamps: no false alarm


def test_missing_positions_are_not_reported() -> None:
    positions, counts = scan_values(["a@b.fr", "x", "a@b.fr"], missing=[0])
    assert positions == [2] and counts == {"email": 1}


def test_detector_names() -> None:
    assert safety_net.NAMES == (
        "email",
        "phone",
        "plate",
        "iban",
        "nir",
        "card",
        "ip",
        "mac",
        "prm",
        "name",
        "address",
        "coordinates",
    )


VOCABULARY = st.sampled_from(
    [
        "Jean",
        "Dupont",
        "DURAND",
        "Sylvie",
        "M.",
        "Mme",
        "de",
        "d'",
        "La",
        "le",
        "rue",
        "Rue",
        "avenue",
        "allée",
        "12",
        "bis",
        "49100",
        "Angers",
        "Saint",
        "Gare",
        "des",
        "Lilas",
        "47.473612",
        "-0.551389",
        ",",
        "Chloé",
        "Lefèvre",
        "van",
        "Weck",
        "x",
        "é",
    ]
)


@settings(max_examples=800, deadline=None)
@given(st.lists(VOCABULARY, min_size=1, max_size=7), st.sampled_from([" ", "  ", ", ", "\t"]))
def test_the_prefilter_never_misses_names_addresses_or_positions(words, sep) -> None:
    text = sep.join(words)
    assert bool(scan_values([text])[0]) == bool(find(text)), text
