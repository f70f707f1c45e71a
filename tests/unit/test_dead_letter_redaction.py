"""Dead letters of the raw zone without a broker: a reject splits into raw letters
(whole, chunked, full error) and one redacted letter (no value); parser messages
quote no value; the warehouse sink never lands an original of the raw zone."""

from __future__ import annotations

import json

import pytest

from services.ingest.formats import parse_payload
from services.ingest.pseudonyms import LetterPseudonyms
from services.ingest.records import rejection_letters
from services.privacy.keys import KeyStore
from services.publish.rows import Landed, dead_letters_table
from services.publish.service import default_routes
from services.runtime import dlq
from services.runtime.cities import CsvOptions, SourceConfig

METER = "12345678901234"
EMAIL = "marie.curie@example.fr"


def csv_source(**extra) -> SourceConfig:
    return SourceConfig(
        city="c",
        id="s",
        format="csv",
        dataset="d",
        domain="energy",
        entity="prm",
        token="env:T",
        csv=CsvOptions(separator=";", decimal=","),
        numeric=("kwh",),
        **extra,
    )


def test_a_reject_splits_into_whole_chunks_and_one_redacted_letter() -> None:
    original = (METER + ";" + EMAIL + "\n").encode() * 2_000  # 74 KB
    reject = dlq.Reject(
        stage="ingest",
        reason="bad-number",
        message="field 'kwh' is not a number",
        detail=f"field 'kwh': {EMAIL!r} is not a number",
        original=original,
        city="c",
        source="s",
        position="line 3",
        fields=("kwh",),
        pseudonyms=("pseudo",),
    )
    raw, redacted = dlq.split(reject, chunk_bytes=10_000, salt=b"s" * 16)
    assert len(raw) == 8 and [r["chunk"] for r in raw] == list(range(8))
    assert dlq.reassemble(list(reversed(raw))) == original
    assert all(EMAIL in r["message"] for r in raw)  # the full error, in the raw zone
    text = json.dumps({k: v for k, v in redacted.items() if k != "digest_salt"}, default=str)
    assert METER not in text and EMAIL not in text and redacted["original_value"] is None
    assert redacted["letter_id"] == raw[0]["letter_id"] and redacted["letter_id"] in text
    assert redacted["original_size"] == len(original) and redacted["digest_salt"] is None
    # The digest is salted: without the raw letter's salt, guessing the line is no use.
    assert redacted["original_sha256"] != dlq.salted_sha256(b"", original)
    assert redacted["original_sha256"] == dlq.salted_sha256(raw[0]["digest_salt"], original)
    with pytest.raises(ValueError):
        dlq.reassemble(raw[:-1])


@pytest.mark.parametrize(
    ("payload", "declared"),
    [
        (f"prm;horodate;kwh\n{METER};t;{EMAIL}\n", ["kwh"]),  # bad number
        (f"prm,horodate,kwh\n{METER},t,1\n", ["prm"]),  # wrong separator: no entity column
        (f"{METER};{EMAIL};{METER}\n{METER};t;1\n", []),  # no header: a data line
        (f"{EMAIL};{METER};x\n{METER};t;1\n", ["prm"]),  # the same, no repeated cell
        (f'prm;horodate;kwh\n{METER};"{EMAIL};1\n', []),  # unbalanced quote
    ],
)
def test_csv_rejections_quote_no_value(payload: str, declared: list[str]) -> None:
    source = csv_source()
    result = parse_payload(payload.encode(), source)
    assert result.rejected
    for rejection in result.rejected:
        _, letter = rejection_letters(rejection, source, "batch")
        for text in (rejection.message, letter["message"]):
            assert METER not in text and EMAIL not in text, text
        assert letter["field_names"] == declared


def test_undeclared_field_names_are_withheld() -> None:
    source = SourceConfig(
        city="c",
        id="s",
        format="ndjson",
        dataset="d",
        domain="energy",
        entity="meter",
        token="env:T",
        numeric=("wh",),
    )
    line = json.dumps({"meter": METER, "wh": "x", EMAIL: 1}).encode()
    [rejection] = parse_payload(line, source).rejected
    _, letter = rejection_letters(rejection, source, "batch", pseudonymise=lambda v: "p-" + v[:0])
    assert letter["field_names"] == ["wh", "meter"] and EMAIL not in json.dumps(letter["message"])
    assert letter["entity_pseudonyms"] == ["p-"] and "1 undeclared" in letter["message"]
    _, without_key = rejection_letters(rejection, source, "batch")
    assert without_key["entity_pseudonyms"] == []  # no key: no id at all, never a bare hash


def test_the_warehouse_never_lands_an_original_of_the_raw_zone() -> None:
    assert dlq.RAW_DLQ_TOPIC not in {route.topic for route in default_routes()}
    reject = dlq.Reject(stage="ingest", reason="r", message="m", original=METER.encode())
    raw, redacted = dlq.split(reject)
    legacy = dlq.dead_letter(stage="ingest", reason="r", message=METER, original_value=b"x")
    after = dlq.dead_letter(stage="normalise", reason="r", message="m", original_value=b"ok")
    batch = [Landed(r, "dlq.v1", 0, i) for i, r in enumerate([*raw, redacted, legacy, after])]
    table = dead_letters_table(batch).to_pylist()
    assert [row["original_value"] for row in table] == ["", "", "", "ok"]
    assert all(METER not in row["message"] for row in table)
    assert [row["original_size"] for row in table] == [14, 14, 1, 2]


def test_letter_pseudonyms_are_keyed_or_absent(tmp_path) -> None:
    secret = {
        "CITEPLUS_PSEUDONYM_SECRET_C": "EYme5H3OAV7MydrVoXvpqiw4N3grZ-HN6qYFjP2IoLJ"
    }  # random, test only
    keyed = LetterPseudonyms(KeyStore(tmp_path, environ=secret)).for_city("c", 0)
    assert keyed is not None
    assert keyed(METER) == KeyStore(tmp_path, environ=secret).pseudonymiser("c", "1970-01")(METER)
    assert METER not in keyed(METER) and len(keyed(METER)) == 24
    # No keyring for the city: no id at all (never a bare hash of the meter id).
    assert LetterPseudonyms(KeyStore(tmp_path, environ={})).for_city("c", 0) is None
    assert LetterPseudonyms(None).for_city("c", 0) is None


def test_a_raw_letter_stays_producible_whatever_its_error_text() -> None:
    reject = dlq.Reject(
        stage="anonymise", reason="r", message="m", detail="x" * 10**6, original=b""
    )
    [raw], _ = dlq.split(reject)
    assert len(raw["message"]) < dlq.MAX_RAW_MESSAGE_CHARS + 100 and "cut" in raw["message"]


def test_letter_pseudonyms_use_the_city_s_own_month(tmp_path) -> None:
    """The same key epoch as anonymise's, the city's local month: at 2025-11-30 14:00 UTC
    it is already December in Nouméa (UTC+11), so a letter names the meter as the
    December records of that city do."""
    secret = {"CITEPLUS_PSEUDONYM_SECRET_NC": "Q2v8mZJt3xR9bK1yWcLpE7nHsA4fD6gUoTiVjXzM0qN"}
    at = 1_764_511_200 * 1_000_000  # 2025-11-30T14:00:00Z
    keys = KeyStore(tmp_path, environ=secret)
    letters = LetterPseudonyms(keys, {"nc": "Pacific/Noumea"}).for_city("nc", at)
    assert letters is not None
    assert letters(METER) == keys.pseudonymiser("nc", "2025-12")(METER)
    assert letters(METER) != keys.pseudonymiser("nc", "2025-11")(METER)
