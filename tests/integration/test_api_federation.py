"""Two nodes with certificates (lyon, paris), each with its common API: one request
at either answers for both cities; a peer that hangs or is stopped gives a partial
answer with its status, never a hang; keys bound to two partners each see their own
share and never the other's; an internal dataset never appears; and, the attacker's
view, anonymous callers (or a key without a partner) never get entity-level data of
a personal source, not even one a city file marked open by mistake.

Lyon shares the household meters (personal) with enedis and the car parks with
keolis; paris the same; both open air quality and traffic; water is internal; each
city's ``linky-open`` source is personal but marked open. Paris also names "nice" as
a peer: a socket that accepts connections and never answers.
"""

from __future__ import annotations

import pytest

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
from testkit.api_world import PARTNER_A, PARTNER_B, T0_US

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PERSONAL = ("meters", "linky-open", "water")
START = "2025-01-12T23:00:00Z"
END = "2025-01-14T23:00:00Z"


@pytest.fixture(scope="module")
def world(infrastructure, tmp_path_factory):
    hung = silent_peer()
    extra = {"paris": [{"code": "nice", "address": f"127.0.0.1:{hung.getsockname()[1]}"}]}
    started = start_world(
        tmp_path_factory.mktemp("api-federation"),
        ("lyon", "paris"),
        infrastructure=infrastructure,
        extra_peers=extra,
        peer_timeout_s=2.0,
    )
    try:
        yield started
    finally:
        started.stop()
        hung.close()


@pytest.fixture(scope="module")
def keys(world) -> dict[str, str]:
    lyon = world.nodes["lyon"]
    return {
        "A": lyon.create_key("meter-dashboard", PARTNER_A),
        "B": lyon.create_key("parking-app", PARTNER_B),
        "plain": lyon.create_key("citizen-map"),
    }


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


def test_a_hung_peer_gives_a_partial_answer_with_its_status(world) -> None:
    lyon, paris = world.nodes["lyon"], world.nodes["paris"]
    response = call(
        paris, f"{BASE}/entities", {"type": "AirQualityObserved", "limit": 100}, timeout=60
    )
    assert response.status_code == 200, response.text
    assert sorted(ids(response.json())) == sorted(expected_rows([lyon, paris], "air"))
    outcomes = peer_outcomes(response)
    assert outcomes["nice"] in ("timed-out", "unreachable"), outcomes
    assert outcomes["lyon"] == outcomes["paris"] == "answered"


def test_a_stopped_peer_gives_a_partial_answer_with_its_status(world) -> None:
    lyon, paris = world.nodes["lyon"], world.nodes["paris"]
    paris.federation.stop()
    try:
        response = call(lyon, f"{BASE}/entities", {"type": "AirQualityObserved", "limit": 100})
        assert response.status_code == 200, response.text
        assert sorted(ids(response.json())) == sorted(expected_rows([lyon], "air"))
        assert peer_outcomes(response)["paris"] == "unreachable"
    finally:
        paris.federation.start().wait_ready(120)
    healed = call(lyon, f"{BASE}/entities", {"type": "AirQualityObserved", "limit": 100})
    assert sorted(ids(healed.json())) == sorted(expected_rows([lyon, paris], "air"))


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
    for key in (None, keys["A"], keys["B"], keys["plain"]):
        for node in world.nodes.values():
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
    between = {"timerel": "between", "timeAt": START, "endTimeAt": END}
    for key in (None, keys["plain"]):
        for node in nodes:
            for source, found in personal.items():
                entity_type = TYPE_OF[source]
                assert entities(node, key, type=entity_type) == [], (source, key)
                assert entities(node, key, type=entity_type, idPattern=".*") == []
                assert entities(node, key, type=entity_type, q="active_energy_import>=0") == []
                for entity_id in (found[0], found[-1]):
                    assert call(node, f"{BASE}/entities/{entity_id}", key=key).status_code == 404
                    temporal = call(node, f"{BASE}/temporal/entities/{entity_id}", between, key=key)
                    assert temporal.status_code == 404, temporal.text
                listed = call(
                    node, f"{BASE}/temporal/entities", {"type": entity_type, **between}, key=key
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
