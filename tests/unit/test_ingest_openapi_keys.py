"""The OpenAPI document describes the answers an Idempotency-Key can bring: a key reused
for another body (422 with an error, not an IngestResult) and a malformed key (400)."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest

from services.ingest.idempotency import KeyRefused, check_key
from services.ingest.openapi import openapi_document


def valid(instance: Any, schema: dict[str, Any]) -> bool:
    return jsonschema_rs.validator_for(schema).is_valid(instance)


def response_schema(status: str) -> dict[str, Any]:
    document = openapi_document()
    push = document["paths"]["/v1/cities/{city}/sources/{source}/records"]["post"]
    answer = push["responses"][status]
    schema = answer["content"]["application/json"]["schema"]
    return {**schema, "components": document["components"]}


def test_a_key_reused_for_another_body_matches_the_422_schema() -> None:
    reuse = {"error": "Idempotency-Key already used for a different body: send a new key"}
    assert valid(reuse, response_schema("422"))
    result = {
        "city": "c",
        "source": "s",
        "lineage_id": "l",
        "accepted": 0,
        "rejected": 1,
        "entities": 0,
        "errors": [],
        "errors_truncated": False,
    }
    assert valid(result, response_schema("422"))
    assert not valid({"accepted": 0}, response_schema("422"))


def test_a_malformed_key_is_a_documented_400() -> None:
    with pytest.raises(KeyRefused) as refused:
        check_key("not visible\x01")
    assert refused.value.status == 400
    document = openapi_document()
    push = document["paths"]["/v1/cities/{city}/sources/{source}/records"]["post"]
    assert "Idempotency-Key" in push["responses"]["400"]["description"]
    assert valid({"error": str(refused.value)}, response_schema("400"))
