"""API keys at rest and in use: hashed, private, reloaded without a restart, refused
when malformed, and the CLI's checks on partners."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from services.api.keys import KeyStore, keys_path, parse_rate, split_token
from services.api.keys_cli import check_partner, known_partners
from services.runtime.errors import CiteplusError, ConfigError
from testkit.api_shell import Clock, shell_node
from testkit.city_files import VALID_SOURCE, city_yaml, write_city


def test_the_secret_is_shown_once_and_stored_as_its_sha256(tmp_path: Path) -> None:
    store = KeyStore(keys_path(tmp_path))
    key, token = store.create("Vélo Lyon", partner="lyon", rate=20.0)
    key_id, secret = token.split(".", 1)
    assert key_id == key.key_id and len(secret) >= 43  # 32 random bytes, base64url
    text = store.path.read_text()
    assert secret not in text
    stored = json.loads(text)["keys"][key_id]
    assert stored["digest"] == hashlib.sha256(secret.encode()).hexdigest()
    assert (stored["application"], stored["partner"], stored["rate"]) == ("Vélo Lyon", "lyon", 20)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.authenticate(token) == key


def test_wrong_secrets_ids_and_shapes_are_refused(tmp_path: Path) -> None:
    store = KeyStore(keys_path(tmp_path))
    _, token = store.create("app")
    key_id, secret = token.split(".", 1)
    for attempt in (
        f"{key_id}.{secret[:-1]}",
        f"{key_id}.",
        f"{key_id}{secret}",
        f"k{'0' * 16}.{secret}",
        f"{key_id.upper()}.{secret}",
        "",
        f"{key_id}.{'x' * 300}",
    ):
        assert store.authenticate(attempt) is None, attempt
    assert split_token(f"  {token} ") == (key_id, secret)


def test_a_running_service_sees_new_and_revoked_keys_within_the_bound(tmp_path: Path) -> None:
    clock = Clock()
    service = KeyStore(keys_path(tmp_path), reload_s=1.0, clock=clock)
    operator = KeyStore(keys_path(tmp_path))
    assert service.keys() == {}
    key, token = operator.create("app")
    assert service.authenticate(token) is None  # looked less than reload_s ago
    clock.now += 1.0
    assert service.authenticate(token) == key
    operator.revoke(key.key_id)
    clock.now += 0.5
    assert service.authenticate(token) == key  # bounded staleness: still within 1 s
    clock.now += 0.5
    assert service.authenticate(token) is None
    assert service.keys()[key.key_id].revoked_at is not None  # kept, listed as revoked


def test_revoking_an_unknown_key_says_how_to_find_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="citeplus api keys list"):
        KeyStore(keys_path(tmp_path)).revoke("k0000000000000000")


def test_a_keys_file_others_can_read_is_refused(tmp_path: Path) -> None:
    store = KeyStore(keys_path(tmp_path))
    store.create("app")
    os.chmod(store.path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        KeyStore(keys_path(tmp_path)).keys()


def test_a_damaged_keys_file_is_refused_with_the_way_out(tmp_path: Path) -> None:
    path = keys_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text('{"keys": {"k1": {"nope": 1}}}')
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError, match="not an API keys file"):
        KeyStore(path).keys()


@pytest.mark.parametrize(
    ("application", "burst"), [("", None), ("x" * 81, None), ("app\nname", None), ("app", 0)]
)
def test_bad_key_settings_are_refused(tmp_path: Path, application: str, burst: int | None) -> None:
    with pytest.raises(ConfigError):
        KeyStore(keys_path(tmp_path)).create(application, burst=burst)
    assert not keys_path(tmp_path).exists()


def test_rates_read_as_operators_write_them() -> None:
    assert parse_rate("20/s") == 20.0 and parse_rate("2.5") == 2.5 and parse_rate(" 7 / s") == 7
    for bad in ("0/s", "-1", "fast", "10/min"):
        with pytest.raises(ConfigError, match="like 10/s"):
            parse_rate(bad)


def test_a_key_binds_only_to_a_partner_the_city_files_name(tmp_path: Path) -> None:
    shared = VALID_SOURCE + "    sharing: {level: shared, partners: [lyon, enedis]}\n"
    cities = tmp_path / "cities"
    cities.mkdir()
    write_city(cities, city_yaml(shared))
    known = known_partners(shell_node(tmp_path), cities)
    assert {"lyon", "enedis"} <= set(known) and "public" not in known
    check_partner("enedis", known)
    with pytest.raises(CiteplusError, match="no city file names partner 'atlantis'"):
        check_partner("atlantis", known)
    with pytest.raises(CiteplusError, match="own identity"):
        check_partner("lyon", known, node_identity="lyon")
    with pytest.raises(CiteplusError, match="without --partner"):
        check_partner("public", [*known, "public"])


def test_operators_creating_keys_at_once_lose_none(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def create(n: int) -> str:
        return KeyStore(keys_path(tmp_path)).create(f"app-{n}")[0].key_id

    with ThreadPoolExecutor(8) as pool:
        created = set(pool.map(create, range(40)))
    assert set(KeyStore(keys_path(tmp_path)).keys()) == created
