"""``citeplus api keys``: what an operator types and reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.api.keys import KeyStore, keys_path
from services.cli import main
from testkit.city_files import VALID_SOURCE, city_yaml, write_city


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CITEPLUS_NODE_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def test_create_list_revoke(state: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cities = tmp_path / "cities"
    cities.mkdir()
    shared = VALID_SOURCE + "    sharing: {level: shared, partners: [lyon]}\n"
    write_city(cities, city_yaml(shared))
    args = ["api", "keys", "create", "--application", "Vélo app", "--cities", str(cities)]
    assert main([*args, "--partner", "lyon", "--rate", "20/s"]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert out.count("\n") == 1 and "." in token  # the key alone on standard output
    key_id = token.split(".")[0]
    assert key_id in err and "shown once" in err and "partner lyon" in err
    assert KeyStore(keys_path(state)).authenticate(token) is not None

    assert main(["api", "keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert key_id in listing and "Vélo app" in listing and "lyon" in listing
    assert token.split(".")[1] not in listing

    assert main(["api", "keys", "revoke", key_id]) == 0
    assert "revoked" in capsys.readouterr().err
    assert main(["api", "keys", "list"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert KeyStore(keys_path(state)).authenticate(token) is None


def test_mistakes_are_refused_with_what_to_do(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cities = tmp_path / "cities"
    cities.mkdir()
    write_city(cities, city_yaml())
    base = ["api", "keys", "create", "--application", "app", "--cities", str(cities)]
    assert main([*base, "--partner", "atlantis"]) == 2
    assert "no city file names partner 'atlantis'" in capsys.readouterr().err
    assert main([*base, "--partner", "public"]) == 2
    assert "without --partner" in capsys.readouterr().err
    assert main([*base, "--rate", "fast"]) == 2
    assert "like 10/s" in capsys.readouterr().err
    assert main(["api", "keys", "revoke", "k0000000000000000"]) == 2
    assert "citeplus api keys list" in capsys.readouterr().err
    assert not keys_path(state).exists()


def test_a_key_may_hold_its_own_number_of_subscriptions(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cities = tmp_path / "cities"
    cities.mkdir()
    write_city(cities, city_yaml())
    base = ["api", "keys", "create", "--application", "alerts", "--cities", str(cities)]
    assert main([*base, "--max-subscriptions", "100"]) == 0
    out, err = capsys.readouterr()
    assert "at most 100 subscriptions" in err
    key = KeyStore(keys_path(state)).keys()[out.strip().split(".")[0]]
    assert key.max_subscriptions == 100
    assert main([*base, "--max-subscriptions", "-1"]) == 2
    assert "--max-subscriptions is 0 or more" in capsys.readouterr().err
