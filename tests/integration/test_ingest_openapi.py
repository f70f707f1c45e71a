"""The ingest API against its own OpenAPI document (/openapi.json), fuzzed by
Schemathesis on a live ingest with the real broker: whatever a client sends
(generated from the document, valid and invalid), no 5xx but a Kafka 503, and
every answer has a status, headers and a JSON body the document declares."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.ingest.core import IngestTopics
from services.ingest.service import build_core
from services.runtime.cities import load_cities
from testkit.ingest import serve_ingest

pytestmark = pytest.mark.integration

CITY = """
code: fuzzville
name: Fuzzville
timezone: Europe/Paris
sources:
  - {id: meters, format: ndjson, dataset: load-curves, domain: energy, entity: meter,
     token: "env:FUZZ_METERS", numeric: [wh]}
  - {id: sheet, format: csv, dataset: counts, domain: mobility, entity: id,
     token: "env:FUZZ_SHEET"}
"""
TOKENS = {"FUZZ_METERS": "tok-fuzz-meters", "FUZZ_SHEET": "tok-fuzz-sheet"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture()
def live(node, isolated_topics, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for name, value in TOKENS.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "fuzzville.yaml").write_text(CITY)
    cities = load_cities(tmp_path)
    specs, contracts = isolated_topics("raw.v1", "dlq.v1", "raw.dlq.v1", partitions=1)
    topics = IngestTopics(raw=specs["raw.v1"].name, dead_letters=specs["dlq.v1"].name)
    core = build_core(node, contracts, cities, topics=topics, instance=specs["raw.v1"].name)
    with serve_ingest(core, cities, max_body=256 * 1024) as running:
        yield running


def test_every_answer_matches_the_openapi_document(live) -> None:
    document = httpx.get(f"{live.url}/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} == {
        "POST /v1/cities/{city}/sources/{source}/records",
        "GET /v1/cities",
        "GET /healthz",
        "GET /metrics",
        "GET /openapi.json",
    }
    push = next(op for op in operations if op.method.upper() == "POST")
    # Pushes weigh three times the other routes: they are where input is parsed.
    cases = st.one_of(
        *(op.as_strategy(generation_mode=mode) for op in operations for mode in GenerationMode),
        *(push.as_strategy(generation_mode=mode) for mode in GenerationMode for _ in range(2)),
    )
    # Most pushes go to a real source with its token (or another's, or none): without
    # them every push would stop at 401 and the parsers would never be reached.
    sender = st.sampled_from(
        [
            (None, None),
            (None, "tok-fuzz-meters"),
            (("fuzzville", "meters"), "tok-fuzz-meters"),
            (("fuzzville", "meters"), "tok-fuzz-meters"),
            (("fuzzville", "sheet"), "tok-fuzz-sheet"),
            (("fuzzville", "sheet"), "tok-fuzz-meters"),
        ]
    )
    # Codings beside the document's (its enum only says what is accepted).
    coding = st.sampled_from([None, None, "gzip", "deflate", "br", "zstd", "compress"])
    seen: set[int] = set()

    @settings(
        max_examples=80,
        deadline=None,
        derandomize=True,  # the same cases at every run: a CI failure is reproducible
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases, sender=sender, coding=coding)
    def exchange(case, sender, coding) -> None:
        where, token = sender
        if where is not None and "city" in (case.path_parameters or {}):
            case.path_parameters = {"city": where[0], "source": where[1]}
            if coding is not None:
                case.headers = {**(case.headers or {}), "Content-Encoding": coding}
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = case.call(base_url=live.url, headers=headers, timeout=30)
        seen.add(response.status_code)
        if response.status_code in (200, 422) and "lineage_id" in response.text:
            seen.add(0)  # a batch went through a parser
        case.validate_response(response, checks=CHECKS, headers=headers)

    exchange()
    # The run reached the parsers and the refusals, not only 401s.
    assert {0, 401, 403, 404, 415} <= seen, seen
