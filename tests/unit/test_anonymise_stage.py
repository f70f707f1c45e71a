"""The stage without a broker: outputs, audit records per batch, metrics only
after commit, dead letters without personal data."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.anonymise.policy import PolicySet
from services.anonymise.stage import AnonymiseStage
from services.privacy.keys import KeyStore
from services.runtime.errors import RejectedInput
from services.runtime.metrics import ServiceMetrics
from services.runtime.processor import InputMeta
from testkit.anonymise import T0, policy_of, raw
from testkit.fixture_secrets import fixture_secret

META = InputMeta("raw.v1", 0, 0, b"testville|meters|x", 0)
SECRET = fixture_secret("stage")


@pytest.fixture()
def stage(tmp_path: Path) -> AnonymiseStage:
    policy = policy_of(
        tmp_path,
        {
            "version": "4",
            "fields": {
                "meter": "identifier",
                "kwh": "measure",
                "status": "measure",
                "note": "free-text",
            },
        },
    )
    keys = KeyStore(tmp_path, environ={"CITEPLUS_PSEUDONYM_SECRET_TESTVILLE": SECRET})
    return AnonymiseStage(
        PolicySet([policy]), keys, metrics=ServiceMetrics("anonymise"), clock=lambda: 1_000.0
    )


def record(entity: str = "m1", status: str = "ok") -> dict:
    return raw(
        {"meter": [entity] * 3, "kwh": [1.0, 2.0, 3.0], "status": [status] * 3, "note": ["hi"] * 3},
        entity=entity,
    )


def metrics_text(stage: AnonymiseStage) -> str:
    return stage.metrics.exposition().decode()  # type: ignore[union-attr]


def test_outputs_then_one_audit_record_per_source_and_batch(stage: AnonymiseStage) -> None:
    [emit] = list(stage.process(record("m1"), META))
    assert emit.topic == "anonymised.v1" and emit.readings == 3
    assert emit.key == f"testville|{emit.value['entity_pseudonym']}"
    list(stage.process(record("m2", status="mail me: a.b@example.fr"), META))
    [audit] = stage.end_batch()
    assert audit.topic == "audit.v1" and audit.key == "testville|meters"
    value = audit.value
    assert value["records"] == 2 and value["rows"] == 6
    assert value["policy_version"] == "4" and value["key_epoch"] == "2025-01"
    assert value["decisions"] == {
        "pseudonymised": 8,
        "kept": 12,
        "removed-free-text": 6,
        "removed-by-safety-net": 3,
    }
    assert value["incidents"] == {"email": 3}
    assert value["lineage_ids"] == ["lineage-1"] and value["at"] == 1_000_000_000
    assert 'decision="kept"' not in metrics_text(stage)  # counted only once committed
    stage.on_commit()
    text = metrics_text(stage)
    assert (
        'citeplus_anonymise_decisions_total{city="testville",decision="kept",source="meters"} 12.0'
        in text
    )
    assert (
        'citeplus_anonymise_incidents_total{city="testville",detector="email",source="meters"} 3.0'
        in text
    )
    assert stage.end_batch() == []  # the next batch starts from zero


def test_an_aborted_batch_is_counted_once_when_processed_again(stage: AnonymiseStage) -> None:
    list(stage.process(record(), META))
    stage.end_batch()
    stage.on_abort()
    list(stage.process(record(), META))
    [audit] = stage.end_batch()
    stage.on_commit()
    assert audit.value["records"] == 1
    assert 'decision="kept",source="meters"} 6.0' in metrics_text(stage)


def test_an_output_that_was_not_encoded_is_not_counted(stage: AnonymiseStage) -> None:
    outputs = stage.process(record(), META)
    next(outputs)  # the runner failed to encode this one and never resumed the generator
    assert stage.end_batch() == []


def test_unknown_source_and_malformed_records_are_rejected_safely(stage: AnonymiseStage) -> None:
    with pytest.raises(RejectedInput) as caught:
        list(stage.process({**record(), "source": "nope"}, META))
    assert caught.value.reason == "no-policy"
    bad = record(entity="jean@example.fr")
    bad["columns"][1]["doubles"] = [1.0]
    with pytest.raises(RejectedInput) as caught:
        list(stage.process(bad, META))
    assert caught.value.reason == "malformed-record" and "jean@example.fr" not in str(caught.value)


def test_an_unexpected_error_is_reported_without_its_text(stage: AnonymiseStage) -> None:
    weird = record()
    weird["columns"][0]["kind"] = "string"
    weird["columns"][0]["strings"] = None  # type: ignore[assignment]
    with pytest.raises(RejectedInput) as caught:
        list(stage.process(weird, META))
    assert caught.value.reason in ("anonymise-error", "malformed-record")


def test_dead_letters_carry_no_personal_field(stage: AnonymiseStage, tmp_path: Path) -> None:
    from services.runtime.codec import TopicCodec

    class Codec:  # what redact needs of the raw topic's codec: encode
        def encode(self, value: dict) -> bytes:
            import json

            return json.dumps(value).encode()

    stage._raw_codec = Codec()  # type: ignore[assignment]
    assert TopicCodec  # the real one is exercised by the integration test
    planted = record(entity="jean@example.fr", status="06 12 34 56 78")
    text = stage.redact(b"original", planted).decode()
    assert "jean@example.fr" not in text and "06 12 34 56 78" not in text and '"hi"' not in text
    assert stage.redact(b"undecodable", None) is None
    key = stage.redact_key(b"testville|meters|jean@example.fr", planted)
    assert key is not None and b"jean" not in key and key.startswith(b"testville|meters|")
    unknown = {**planted, "city": "elsewhere"}
    assert "jean@example.fr" not in stage.redact(b"x", unknown).decode()
    assert stage.redact_key(b"k", unknown) is None


def test_rows_without_a_reading_time_take_the_epoch_of_reception(stage: AnonymiseStage) -> None:
    # No event times and no mapped time field: received_at decides (epochs.py); rows
    # with a time follow their own (tests/unit/test_anonymise_epochs.py).
    [january] = list(stage.process(record(), META))
    [february] = list(stage.process({**record(), "received_at": T0 + 31 * 86_400_000_000}, META))
    assert january.value["key_epoch"] == "2025-01" and february.value["key_epoch"] == "2025-02"
    assert january.value["entity_pseudonym"] != february.value["entity_pseudonym"]
    assert len(stage.end_batch()) == 2  # one audit record per epoch
