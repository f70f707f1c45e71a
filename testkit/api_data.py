"""The open datasets' sample records (tests/fixtures/api/) and how to send them.

``tests/fixtures/api/<city>/<source>.<ext>`` holds a few records of every source
the sample city files open, in the source's own format (provenance in the
folder's README.md). Tests of the common API push them through a LocalNode's
ingest (:func:`push_api_samples`) and compare what the API answers with what the
pipeline makes of them offline (:func:`expected_observations`: ingest's parser,
the city's privacy policy, normalise; no broker).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import httpx

from services.anonymise.policy import load_policies
from services.anonymise.transform import anonymise
from services.ingest.formats import parse_payload
from services.ingest.records import raw_record
from services.normalise.mapping import compile_city
from services.normalise.transform import Normaliser
from services.normalise.vocabulary import Vocabulary, load_vocabulary
from services.privacy.pseudonym import Pseudonymiser
from services.runtime.cities import CityConfig, SourceConfig, load_cities
from services.runtime.dev_secrets import dev_env_file, read_env_file
from services.runtime.paths import CITIES_DIR
from services.simulate.formats import CONTENT_TYPES
from testkit.fixtures import FIXTURES
from testkit.local_node import LocalNode

API_DATA = FIXTURES / "api"
RECEIVED_US = 1_767_225_600_000_000  # 2026-01-01: after every sample's readings


@dataclass(frozen=True)
class ApiSample:
    """One file of sample records: the city and source it is sent to."""

    city: str
    source: str
    path: Path

    def body(self) -> bytes:
        return self.path.read_bytes()


def api_samples(cities: Iterable[str] | None = None) -> list[ApiSample]:
    """Every sample file (of these cities), in a stable order."""
    wanted = set(cities) if cities is not None else None
    found = []
    for path in sorted(API_DATA.glob("*/*.*")):
        city = path.parent.name
        if wanted is None or city in wanted:
            found.append(ApiSample(city, path.name.split(".", 1)[0], path))
    return found


def node_token(node: LocalNode, source: SourceConfig) -> str:
    """The source's token on a LocalNode (its dev secrets, written by ``citeplus up``)."""
    name = source.token.removeprefix("env:")
    tokens = {**read_env_file(dev_env_file(node.state)), **node.secrets}
    if not source.token.startswith("env:") or name not in tokens:
        raise RuntimeError(
            f"{source.city}/{source.id}: no token on this node for {source.token} "
            "(the node's city files must use env: tokens; start it with `citeplus up`)"
        )
    return tokens[name]


def push_api_samples(
    node: LocalNode, *, cities: Iterable[str] | None = None, city_files: Path = CITIES_DIR
) -> dict[tuple[str, str], int]:
    """Send every sample (of these cities) to a LocalNode's ingest: rows accepted per
    (city, source). See :func:`push_samples`."""
    return push_samples(
        node.ingest_url,
        lambda source: node_token(node, source),
        cities=cities,
        city_files=city_files,
    )


def push_samples(
    ingest_url: str,
    token_of: Callable[[SourceConfig], str],
    *,
    cities: Iterable[str] | None = None,
    city_files: Path = CITIES_DIR,
    timeout_s: float = 60.0,
) -> dict[tuple[str, str], int]:
    """Send every sample to an ingest service; the rows accepted per (city, source).

    Raises if ingest refuses a file or rejects a row: the samples are valid, so a
    refusal is a failure of the node (or of a city file), never something to skip."""
    configs = load_cities(city_files)
    accepted: dict[tuple[str, str], int] = {}
    with httpx.Client(timeout=timeout_s) as client:
        for sample in api_samples(cities):
            source = configs[sample.city].source(sample.source)
            response = client.post(
                f"{ingest_url}/v1/cities/{sample.city}/sources/{sample.source}/records",
                content=sample.body(),
                headers={
                    "Authorization": f"Bearer {token_of(source)}",
                    "Content-Type": CONTENT_TYPES[source.format],
                    "Idempotency-Key": f"api-sample-{uuid.uuid4().hex}",
                },
            )
            answer = response.json() if response.content else {}
            if response.status_code != 200 or answer.get("rejected"):
                raise RuntimeError(
                    f"ingest refused {sample.path.name} for {sample.city}/{sample.source}: "
                    f"HTTP {response.status_code} {response.text[:300]}"
                )
            accepted[(sample.city, sample.source)] = int(answer.get("accepted", 0))
    return accepted


@cache
def _vocabulary() -> Vocabulary:
    return load_vocabulary()


def expected_observations(
    sample: ApiSample, cities: dict[str, CityConfig] | None = None
) -> list[dict[str, Any]]:
    """What the pipeline publishes for a sample, computed offline: ingest's parser,
    the source's privacy policy (pseudonyms under a fixed test key: compare values,
    times and positions, not pseudonyms, with a node's), then normalise."""
    cities = cities or load_cities(CITIES_DIR)
    city = cities[sample.city]
    source = city.source(sample.source)
    policy = load_policies({city.code: city}).get(city.code, source.id)
    vocabulary = _vocabulary()
    normaliser = Normaliser(
        vocabulary, {(city.code, sid): m for sid, m in compile_city(city, vocabulary).items()}
    )
    parsed = parse_payload(sample.body(), source)
    if parsed.rejected:
        raise ValueError(f"{sample.path.name}: ingest rejects {parsed.rejected[:1]}")
    pseudonymise = Pseudonymiser(b"api-samples-test-key-32-bytes!!!", "2025-01")
    state: dict[str, Any] = {}
    out = []
    for entity in parsed.entities:
        raw = raw_record(entity, source, lineage_id=sample.path.name, received_at_us=RECEIVED_US)
        record, _ = anonymise(raw, policy, pseudonymise)
        outcome = normaliser.normalise(record, state.get)
        state.update(outcome.states)
        out += outcome.observations
    return out
