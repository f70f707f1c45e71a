"""Keyrings, epoch keys and keyed pseudonyms: stable within an epoch and a city,
unlinkable across them, secrets never shown."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.cli import main
from services.privacy import keys
from services.privacy.keys import (
    KeyStore,
    epoch_of,
    init_keyring,
    keyring_from_env,
    read_keyring,
    rotate_keyring,
)
from services.privacy.pseudonym import Pseudonymiser
from services.runtime.errors import ConfigError
from testkit.fixture_secrets import fixture_secret

SECRET = fixture_secret("keys")
A, B = fixture_secret("keys-a"), fixture_secret("keys-b")
identifiers = st.text(min_size=1, max_size=40)


def us(year: int, month: int, day: int = 1) -> int:
    return int(datetime(year, month, day, tzinfo=UTC).timestamp() * 1_000_000)


def store_with(secret: str = SECRET, **env: str) -> KeyStore:
    return KeyStore(Path("/nonexistent"), environ={"CITEPLUS_PSEUDONYM_SECRET_LYON": secret, **env})


# -- pseudonyms ------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(identifiers)
def test_same_input_same_epoch_same_city_same_pseudonym(value: str) -> None:
    first = store_with().pseudonymiser("lyon", "2025-11")
    again = store_with().pseudonymiser("lyon", "2025-11")  # another process, same secret
    assert first(value) == again(value)
    assert len(first(value)) == 24 and first(value).isalnum() and first(value).islower()


@settings(max_examples=200, deadline=None)
@given(st.lists(identifiers, min_size=1, max_size=30, unique=True))
def test_pseudonyms_are_unlinkable_across_epochs_and_cities(values: list[str]) -> None:
    environ = {
        "CITEPLUS_PSEUDONYM_SECRET_LYON": SECRET,
        "CITEPLUS_PSEUDONYM_SECRET_NICE": SECRET,  # even the same secret: keys differ per city
    }
    store = KeyStore(Path("/nonexistent"), environ=environ)
    november = store.pseudonymiser("lyon", "2025-11")
    december = store.pseudonymiser("lyon", "2025-12")
    nice = store.pseudonymiser("nice", "2025-11")
    a = [november(v) for v in values]
    b = [december(v) for v in values]
    c = [nice(v) for v in values]
    assert len(set(a)) == len(values)  # no collision within an epoch
    # No pseudonym of one epoch or city reappears in another: nothing to join on.
    assert not set(a) & set(b)
    assert not set(a) & set(c)
    # Nor any shared structure: the pairs agree on a character no more than chance.
    same = sum(x == y for p, q in zip(a, b, strict=True) for x, y in zip(p, q, strict=True))
    assert same <= 0.2 * 24 * len(values) + 6


def test_epoch_keys_differ_and_hide_the_secret() -> None:
    keyring = keyring_from_env("lyon", {"CITEPLUS_PSEUDONYM_SECRET_LYON": SECRET})
    assert keyring.epoch_key("2025-11") != keyring.epoch_key("2025-12")
    for shown in (
        repr(keyring),
        repr(keyring.secrets[0]),
        repr(store_with()),
        repr(store_with().pseudonymiser("lyon", "2025-11")),
    ):
        assert SECRET not in shown and SECRET[:8] not in shown


def test_epoch_is_the_month_of_a_time_in_the_city_zone() -> None:
    assert epoch_of(us(2025, 11, 30), "Europe/Paris") == "2025-11"
    paris_december = us(2025, 12, 1) - 3600 * 1_000_000  # 00:00 in Paris is 23:00 UTC
    assert epoch_of(paris_december - 1, "Europe/Paris") == "2025-11"
    assert epoch_of(paris_december, "Europe/Paris") == "2025-12"
    assert epoch_of(us(2025, 12, 1), "America/Cayenne") == "2025-11"  # still 21:00 there
    assert keys.next_epoch("2025-12") == "2026-01" and keys.next_epoch("2025-01") == "2025-02"


def test_identifier_column_pseudonymised_once_per_distinct_value() -> None:
    from services.anonymise.columns import pseudonymised
    from services.ingest.records import to_column

    pseudonymise = Pseudonymiser(b"k" * 32, "2025-01")
    column = pseudonymised(to_column("meter", ["a", "b", None, "a", 12]), pseudonymise)
    assert column["kind"] == "string" and column["missing"] == [2]
    values = column["strings"]
    assert values[0] == values[3] == pseudonymise("a") and values[1] == pseudonymise("b")
    assert values[4] == pseudonymise("12") and values[2] == ""


# -- the environment -----------------------------------------------------------------------------
def test_env_secret_with_rotations() -> None:
    value = f"2025-01:{A},2025-06:{B}"
    keyring = keyring_from_env("saint-denis", {"CITEPLUS_PSEUDONYM_SECRET_SAINT_DENIS": value})
    assert keyring.epochs == ["2025-01", "2025-06"]
    assert keyring.secret_for("2024-03").value == A  # the earliest covers earlier epochs
    assert keyring.secret_for("2025-05").value == A
    assert keyring.secret_for("2025-06").value == B


@pytest.mark.parametrize("value", ["short", f"2025-13:{A},x", f"2025-01:{A},2025-02:tiny"])
def test_bad_env_secrets_are_refused_without_quoting_them(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        keyring_from_env("lyon", {"CITEPLUS_PSEUDONYM_SECRET_LYON": value})
    assert "CITEPLUS_PSEUDONYM_SECRET_LYON" in str(caught.value)
    assert A not in str(caught.value) and "tiny" not in str(caught.value)


# -- keyring files ---------------------------------------------------------------------------
def test_init_creates_a_private_keyring_once(tmp_path: Path) -> None:
    path, created = init_keyring(tmp_path / "keys", "lyon")
    assert created and path == tmp_path / "keys" / "lyon.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    before = path.read_bytes()
    assert init_keyring(tmp_path / "keys", "lyon") == (path, False)
    assert path.read_bytes() == before
    keyring = read_keyring(path, "lyon")
    assert keyring.epochs == [keys.FIRST_EPOCH] and len(keyring.secrets[0].value) >= 32


def test_a_keyring_others_can_read_is_refused(tmp_path: Path) -> None:
    path, _ = init_keyring(tmp_path, "lyon")
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_keyring(path, "lyon")


def test_a_missing_keyring_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="citeplus keys init --city lyon"):
        KeyStore(tmp_path, environ={}).pseudonymiser("lyon", "2025-01")


def test_rotation_keeps_earlier_epochs_and_changes_later_ones(tmp_path: Path) -> None:
    init_keyring(tmp_path, "lyon")
    store = KeyStore(tmp_path, environ={})
    before = {
        e: store.pseudonymiser("lyon", e)("meter-1") for e in ("2025-10", "2025-11", "2025-12")
    }
    now = us(2025, 11, 15) / 1e6
    path, epoch = rotate_keyring(tmp_path, "lyon", now=now)
    assert epoch == "2025-12"  # default: the next epoch
    fresh = KeyStore(tmp_path, environ={})  # a restarted service
    assert fresh.pseudonymiser("lyon", "2025-10")("meter-1") == before["2025-10"]
    assert fresh.pseudonymiser("lyon", "2025-11")("meter-1") == before["2025-11"]
    assert fresh.pseudonymiser("lyon", "2025-12")("meter-1") != before["2025-12"]
    document = json.loads(path.read_text())
    assert [s["from_epoch"] for s in document["secrets"]] == [keys.FIRST_EPOCH, "2025-12"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_running_store_picks_up_a_future_rotation(tmp_path: Path) -> None:
    init_keyring(tmp_path, "lyon")
    store = KeyStore(tmp_path, environ={})
    old = store.pseudonymiser("lyon", "2025-11")("m")
    rotate_keyring(tmp_path, "lyon", "2025-12", now=us(2025, 11, 15) / 1e6)
    assert store.pseudonymiser("lyon", "2025-11")("m") == old
    assert store.pseudonymiser("lyon", "2025-12")("m") == KeyStore(
        tmp_path, environ={}
    ).pseudonymiser("lyon", "2025-12")("m")


@pytest.mark.parametrize(("epoch", "words"), [("2025-10", "in the past"), ("2025-13", "YYYY-MM")])
def test_rotation_refuses_past_or_malformed_epochs(tmp_path: Path, epoch: str, words: str) -> None:
    init_keyring(tmp_path, "lyon")
    with pytest.raises(ConfigError, match=words):
        rotate_keyring(tmp_path, "lyon", epoch, now=us(2025, 11, 15) / 1e6)


def test_rotation_twice_from_the_same_epoch_is_refused(tmp_path: Path) -> None:
    init_keyring(tmp_path, "lyon")
    rotate_keyring(tmp_path, "lyon", "2026-01", now=us(2025, 11, 15) / 1e6)
    with pytest.raises(ConfigError, match="already takes effect"):
        rotate_keyring(tmp_path, "lyon", "2025-12", now=us(2025, 11, 15) / 1e6)


# -- commands --------------------------------------------------------------------------------
def test_keys_commands_never_print_a_secret(tmp_path: Path, capsys, monkeypatch) -> None:
    for name in list(os.environ):
        if name.startswith(keys.ENV_PREFIX):
            monkeypatch.delenv(name)
    keys_dir = str(tmp_path / "keys")
    assert main(["keys", "init", "--all", "--keys-dir", keys_dir]) == 0
    assert main(["keys", "rotate", "--city", "nice", "--keys-dir", keys_dir]) == 0
    assert main(["keys", "list", "--keys-dir", keys_dir]) == 0
    printed = capsys.readouterr().out
    assert "lyon.json (created; mode 0600)" in printed and "new secret effective from" in printed
    for path in (tmp_path / "keys").glob("*.json"):
        for secret in json.loads(path.read_text())["secrets"]:
            assert secret["secret"] not in printed
