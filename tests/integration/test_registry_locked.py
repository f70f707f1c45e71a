"""The schema registry holds the contracts partners decode with: after provisioning,
nobody (the node's next release included) can register an incompatible schema
under a topic's subject, and a subject found unprotected at start is fixed.

Against the real registry, on subjects of their own (``test.<random>.`` prefix).
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import replace

import httpx
import pytest

from services.runtime.config import NodeConfig
from services.runtime.errors import SchemaError
from services.runtime.provisioning import connect_contracts
from services.runtime.registry import SchemaRegistry
from services.runtime.schemas import schema_for
from services.runtime.topics import TopicSpec, load_topics

pytestmark = pytest.mark.integration

CCOMPAT_JSON = {"Content-Type": "application/vnd.schemaregistry.v1+json"}
# What an outsider (or a careless release) would write: same record, fields renamed.
HOSTILE = {
    "type": "record",
    "name": "Observation",
    "namespace": "citeplus.v1",
    "fields": [{"name": "anything", "type": "string"}],
}


def isolated(name: str) -> TopicSpec:
    return replace(load_topics()[name], name=f"test.{uuid.uuid4().hex[:8]}.{name}")


def post_schema(node: NodeConfig, subject: str, schema: dict) -> httpx.Response:
    return httpx.post(
        f"{node.registry.url}/subjects/{subject}/versions",
        json={"schema": json.dumps(schema), "schemaType": "AVRO"},
        headers=CCOMPAT_JSON,
        timeout=10,
    )


def level(node: NodeConfig, subject: str) -> str | None:
    with SchemaRegistry(node.registry.url) as registry:
        return registry.compatibility(subject)


def test_an_incompatible_schema_is_refused_after_provisioning(node: NodeConfig) -> None:
    spec = isolated("public.observations.v1")
    connect_contracts(node, [spec])
    assert level(node, spec.subject) == "BACKWARD_TRANSITIVE"

    answer = post_schema(node, spec.subject, HOSTILE)
    assert answer.status_code == 409, answer.text

    # The node's own schema is still the latest, and registering it again is a no-op.
    with SchemaRegistry(node.registry.url) as registry:
        latest = registry.latest(spec.subject)
    assert json.loads(latest.text) == schema_for("Observation").expanded
    assert connect_contracts(node, [spec]).codec(spec.name).schema_id == latest.schema_id


def test_a_subject_left_at_none_is_raised_at_start_and_logged(
    node: NodeConfig, caplog: pytest.LogCaptureFixture
) -> None:
    spec = isolated("public.observations.v1")
    # A subject as an older node (or a registry reset) left it: registered, level NONE.
    first = post_schema(node, spec.subject, schema_for("Observation").expanded)
    assert first.status_code == 200, first.text
    with SchemaRegistry(node.registry.url) as registry:
        registry.set_compatibility(spec.subject, "NONE")
    assert level(node, spec.subject) == "NONE"

    with caplog.at_level(logging.WARNING, logger="services.runtime.registry"):
        connect_contracts(node, [spec])
    assert level(node, spec.subject) == "BACKWARD_TRANSITIVE"
    fixed = [r for r in caplog.records if getattr(r, "subject", None) == spec.subject]
    assert fixed and fixed[0].found == "NONE"
    assert post_schema(node, spec.subject, HOSTILE).status_code == 409


def test_start_refuses_a_subject_polluted_while_unprotected(node: NodeConfig) -> None:
    """An incompatible version slipped in while the subject was at NONE: the node does
    not start on it silently; the error says where to look."""
    spec = isolated("public.observations.v1")
    assert post_schema(node, spec.subject, HOSTILE).status_code == 200
    with pytest.raises(SchemaError, match="incompatible") as caught:
        connect_contracts(node, [spec])
    assert spec.subject in str(caught.value)
