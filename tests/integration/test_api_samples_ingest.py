"""The open datasets' samples (tests/fixtures/api/) go through the real ingest HTTP
API to the real broker as the common API's whole-node tests send them: every file
accepted whole, one raw record per entity, none set aside."""

from __future__ import annotations

import secrets

import pytest

from services.ingest.core import IngestTopics
from services.ingest.formats import parse_payload
from services.ingest.service import build_core
from services.runtime.cities import SourceConfig, load_cities
from services.runtime.paths import CITIES_DIR
from testkit.api_data import api_samples, push_samples
from testkit.ingest import serve_ingest
from testkit.kafka import read_all

pytestmark = pytest.mark.integration


def test_every_sample_is_accepted_and_lands_on_raw(node, isolated_topics, monkeypatch) -> None:
    cities = load_cities(CITIES_DIR)
    tokens: dict[str, str] = {}
    for city in cities.values():
        for source in city.sources:
            name = source.token.removeprefix("env:")
            tokens[name] = secrets.token_urlsafe(16)
            monkeypatch.setenv(name, tokens[name])

    def token_of(source: SourceConfig) -> str:
        return tokens[source.token.removeprefix("env:")]

    specs, contracts = isolated_topics("raw.v1", "dlq.v1", "raw.dlq.v1", "ingest.state.v1")
    names = IngestTopics(raw=specs["raw.v1"].name, dead_letters=specs["dlq.v1"].name)
    core = build_core(node, contracts, cities, topics=names, instance=names.raw)
    with serve_ingest(core, cities) as running:
        accepted = push_samples(running.url, token_of)

    samples = api_samples()
    assert set(accepted) == {(s.city, s.source) for s in samples}
    entities = 0
    for sample in samples:
        parsed = parse_payload(sample.body(), cities[sample.city].source(sample.source))
        assert accepted[(sample.city, sample.source)] == parsed.accepted_rows > 0
        entities += len(parsed.entities)
    raw = read_all(node, names.raw, expected=entities)
    codec = contracts.codec(names.raw)
    landed = {(r["city"], r["source"]) for r in (codec.decode(m.value()) for m in raw)}
    assert len(raw) == entities and landed == set(accepted)
    assert read_all(node, names.dead_letters, expected=0, settle_s=0.5) == []
