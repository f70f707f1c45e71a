"""The common API on two live nodes with certificates (lyon, paris): each node its
federation server on a seeded chDB warehouse and its ``api`` service reading every
city, its own included, through the federation API with the node's certificate.

Against clients not written here: Orange's ``ngsildclient`` (a real NGSI-LD client,
in an isolated environment) lists types, reads entities and temporal values, every
value held to the warehouse (read back with SQL when it was seeded); Schemathesis
fuzzes every operation of the API's own /openapi.json; a headless Chromium renders
the documentation page the API serves. Across the federation: one request answers
for both cities; a hung peer and a stopped one give a partial answer with their
status, never a hang; keys bound to two partners each see their own share and never
the other's; an internal dataset never appears; and, the attacker's view, anonymous
callers (or a key without a partner) never get entity-level data of a personal
source, not even one a city file marked open by mistake.

Lyon and paris share the household meters (personal) with enedis and the car parks
with keolis (naming each other too: a peer relaying a partner only narrows); both
open air quality and traffic; water is internal; each city's ``linky-open`` source
is personal but marked open. Paris also names two peers that never answer: "nice"
accepts connections and says nothing, "bordeaux" is a port where nothing listens.
The DCAT-AP catalogue (``GET /catalog``) is read by the public and by each partner's
key in JSON-LD and Turtle: valid against the official shapes, nothing internal, no
partner learning another's share or topic. One world for the module: its start is
most of its time.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rdflib.compare import isomorphic
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from testkit.api_checks import (
    BASE,
    ENERGY_TYPE,
    TYPE_OF,
    call,
    entities,
    expected_rows,
    ids,
    ngsi_id,
    peer_outcomes,
)
from testkit.api_nodes import silent_peer, start_world
from testkit.api_world import ODD_KEY, OPEN_SOURCES, PARTNER_A, PARTNER_B, T0_US, position
from testkit.catalog_checks import (
    graph_from_jsonld,
    graph_from_turtle,
    partner_only_keys,
    shacl_report,
    specification_problems,
)
from testkit.ngsild_venv import run_probe
from testkit.portal_browser import render

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

PERSONAL = ("meters", "linky-open", "water")
CITIES = ("lyon", "paris")
START = "2025-01-12T23:00:00Z"  # T0_US: the seeded readings' first day and the next
END = "2025-01-14T23:00:00Z"
BETWEEN = {"timerel": "between", "timeAt": START, "endTimeAt": END}
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=20000",  # let the page fetch /openapi.json and draw it
]


def closed_port() -> int:
    """A loopback port where nothing listens (a stopped node)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def world(infrastructure, tmp_path_factory):
    hung = silent_peer()
    extra = {
        "paris": [
            {"code": "nice", "address": f"127.0.0.1:{hung.getsockname()[1]}"},
            {"code": "bordeaux", "address": f"127.0.0.1:{closed_port()}"},
        ]
    }
    started = start_world(
        tmp_path_factory.mktemp("api-nodes"),
        ("lyon", "paris"),
        infrastructure=infrastructure,
        extra_peers=extra,
        peer_timeout_s=2.0,
        keys={  # issued by lyon: a key is valid on the node that issued it only
            "lyon": {
                "A": ("meter-dashboard", PARTNER_A),
                "B": ("parking-app", PARTNER_B),
                "plain": ("citizen-map", None),
            }
        },
    )
    try:
        yield started
    finally:
        started.stop()
        hung.close()


@pytest.fixture(scope="module")
def keys(world) -> dict[str, str]:
    return world.keys["lyon"]


# -- a real NGSI-LD client ------------------------------------------------------------------


def test_a_real_ngsild_client_reads_what_the_warehouse_holds(world) -> None:
    lyon = world.nodes["lyon"]
    assert parse_time(START) == T0_US / 1_000_000
    station = ngsi_id("AirQualityObserved", "lyon", f"lyon-{ODD_KEY}")
    seen = run_probe(
        *("--url", lyon.url, "--type", "AirQualityObserved", "--entity", station),
        *("--attr", "no2", "--start", START, "--end", END),
    )
    assert {"AirQualityObserved", "TrafficFlowObserved", ENERGY_TYPE} <= set(seen["types"])
    assert "WaterConsumptionObserved" not in seen["types"]  # internal: never listed

    expected = expected_rows(world.nodes.values(), "air")  # both cities
    assert seen["count"] == len(expected) == 12
    assert sorted(e["id"] for e in seen["entities"]) == sorted(expected)
    for entity in seen["entities"]:
        row = expected[entity["id"]]
        assert entity["type"] == "AirQualityObserved"
        assert entity["no2"]["value"] == pytest.approx(row["latest"])
        assert parse_time(entity["no2"]["observedAt"]) == parse_time(row["observed_at"])

    # One entity by its id: a key with a space and a slash comes back through the path.
    assert seen["entity"]["id"] == station
    lat_lon = position("lyon", 0, 0)
    assert seen["entity"]["location"]["value"] == {
        "type": "Point",
        "coordinates": [pytest.approx(lat_lon["lon"]), pytest.approx(lat_lon["lat"])],
    }

    hourly = [r for r in lyon.expected()["hourly_air"] if r["entity"] == f"lyon-{ODD_KEY}"]
    assert len(hourly) == 48
    readings = readings_of(seen["temporal"], station, "no2")
    assert len(readings) == sum(r["readings"] for r in hourly) == 288
    by_hour: dict[str, float] = {}
    for value, at in readings:
        hour = time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(parse_time(at)))
        by_hour[hour] = by_hour.get(hour, 0.0) + value
    assert by_hour == {r["hour"]: pytest.approx(r["sum"]) for r in hourly}

    # Aggregated per hour by the API: the warehouse's hourly sums and maxima, per station.
    aggregated = {troe["id"]: troe for troe in seen["aggregated"]}
    assert sorted(aggregated) == sorted(expected)
    sums = {bucket_start(b): b[0] for b in aggregated[station]["no2"]["sum"]}
    maxima = {bucket_start(b): b[0] for b in aggregated[station]["no2"]["max"]}
    assert sums == {parse_time(r["hour"]): pytest.approx(r["sum"]) for r in hourly}
    assert maxima == {parse_time(r["hour"]): pytest.approx(r["max"]) for r in hourly}


def parse_time(text: str) -> float:
    """Seconds since the epoch of an ISO 8601 UTC time (with or without fractions)."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def bucket_start(bucket: list) -> float:
    """An aggregated value ``[value, start, end]`` of the simplified representation."""
    return parse_time(bucket[1])


def readings_of(troes: list[dict] | dict, entity: str, attribute: str) -> list[tuple[float, str]]:
    """``[(value, observedAt)]`` of one attribute in the simplified temporal form."""
    troes = troes if isinstance(troes, list) else [troes]
    troe = next(t for t in troes if t["id"] == entity)
    values = troe[attribute]["values"]
    return [(float(v[0]), v[1]) for v in values]


# -- the federation --------------------------------------------------------------------------


def test_one_request_answers_for_both_cities(world) -> None:
    lyon, paris = world.nodes["lyon"], world.nodes["paris"]
    expected = expected_rows([lyon, paris], "air")
    response = call(lyon, f"{BASE}/entities", {"type": "AirQualityObserved", "limit": 100})
    assert response.status_code == 200, response.text
    assert sorted(ids(response.json())) == sorted(expected)
    assert {e["id"].split(":")[3] for e in response.json()} == {"lyon", "paris"}
    for entity in response.json():
        assert entity["no2"]["value"] == pytest.approx(expected[entity["id"]]["latest"])
    assert peer_outcomes(response) == {"lyon": "answered", "paris": "answered"}
    # A stable order across nodes: pages of 5 put together are the whole answer.
    paged = []
    for offset in range(0, len(expected), 5):
        page = call(
            lyon, f"{BASE}/entities", {"type": "AirQualityObserved", "limit": 5, "offset": offset}
        )
        paged += ids(page.json())
    assert paged == ids(response.json())
    count = call(
        lyon, f"{BASE}/entities", {"type": "AirQualityObserved", "count": "true", "limit": 1}
    )
    assert int(count.headers["NGSILD-Results-Count"]) == len(expected)


def test_a_hung_or_stopped_peer_gives_a_partial_answer_with_its_status(world) -> None:
    lyon, paris = world.nodes["lyon"], world.nodes["paris"]
    # Generous client bound: the peers' deadline is 2 s; a hang would be a failure here.
    response = call(paris, f"{BASE}/entities", {"type": "AirQualityObserved", "limit": 100})
    assert response.status_code == 200, response.text
    assert sorted(ids(response.json())) == sorted(expected_rows([lyon, paris], "air"))
    outcomes = peer_outcomes(response)
    assert outcomes.pop("nice") in ("timed-out", "unreachable")  # no TLS handshake ever
    assert outcomes == {"bordeaux": "unreachable", "lyon": "answered", "paris": "answered"}
    # The same for temporal values and the count: what answered is served, and said.
    temporal = call(
        paris, f"{BASE}/temporal/entities", {"type": "TrafficFlowObserved", "lastN": 1, **BETWEEN}
    )
    assert temporal.status_code == 200, temporal.text
    assert sorted(ids(temporal.json())) == sorted(expected_rows([lyon, paris], "traffic"))
    assert peer_outcomes(temporal)["bordeaux"] == "unreachable"


def test_a_partner_key_sees_its_share_and_never_the_other_partners(world, keys) -> None:
    nodes = list(world.nodes.values())
    meters = sorted(expected_rows(nodes, "meters"))
    parking = sorted(expected_rows(nodes, "parking"))
    assert len(meters) == len(parking) == 12  # both cities
    # enedis: the household meters of both cities (lyon's own, paris's through lyon).
    seen_a = entities(world.nodes["lyon"], keys["A"], type=TYPE_OF["meters"])
    assert sorted(ids(seen_a)) == meters
    assert entities(world.nodes["lyon"], keys["A"], type=TYPE_OF["parking"]) == []
    # keolis: the car parks, never a meter.
    assert sorted(ids(entities(world.nodes["lyon"], keys["B"], type=TYPE_OF["parking"]))) == parking
    assert entities(world.nodes["lyon"], keys["B"], type=TYPE_OF["meters"]) == []
    for entity_id in meters[:2] + meters[-2:]:
        assert (
            call(world.nodes["lyon"], f"{BASE}/entities/{entity_id}", key=keys["B"]).status_code
            == 404
        )
        assert (
            call(world.nodes["lyon"], f"{BASE}/entities/{entity_id}", key=keys["A"]).status_code
            == 200
        )
    for entity_id in parking[:2] + parking[-2:]:
        assert (
            call(world.nodes["lyon"], f"{BASE}/entities/{entity_id}", key=keys["A"]).status_code
            == 404
        )
        temporal = call(
            world.nodes["lyon"],
            f"{BASE}/temporal/entities/{entity_id}",
            {"timerel": "between", "timeAt": START, "endTimeAt": END},
            key=keys["A"],
        )
        assert temporal.status_code == 404


def test_an_internal_dataset_never_appears(world, keys) -> None:
    water_ids = sorted(expected_rows(world.nodes.values(), "water"))
    water_type = TYPE_OF["water"]
    callers = [(node, None) for node in world.nodes.values()]
    callers += [(world.nodes["lyon"], keys[name]) for name in ("A", "B", "plain")]
    for node, key in callers:
        types = call(node, f"{BASE}/types", key=key).json()
        assert water_type not in str(types)
        assert entities(node, key, type=water_type) == []
        assert entities(node, key, attrs="water_volume", type=",".join(TYPE_OF.values())) == []
        for entity_id in (water_ids[0], water_ids[-1]):
            assert call(node, f"{BASE}/entities/{entity_id}", key=key).status_code == 404


# -- the attacker's view: anonymous and public keys ----------------------------------------


def test_anonymous_never_gets_entity_level_data_of_a_personal_source(world, keys) -> None:
    nodes = list(world.nodes.values())
    personal = {source: sorted(expected_rows(nodes, source)) for source in PERSONAL}
    assert all(len(found) == 12 for found in personal.values())
    for node, key in [(nodes[0], None), (nodes[1], None), (world.nodes["lyon"], keys["plain"])]:
        for source, found in personal.items():
            entity_type = TYPE_OF[source]
            assert entities(node, key, type=entity_type) == [], (source, key)
            assert entities(node, key, type=entity_type, idPattern=".*") == []
            assert entities(node, key, type=entity_type, q="active_energy_import>=0") == []
            for entity_id in (found[0], found[-1]):
                assert call(node, f"{BASE}/entities/{entity_id}", key=key).status_code == 404
                temporal = call(node, f"{BASE}/temporal/entities/{entity_id}", BETWEEN, key=key)
                assert temporal.status_code == 404, temporal.text
            listed = call(
                node, f"{BASE}/temporal/entities", {"type": entity_type, **BETWEEN}, key=key
            )
            assert listed.status_code == 200 and listed.json() == [], listed.text
        # What may be opened of a load curve is an aggregate: those are served.
        cells = entities(node, key, type=ENERGY_TYPE)
        assert {c["id"].split(":")[3] for c in cells} == {"lyon", "paris"}
        text = str(cells)
        for source in PERSONAL:
            assert f"-{source}-" not in text  # no pseudonym of a meter in an aggregate
    # The same queries with the partner the city named do return the meters: the
    # refusals above are the policy's, not an empty warehouse.
    assert len(entities(world.nodes["lyon"], keys["A"], type=TYPE_OF["meters"])) == 12


def test_suppressed_aggregate_cells_carry_no_value(world) -> None:
    lyon = world.nodes["lyon"]
    released = [r for r in lyon.expected()["released"] if r["suppressed"]]
    assert released  # zone z2 is suppressed in the seed
    zone = released[0]["zone"]
    key = f"{zone}~electricity~*~PT1H"
    response = call(lyon, f"{BASE}/entities/{ngsi_id(ENERGY_TYPE, 'lyon', key)}")
    assert response.status_code == 200, response.text
    cell = response.json()
    assert "energy_kwh" not in cell and "meter_count" not in cell
    assert cell["suppressed"]["value"] is True
    assert T0_US  # the seeded windows start at T0


# -- the document and every answer against it --------------------------------------------

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def test_every_answer_matches_the_openapi_document(world) -> None:
    lyon = world.nodes["lyon"]
    document = httpx.get(f"{lyon.url}/openapi.json", timeout=30).json()
    assert document["openapi"].startswith("3.1")
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert {f"GET {BASE}/entities", f"GET {BASE}/temporal/entities"} <= labels, labels
    cases = st.one_of(
        *(op.as_strategy(generation_mode=mode) for op in operations for mode in GenerationMode)
    )
    seen: set[int] = set()

    @settings(
        max_examples=60,
        deadline=None,
        derandomize=True,  # the same cases at every run: a failure is reproducible
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def exchange(case) -> None:
        response = case.call(base_url=lyon.url, timeout=60)
        seen.add(response.status_code)
        case.validate_response(response, checks=CHECKS)

    exchange()
    assert 200 in seen and 400 in seen, seen  # it reached answers and refusals


# -- the documentation page ---------------------------------------------------------------


def test_the_documentation_page_renders_in_chromium(world, tmp_path: Path) -> None:
    lyon = world.nodes["lyon"]
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: `make setup` installs it (deploy/dev/system-packages.sh)"
    page = docs_page(lyon)
    html = httpx.get(page, timeout=30).text
    # Served by the API itself: no script, style or font from anywhere else (no CDN).
    assert not re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html), html[:2000]
    dom = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page],
        capture_output=True,
        timeout=120,
        check=True,
    ).stdout.decode()
    # The page drew every operation of /openapi.json (none is in the HTML it was sent).
    document = httpx.get(f"{lyon.url}/openapi.json", timeout=30).json()
    methods = {"get", "head", "post", "put", "patch", "delete", "options"}
    operations = sum(len(methods & set(item)) for item in document["paths"].values())
    assert f"{BASE}/temporal/entities" not in html
    assert f'data-operations="{operations}"' in dom, dom[:3000]
    assert f"{BASE}/entities" in dom and f"{BASE}/temporal/entities" in dom
    assert "could not load" not in dom


def docs_page(node) -> str:
    """The documentation page's URL, as the API's own root or document names it."""
    for path in ("/docs", "/"):
        response = call(node, path, headers={"Accept": "text/html"})
        if response.status_code == 200 and "text/html" in response.headers["content-type"]:
            return f"{node.url}{path}"
    raise AssertionError("no documentation page at /docs or /")


# -- the developer portal -----------------------------------------------------------------


def test_the_portal_lists_every_dataset_and_its_example_works(world, tmp_path: Path) -> None:
    lyon = world.nodes["lyon"]
    catalog = call(lyon, "/catalog", headers={"Accept": "application/ld+json"})
    assert catalog.status_code == 200, catalog.text
    listed = sorted(d["dct:identifier"] for d in catalog.json()["dcat:dataset"])
    assert "lyon/air" in listed and "paris/traffic" in listed
    page = render(f"{lyon.url}/#dataset=lyon%2Fair", tmp_path / "profile")  # / leads there
    dom = page.dom
    assert page.attribute("data-state") == "ready", dom[-3000:]
    # Every dataset of the catalogue is on the page, with its licence linked.
    assert page.attribute("data-datasets") == str(len(listed))
    assert sorted(re.findall(r'<article class="dataset" data-id="([^"]+)"', dom)) == listed
    assert 'href="https://www.etalab.gouv.fr/licence-ouverte-open-licence/"' in dom
    # Nothing loaded from elsewhere, nothing the browser complained about.
    loaded = page.loaded()
    assert loaded and all(u.startswith(("/", "data:")) for u in loaded), loaded
    assert page.attribute("data-errors") is None and page.console == [], page.console
    # The examples, copied from the page, answer with this dataset's entities.
    expected = sorted(expected_rows([lyon], "air"))
    curl = page.example("curl")
    assert curl.startswith(f"curl -sS '{lyon.url}/ngsi-ld/v1/entities?"), curl
    answered = subprocess.run(["bash", "-c", curl], capture_output=True, timeout=60, check=True)
    got = [e["id"] for e in json.loads(answered.stdout)]
    assert len(got) == min(5, len(expected)) and set(got) <= set(expected), got  # limit=5
    script = page.example("python")
    printed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert printed.stdout.split() == got
    # The chart drew the hourly averages of an entity of the dataset.
    assert int(page.attribute("data-points", "svg") or 0) >= 1, dom[-3000:]


def test_the_portal_says_whose_datasets_are_missing(world, tmp_path: Path) -> None:
    paris = world.nodes["paris"]  # its peers nice (hung) and bordeaux (down) never answer
    page = render(f"{paris.url}/portal", tmp_path / "profile")
    assert page.attribute("data-state") == "ready", page.dom[-3000:]
    note = re.search(r'<span id="missing-nodes">([^<]*)</span>', page.dom)
    assert note, page.dom[:3000]
    assert "bordeaux (unreachable)" in note.group(1) and "nice (" in note.group(1)
    assert "lyon" not in note.group(1) and "paris" not in note.group(1)
    assert 'data-id="lyon/air"' in page.dom and 'data-id="paris/air"' in page.dom


# -- the DCAT-AP catalogue ------------------------------------------------------------------
# GET /catalog as a national portal's harvester reads it, in both forms, for the public
# (anonymous, a key without partner) and each partner's key: valid against the official
# DCAT-AP 3.0.0 shapes (tests/fixtures/dcat-ap), mandatory properties and licences, the
# same graph in JSON-LD and Turtle; nothing internal, nothing of another partner.


def fetch_catalog(world, keys, who: str, accept: str = "application/ld+json") -> httpx.Response:
    headers = {"Accept": accept}
    if who != "anonymous":
        headers["Authorization"] = f"Bearer {keys[who]}"
    answer = httpx.get(f"{world.nodes['lyon'].url}/catalog", headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Citeplus-Peers"] == "lyon=answered, paris=answered"
    return answer


@pytest.fixture(scope="module")
def documents(world, keys) -> dict[str, tuple[httpx.Response, httpx.Response]]:
    """Each audience's catalogue in both forms."""
    return {
        who: (fetch_catalog(world, keys, who), fetch_catalog(world, keys, who, "text/turtle"))
        for who in ("anonymous", "plain", "A", "B")
    }


def catalog_ids(answer: httpx.Response) -> set[str]:
    return {d["dct:identifier"] for d in answer.json()["dcat:dataset"]}


def test_every_form_for_every_audience_is_valid_dcat_ap(documents) -> None:
    for who, (jsonld, turtle) in documents.items():
        from_json, from_turtle = (
            graph_from_jsonld(jsonld.content),
            graph_from_turtle(turtle.content),
        )
        report = shacl_report(from_json)
        assert not report, f"{who}:\n" + "\n".join(report)
        assert specification_problems(from_json) == [], who
        assert isomorphic(from_json, from_turtle), who
        assert turtle.headers["Content-Type"].startswith("text/turtle")


def test_the_public_sees_open_datasets_of_every_city_and_nothing_else(documents) -> None:
    expected = {
        f"{city}/{source}"
        for city in CITIES
        for source in (*OPEN_SOURCES, "linky-open", "energy-aggregates")
    }
    for who in ("anonymous", "plain"):
        jsonld, turtle = documents[who]
        assert catalog_ids(jsonld) == expected, who
        assert partner_only_keys(jsonld.json()) == [], who
        assert "shared." not in turtle.text and "parking" not in turtle.text


def test_a_shared_dataset_appears_for_its_partner_only(documents) -> None:
    meters = {f"{city}/meters" for city in CITIES}
    parking = {f"{city}/parking" for city in CITIES}
    a, b = catalog_ids(documents["A"][0]), catalog_ids(documents["B"][0])
    assert meters <= a and not parking & a
    assert parking <= b and not meters & b
    listed = {d["dct:identifier"]: d for d in documents["A"][0].json()["dcat:dataset"]}
    federation = listed["paris/meters"]["dcat:distribution"][-1]
    assert federation["@id"].endswith("#federation")
    assert federation["citeplus:federationDataset"] == "paris/meters"
    # The partner's own topic: another partner's (lyon's, the node asking) would tell
    # it whom else the city shares with. Failed before: it was shared.lyon's.
    assert f".shared.{PARTNER_A}.observations." in federation["citeplus:topic"]
    for who, other in (("A", PARTNER_B), ("B", PARTNER_A)):
        text = documents[who][0].text
        assert other not in text and ".shared.lyon." not in text, who


def test_the_internal_source_never_appears_in_the_catalogue(documents) -> None:
    for who, (jsonld, turtle) in documents.items():
        for body in (jsonld.text, turtle.text):
            assert "/water" not in body and "water-consumption" not in body, who


def test_a_personal_source_open_by_mistake_offers_no_way_to_its_entities(documents) -> None:
    for who in ("anonymous", "A"):
        listed = {d["dct:identifier"]: d for d in documents[who][0].json()["dcat:dataset"]}
        assert listed["lyon/linky-open"]["dcat:distribution"] == [], who


def test_city_facts_and_coverage_come_through_the_federation(documents) -> None:
    listed = {d["dct:identifier"]: d for d in documents["anonymous"][0].json()["dcat:dataset"]}
    paris = listed["paris/air"]
    assert paris["dct:publisher"]["@id"].endswith("/entreprise/217500016")
    assert paris["dct:spatial"]["@id"] == "http://id.insee.fr/geo/commune/75056"
    assert paris["dcat:contactPoint"]["vcard:hasEmail"]["@id"] == (
        "mailto:opendata@paris.citeplus.example"
    )
    assert paris["dct:temporal"]["dcat:startDate"]["@value"] == "2025-01-12T23:00:00Z"
    assert paris["citeplus:entityType"] == ["AirQualityObserved"]
    assert listed["lyon/energy-aggregates"]["dct:accrualPeriodicity"]["@id"].endswith("/DAILY")


def test_an_access_url_followed_answers_with_the_datasets_entities(world, documents) -> None:
    listed = {d["dct:identifier"]: d for d in documents["anonymous"][0].json()["dcat:dataset"]}
    url = listed["paris/air"]["dcat:distribution"][0]["dcat:accessURL"]["@id"]
    answer = httpx.get(url, timeout=60)
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert found and all(e["id"].startswith("urn:ngsi-ld:AirQualityObserved:paris:") for e in found)
