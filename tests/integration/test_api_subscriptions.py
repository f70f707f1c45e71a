"""NGSI-LD subscriptions over HTTP on the real application with a real store on Kafka:
who may subscribe, what a key sees of others', the answers' shape, PATCH and DELETE,
the per-key quota, and where notifications may not go (the attacker's URLs)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from services.runtime.config import NodeConfig, SubscriptionsSection
from testkit.subscriptions import ServedApi, served_api

PATH = "/ngsi-ld/v1/subscriptions"
RECEIVER = "http://127.0.0.1:9/notify"  # allowed below, as the operator of a test node would


@pytest.fixture(scope="module")
def api(node: NodeConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApi]:
    settings = SubscriptionsSection(allow_targets="127.0.0.1", per_key=3)
    with served_api(node, tmp_path_factory.mktemp("subs"), settings) as served:
        yield served


def key(api: ServedApi, partner: str | None = None, **limits: int) -> dict[str, str]:
    _, token = api.keys.create("subscriber", partner, **limits)
    return {"Authorization": f"Bearer {token}"}


def body(uri: str = RECEIVER, **members: object) -> dict[str, object]:
    return {
        "type": "Subscription",
        "entities": [{"type": "WeatherObserved"}],
        "notification": {"endpoint": {"uri": uri, "accept": "application/json"}},
        **members,
    }


def post(api: ServedApi, headers: dict[str, str], document: object) -> httpx.Response:
    return httpx.post(api.url + PATH, json=document, headers=headers, timeout=60)


def created(api: ServedApi, headers: dict[str, str], **members: object) -> str:
    response = post(api, headers, body(**members))
    assert response.status_code == 201, response.text
    location = response.headers["Location"]
    assert location.startswith(PATH + "/urn:ngsi-ld:Subscription:")
    return location


def test_anonymous_callers_are_told_how_to_get_a_key(api: ServedApi) -> None:
    response = post(api, {}, body())
    assert response.status_code == 401
    problem = response.json()
    assert problem["type"] == "urn:citeplus:errors:KeyRequired"
    assert "citeplus api keys create" in problem["detail"]
    assert httpx.get(api.url + PATH, timeout=60).status_code == 401


def test_a_subscription_is_created_shown_and_only_to_its_key(api: ServedApi) -> None:
    mine, theirs = key(api), key(api)
    location = created(api, mine, watchedAttributes=["temperature"], q="temperature>20")
    shown = httpx.get(api.url + location, headers=mine, timeout=60)
    assert shown.status_code == 200 and shown.headers["Cache-Control"] == "no-store"
    sub = shown.json()
    assert sub["id"] == location.rsplit("/", 1)[1] and sub["type"] == "Subscription"
    assert sub["status"] == "active" and sub["isActive"] is True
    assert sub["notification"]["timesSent"] == 0
    assert sub["notification"]["endpoint"] == {"uri": RECEIVER, "accept": "application/json"}
    assert sub["watchedAttributes"] == ["temperature"] and sub["q"] == "temperature>20"
    listed = httpx.get(api.url + PATH, params={"count": "true"}, headers=mine, timeout=60)
    assert [s["id"] for s in listed.json()] == [sub["id"]]
    assert listed.headers["NGSILD-Results-Count"] == "1"
    # Another key: the same answers as for an id that does not exist.
    for method in ("GET", "DELETE"):
        other = httpx.request(method, api.url + location, headers=theirs, timeout=60)
        assert other.status_code == 404, other.text
    patch = httpx.patch(api.url + location, json={"isActive": False}, headers=theirs, timeout=60)
    assert patch.status_code == 404
    assert httpx.get(api.url + PATH, headers=theirs, timeout=60).json() == []
    assert api.service.store is not None
    assert api.service.store.get(sub["id"]).audience == "public"  # type: ignore[union-attr]


def test_patch_merges_and_checks_again_delete_removes(api: ServedApi) -> None:
    mine = key(api)
    location = created(api, mine, watchedAttributes=["temperature"])
    url = api.url + location
    change = {"isActive": False, "notification": {"format": "keyValues"}}
    assert httpx.patch(url, json=change, headers=mine, timeout=60).status_code == 204
    sub = httpx.get(url, headers=mine, timeout=60).json()
    assert sub["status"] == "paused" and sub["notification"]["format"] == "keyValues"
    assert sub["notification"]["endpoint"]["uri"] == RECEIVER  # kept: merged, not replaced
    assert "modifiedAt" in sub
    refused = httpx.patch(url, json={"timeInterval": 60}, headers=mine, timeout=60)
    assert refused.status_code == 400 and "watchedAttributes" in refused.json()["detail"]
    switched = {"timeInterval": 60, "watchedAttributes": None}
    assert httpx.patch(url, json=switched, headers=mine, timeout=60).status_code == 204
    assert httpx.get(url, headers=mine, timeout=60).json()["timeInterval"] == 60
    assert httpx.delete(url, headers=mine, timeout=60).status_code == 204
    assert httpx.get(url, headers=mine, timeout=60).status_code == 404


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ({**body(), "type": "Entity"}, "type"),
        (body(entities=[{"id": "urn:x"}]), "entities[0].type"),
        (body(watchedAttributes=["nosuchattribute"]), "watchedAttributes"),
        (body(q="temperature>>2"), "q"),
        (body(geoQ={"georel": "near;maxDistance==100", "geometry": "Line"}), "geoQ"),
        (body(throttling=-1), "throttling"),
        (body(timeInterval=0), "timeInterval"),
        (body(expiresAt="2000-01-01T00:00:00Z"), "expiresAt"),
        (body("ftp://example.org/x"), "notification.endpoint.uri"),
        ({**body(), "status": "active"}, "read-only"),
        ({**body(), "colour": "blue"}, "colour"),
    ],
)
def test_bad_bodies_are_400s_that_name_the_member(
    api: ServedApi, document: dict, named: str
) -> None:
    response = post(api, key(api), document)
    assert response.status_code == 400, response.text
    assert named in response.json()["detail"]


def test_what_is_not_supported_or_not_json_is_said_so(api: ServedApi) -> None:
    mine = key(api)
    unsupported = post(api, mine, body(temporalQ={"timerel": "after"}))
    assert unsupported.status_code == 422 and "temporalQ" in unsupported.json()["detail"]
    text = httpx.post(api.url + PATH, content=b"{", headers=mine, timeout=60)
    assert text.status_code == 415  # no JSON content type
    broken = httpx.post(
        api.url + PATH,
        content=b"{",
        headers={**mine, "Content-Type": "application/json"},
        timeout=60,
    )
    assert broken.status_code == 400 and "not JSON" in broken.json()["detail"]
    huge = post(api, mine, body(description="x" * 100_000))
    assert huge.status_code == 400 and "64 KiB" in huge.json()["detail"]


def test_a_keys_quota_holds_and_says_how_to_raise_it(api: ServedApi) -> None:
    small, default = key(api, max_subscriptions=1), key(api)
    location = created(api, small)
    over = post(api, small, body())
    assert over.status_code == 403
    assert "limit is 1" in over.json()["detail"] and "per_key" in over.json()["detail"]
    for _ in range(3):  # the node's per_key (3 here)
        created(api, default)
    assert post(api, default, body()).status_code == 403
    assert httpx.delete(api.url + location, headers=small, timeout=60).status_code == 204
    created(api, small)  # room again


def test_a_burst_of_posts_cannot_overrun_the_quota(api: ServedApi) -> None:
    """Ten POSTs at once for a key that may hold two: two are created, eight refused."""
    headers = key(api, max_subscriptions=2)

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=60) as client:
            calls = [client.post(api.url + PATH, json=body(), headers=headers) for _ in range(10)]
            return sorted(r.status_code for r in await asyncio.gather(*calls))

    assert asyncio.run(burst()) == [201] * 2 + [403] * 8
    assert len(httpx.get(api.url + PATH, headers=headers, timeout=60).json()) == 2


def test_a_client_chosen_id_is_taken_once(api: ServedApi) -> None:
    mine = key(api)
    created(api, mine, id="urn:ngsi-ld:Subscription:chosen")
    again = post(api, key(api), body(id="urn:ngsi-ld:Subscription:chosen"))
    assert again.status_code == 409


# -- where notifications may not go -------------------------------------------------------

FORBIDDEN = [
    "http://127.0.0.2/",  # loopback, though not the address the operator allowed
    "http://0.0.0.0:8010/",
    "http://[::1]:8010/",
    "http://[::ffff:127.0.0.2]/",
    "http://[::ffff:169.254.169.254]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://[fc00::1]/",
    "http://100.64.0.1/",
    "http://224.0.0.1/",
    "http://255.255.255.255/",
    "http://2130706433/",
    "http://0x7f.1/",
    "http://017700000001/",
    "http://0177.0.0.1/",
    "http://127.1/",
    "http://user:secret@example.org/",
    "http://example.org@127.0.0.1/",
    "http://127.0.0.1:0/",
    "http://127.0.0.1:99999/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_INFO",
    "http://no-such-host.invalid/",
]


@pytest.mark.parametrize("uri", FORBIDDEN)
def test_notifications_may_not_go_inside(api: ServedApi, uri: str) -> None:
    response = post(api, key(api), body(uri))
    assert response.status_code == 400, (uri, response.status_code, response.text)
    assert "notification.endpoint.uri" in response.json()["detail"]


def test_a_patch_may_not_move_the_target_inside(api: ServedApi) -> None:
    mine = key(api)
    url = api.url + created(api, mine)
    move = {"notification": {"endpoint": {"uri": "http://169.254.169.254/"}}}
    assert httpx.patch(url, json=move, headers=mine, timeout=60).status_code == 400
    shown = httpx.get(url, headers=mine, timeout=60).json()
    assert shown["notification"]["endpoint"]["uri"] == RECEIVER
