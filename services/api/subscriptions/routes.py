"""``/ngsi-ld/v1/subscriptions``: create, list, read, change and delete subscriptions.

Only a caller with a key subscribes (a 401 tells an anonymous one how to get a
key): notifications are sent on the key's behalf, and the key is what quotas and
ownership hang on. A key sees and changes only its own subscriptions; another
key's id is answered exactly like an id that does not exist (404), so ids leak
nothing. A subscription reads on behalf of the key's audience at creation
(services/api/audience.py), never wider.

Every write is confirmed by Kafka before the answer (store.py): a 201 or 204 is a
change that survives the api being killed right after. When Kafka cannot confirm,
the answer is a 503 saying to retry, and nothing was promised.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import hdrs, web

from services.api.audience import ANONYMOUS, Audience
from services.api.ngsi.context import negotiate
from services.api.ngsi.params import page, single
from services.api.ngsi.problems import NgsiError, bad_data, not_found
from services.api.ngsi.respond import COUNT_HEADER, answer
from services.api.problem import problem
from services.api.subscriptions.model import Subscription, iso, touched
from services.api.subscriptions.represent import represent
from services.api.subscriptions.service import SUBSCRIPTIONS, SubscriptionService
from services.api.subscriptions.store import StoreUnavailable
from services.api.subscriptions.targets import TargetRefused, check_target
from services.api.subscriptions.validate import (
    Identity,
    Rules,
    new_subscription,
    parse_body,
    patched,
)

PATH = "/ngsi-ld/v1/subscriptions"
MAX_BODY = 64 * 1024
BODY_TYPES = ("application/json", "application/ld+json")
PATCH_TYPES = (*BODY_TYPES, "application/merge-patch+json")
LIST_PARAMS = frozenset({"limit", "offset", "count"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Refused(Exception):
    """An answer decided before the handler's end (401, 403 quota, 503 store)."""

    def __init__(self, response: web.Response):
        super().__init__(response.status)
        self.response = response


def add_subscription_routes(app: web.Application) -> None:
    """The five operations; registered before the NGSI-LD catch-all route."""
    app.router.add_post(PATH, wrap(create))
    app.router.add_get(PATH, wrap(list_subscriptions))
    one = PATH + "/{subscriptionId}"
    app.router.add_get(one, wrap(read_one))
    app.router.add_patch(one, wrap(change))
    app.router.add_delete(one, wrap(delete))


def wrap(handler: Handler) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            response = await handler(request)
        except NgsiError as error:
            return error.response()
        except Refused as refused:
            return refused.response
        except StoreUnavailable as exc:
            return problem(
                503,
                "InternalError",
                "Subscriptions unavailable",
                f"the subscription store could not confirm the change ({exc}); nothing was "
                "changed: retry in a few seconds",
                {hdrs.RETRY_AFTER: "5"},
            )
        response.headers[hdrs.CACHE_CONTROL] = "no-store"  # changes with every write
        return response

    return handle


# -- who calls ------------------------------------------------------------------------


def service_of(request: web.Request) -> SubscriptionService:
    service = request.app.get(SUBSCRIPTIONS)
    if service is None or service.store is None:
        raise Refused(
            problem(
                503,
                "InternalError",
                "Subscriptions unavailable",
                "subscriptions are served by the api service of a node with Kafka "
                "(citeplus service api); this instance has no subscription store",
            )
        )
    return service


def owner_of(request: web.Request) -> Audience:
    audience = request.get("audience")
    audience = audience if isinstance(audience, Audience) else ANONYMOUS
    if audience.key_id is None:
        raise Refused(
            problem(
                401,
                "KeyRequired",
                "API key required",
                "subscriptions belong to an API key: send one as `Authorization: Bearer "
                "<key>` or `X-API-Key: <key>`; the node's operators issue keys with "
                "`citeplus api keys create` (docs/api.md, 'Keys')",
                {hdrs.WWW_AUTHENTICATE: 'Bearer realm="citeplus"'},
            )
        )
    return audience


def owned(service: SubscriptionService, audience: Audience, sub_id: str) -> Subscription:
    """The caller's subscription ``sub_id``; 404 for an unknown id and another key's alike."""
    assert service.store is not None
    sub = service.store.get(sub_id)
    if sub is None or sub.owner != audience.key_id:
        raise not_found(f"no subscription {sub_id[:200]} of this key (GET {PATH} lists them)")
    return sub


async def read_json(request: web.Request, accepted: tuple[str, ...]) -> dict[str, Any]:
    if request.content_type not in accepted:
        raise NgsiError(
            "InvalidRequest",
            f"Content-Type {request.content_type or 'none'} is not accepted here; send "
            f"{' or '.join(accepted)}",
            status=415,
        )
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise bad_data(f"a subscription is at most {MAX_BODY // 1024} KiB of JSON")
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise bad_data(f"a subscription is at most {MAX_BODY // 1024} KiB of JSON")
    return parse_body(raw)


async def checked_target(service: SubscriptionService, uri: str) -> None:
    try:
        await check_target(uri, service.policy)
    except TargetRefused as refused:
        raise bad_data(f"notification.endpoint.uri: {refused}") from None


async def blocking(function: Callable[..., Any], *args: Any) -> Any:
    """A store call (it waits for Kafka) off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)


# -- the operations -----------------------------------------------------------------------


async def create(request: web.Request) -> web.Response:
    service = service_of(request)
    audience = owner_of(request)
    body = await read_json(request, BODY_TYPES)
    now = service.clock()
    identity = Identity(
        f"urn:ngsi-ld:Subscription:{uuid.uuid4()}",
        audience.key_id or "",
        audience.on_behalf_of,
        iso(now),
    )
    rules = Rules(service.names, service.settings.min_time_interval_s)
    sub = new_subscription(body, identity, rules, now)
    await checked_target(service, sub.endpoint_uri)
    store = service.store
    assert store is not None
    async with service.writing:
        if store.get(sub.id) is not None:
            raise NgsiError("AlreadyExists", f"a subscription {sub.id} exists; choose another id")
        held = len(store.list(sub.owner))
        limit = service.limit_for(sub.owner)
        if held >= limit:
            raise Refused(quota_problem(held, limit))
        await blocking(store.put, sub)
    return web.Response(status=201, headers={hdrs.LOCATION: f"{PATH}/{sub.id}"})


def quota_problem(held: int, limit: int) -> web.Response:
    return problem(
        403,
        "TooManySubscriptions",
        "Subscription quota reached",
        f"this key holds {held} subscriptions, its limit is {limit}: delete some "
        f"(DELETE {PATH}/<id>, expired ones too), or ask the node's operators to raise it "
        "(api.subscriptions.per_key, or a key created with --max-subscriptions)",
    )


async def list_subscriptions(request: web.Request) -> web.Response:
    service = service_of(request)
    audience = owner_of(request)
    media = negotiate(request.headers.get(hdrs.ACCEPT))
    chosen = page(single(request.query, LIST_PARAMS))
    assert service.store is not None
    mine = service.store.list(audience.key_id)
    now = service.clock()
    shown = mine[chosen.offset : chosen.offset + chosen.limit]
    body = [represent(s, service.store.state(s.id), now) for s in shown]
    response = answer(request, media, body, None, chosen)
    if chosen.count:
        response.headers[COUNT_HEADER] = str(len(mine))
    return response


async def read_one(request: web.Request) -> web.Response:
    service = service_of(request)
    audience = owner_of(request)
    media = negotiate(request.headers.get(hdrs.ACCEPT))
    single(request.query, frozenset())
    sub = owned(service, audience, request.match_info["subscriptionId"])
    assert service.store is not None
    return answer(request, media, represent(sub, service.store.state(sub.id), service.clock()))


async def change(request: web.Request) -> web.Response:
    service = service_of(request)
    audience = owner_of(request)
    fragment = await read_json(request, PATCH_TYPES)
    if not fragment:
        raise bad_data("the PATCH body names no member to change")
    store = service.store
    assert store is not None
    async with service.writing:
        sub = owned(service, audience, request.match_info["subscriptionId"])
        now = service.clock()
        rules = Rules(service.names, service.settings.min_time_interval_s)
        updated = touched(patched(sub, fragment, rules, now), now)
        if updated.endpoint_uri != sub.endpoint_uri:
            await checked_target(service, updated.endpoint_uri)
        await blocking(store.put, updated)
    return web.Response(status=204)


async def delete(request: web.Request) -> web.Response:
    service = service_of(request)
    audience = owner_of(request)
    single(request.query, frozenset())
    store = service.store
    assert store is not None
    async with service.writing:
        sub = owned(service, audience, request.match_info["subscriptionId"])
        await blocking(store.delete, sub.id)
    return web.Response(status=204)
