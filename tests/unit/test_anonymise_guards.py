"""Guards against weak settings: guessable pseudonymisation secrets and grids too
fine to generalise a position are refused at load, naming where they came from.

The attacker's view: with a guessable secret, anyone computes the pseudonym of
every 14-digit meter number and joins released data back to households; with a
1 m grid, a "generalised" position is the home's address again.
"""

from __future__ import annotations

import base64
import json
import os
import random
import secrets
from pathlib import Path

import pytest

from services.anonymise.policy import MIN_GRID_METRES, Grid
from services.cli import main
from services.privacy import keys
from services.privacy.entropy import MIN_BITS, estimate_bits
from services.privacy.keys import (
    KeyStore,
    init_keyring,
    keyring_from_env,
    keyring_path,
    read_keyring,
)
from services.runtime.cities import load_cities
from services.runtime.errors import ConfigError
from services.runtime.paths import CITIES_DIR
from testkit.anonymise import policy_of
from testkit.fixture_secrets import fixture_secret

VARIABLE = "CITEPLUS_PSEUDONYM_SECRET_LYON"
_ALPHABET = random.Random(13)

WEAK = {
    "one character repeated": "x" * 32,
    "the old test secret": "integration-secret-" + "x" * 32,
    "a short pattern repeated": "abc" * 11,
    "a word repeated": "password" * 4,
    "a word and a sequence": "citeplussecret-0123456789abcdefgh",
    "the alphabet": "abcdefghijklmnopqrstuvwxyz0123456789",
    "keyboard rows": "azertyuiopqsdfghjklmwxcvbn0123456789",
    "a two-letter alphabet": "".join(_ALPHABET.choice("01") for _ in range(64)),
    "decimal digits only": "".join(_ALPHABET.choice("0123456789") for _ in range(36)),
    "a passphrase of words": "lyon-metropole-citeplus-pseudonyms",
    "words glued together": "LyonMetropoleCiteplusPseudonymSecret",
}


# -- the estimate ------------------------------------------------------------------------------
@pytest.mark.parametrize("secret", list(WEAK.values()), ids=list(WEAK))
def test_guessable_secrets_score_under_the_threshold(secret: str) -> None:
    assert len(secret) >= keys.MIN_SECRET_CHARS  # long enough: only the entropy refuses it
    assert estimate_bits(secret) < MIN_BITS


def test_random_secrets_in_every_usual_encoding_pass() -> None:
    """32 random bytes as base64url (what `citeplus keys init` writes), base64, hex."""
    encodings = {
        "base64url": lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode(),
        "base64": lambda b: base64.b64encode(b).decode(),
        "hex": lambda b: b.hex(),
    }
    for name, encode in encodings.items():
        scores = [estimate_bits(encode(secrets.token_bytes(32))) for _ in range(300)]
        assert min(scores) >= MIN_BITS + 40, name  # a wide margin, not a coin toss
    assert all(estimate_bits(keys.new_secret()) >= MIN_BITS for _ in range(300))


# -- refused at load, named, never quoted ---------------------------------------------------------
@pytest.mark.parametrize("secret", list(WEAK.values()), ids=list(WEAK))
def test_a_weak_env_secret_is_refused_naming_the_variable(secret: str) -> None:
    with pytest.raises(ConfigError) as caught:
        keyring_from_env("lyon", {VARIABLE: secret})
    message = str(caught.value)
    assert VARIABLE in message and "estimated entropy" in message
    assert not any(secret[i : i + 10] in message for i in range(len(secret) - 9))


def test_a_weak_secret_in_a_rotation_list_is_named_by_its_position() -> None:
    value = f"2025-01:{fixture_secret('a')},2025-06:{'ab' * 20}"
    with pytest.raises(ConfigError, match=f"{VARIABLE}: item 2: the secret is too guessable"):
        keyring_from_env("lyon", {VARIABLE: value})


def test_a_weak_secret_in_a_keyring_file_is_refused_naming_file_and_key(tmp_path: Path) -> None:
    path, _ = init_keyring(tmp_path, "lyon")
    document = json.loads(path.read_text())
    document["secrets"].append({"from_epoch": "2026-01", "secret": "s" * 40})
    path.write_text(json.dumps(document))
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError) as caught:
        read_keyring(path, "lyon")
    message = str(caught.value)
    assert f"{path}: secrets[1].secret" in message and "estimated entropy" in message
    assert "ssssss" not in message and document["secrets"][0]["secret"][:6] not in message
    # The service refuses to start on it, as on a missing keyring.
    with pytest.raises(ConfigError, match="estimated entropy"):
        KeyStore(tmp_path, environ={}).check(["lyon"])


def test_a_strong_secret_is_accepted() -> None:
    keyring = keyring_from_env("lyon", {VARIABLE: secrets.token_hex(32)})
    assert keyring is not None and keyring.origin == VARIABLE


def test_generated_keyrings_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`citeplus keys init` and `keys rotate` (which `citeplus up`'s dev secrets and
    deploy/compose/make_secrets.py both use: init_keyring) write keyrings the guard accepts."""
    from services.privacy.keys import ensure_dev_keyrings

    for name in list(os.environ):
        if name.startswith(keys.ENV_PREFIX):
            monkeypatch.delenv(name)
    keys_dir = tmp_path / "keys"
    assert main(["keys", "init", "--all", "--keys-dir", str(keys_dir)]) == 0
    assert main(["keys", "rotate", "--city", "lyon", "--keys-dir", str(keys_dir)]) == 0
    cities = load_cities(CITIES_DIR)
    store = KeyStore(keys_dir, environ={})
    assert set(store.check(sorted(cities))) == set(cities)
    assert len(read_keyring(keyring_path(keys_dir, "lyon"), "lyon").secrets) == 2
    dev_keys = ensure_dev_keyrings(tmp_path / "state", cities)
    assert set(KeyStore(dev_keys, environ={}).check(sorted(cities))) == set(cities)


# -- grids ------------------------------------------------------------------------------------
@pytest.mark.parametrize("metres", [1, 10, 99, 99.9])
def test_a_grid_under_100_m_is_refused_naming_file_and_key(tmp_path: Path, metres: float) -> None:
    privacy = {"version": "1", "fields": {"pos": {"class": "quasi-identifier", "grid": metres}}}
    with pytest.raises(ConfigError) as caught:
        policy_of(tmp_path, privacy)
    message = str(caught.value)
    assert "testville.yaml" in message and "sources[0].privacy.fields.pos.grid" in message
    assert f"at least {MIN_GRID_METRES} m" in message


@pytest.mark.parametrize("metres", [100, 250, 1000])
def test_a_grid_of_100_m_or_more_is_accepted(tmp_path: Path, metres: int) -> None:
    privacy = {"version": "1", "fields": {"pos": {"class": "quasi-identifier", "grid": metres}}}
    assert policy_of(tmp_path, privacy).fields["pos"].generalisation == Grid(float(metres))


def test_a_grid_built_in_code_is_held_to_the_same_floor() -> None:
    with pytest.raises(ValueError, match="at least 100 m"):
        Grid(1.0)


def test_no_shipped_policy_declares_a_finer_grid() -> None:
    from services.anonymise.policy import load_policies

    grids = [
        rule.generalisation.metres
        for policy in load_policies(load_cities(CITIES_DIR))
        for rule in [*policy.fields.values(), *policy.attributes.values()]
        if isinstance(rule.generalisation, Grid)
    ]
    assert grids and min(grids) >= MIN_GRID_METRES
