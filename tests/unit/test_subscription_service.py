"""What the delivery engine asks before each send: a paused, expired or revoked key's
subscription gets nothing; the quota a key has; a bad allow-list stops the start."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import pytest

from services.api.keys import KeyStore, keys_path
from services.api.subscriptions.model import Subscription, iso
from services.api.subscriptions.service import SubscriptionService
from services.runtime.config import SubscriptionsSection
from services.runtime.errors import ConfigError

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)


def sub(owner: str, **changes: object) -> Subscription:
    base = Subscription(
        "urn:ngsi-ld:Subscription:s", owner, "public", "https://r.example/", iso(NOW)
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def service(tmp_path: Path, **settings: object) -> tuple[SubscriptionService, KeyStore]:
    keys = KeyStore(keys_path(tmp_path), reload_s=0.0)
    made = SubscriptionService(SubscriptionsSection(**settings), None, keys, clock=lambda: NOW)
    return made, keys


def test_a_revoked_keys_subscriptions_are_not_delivered(tmp_path: Path) -> None:
    subs, keys = service(tmp_path)
    key, _ = keys.create("app")
    mine = sub(key.key_id)
    assert subs.deliverable(mine)
    keys.revoke(key.key_id)
    assert not subs.deliverable(mine)
    assert not subs.deliverable(sub("k0000000000000000"))  # a key unknown to this node


def test_paused_and_expired_subscriptions_are_not_delivered(tmp_path: Path) -> None:
    subs, keys = service(tmp_path)
    key, _ = keys.create("app")
    assert not subs.deliverable(sub(key.key_id, is_active=False))
    assert not subs.deliverable(sub(key.key_id, expires_at="2026-12-06T11:00:00.000Z"))


def test_a_keys_own_limit_overrides_the_nodes(tmp_path: Path) -> None:
    subs, keys = service(tmp_path, per_key=7)
    plain, _ = keys.create("plain")
    roomy, _ = keys.create("roomy", max_subscriptions=100)
    none, _ = keys.create("none", max_subscriptions=0)
    assert subs.limit_for(plain.key_id) == 7
    assert subs.limit_for(roomy.key_id) == 100
    assert subs.limit_for(none.key_id) == 0
    with pytest.raises(ConfigError):
        keys.create("negative", max_subscriptions=-1)


def test_an_allow_list_entry_that_is_no_address_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"receiver\.local"):
        service(tmp_path, allow_targets="127.0.0.1, receiver.local")
