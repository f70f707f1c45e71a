"""What each partner reads (pure: the policy, the DDL text) and the users file's
partner bindings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from services.cli import main
from services.policy.sharing import SharingPolicy
from services.publish.partner_views import (
    database_of,
    entity_access,
    is_personal,
    partner_scope,
    view_statements,
)
from services.publish.sql_users import UserStore, write_private
from services.runtime.cities import CityConfig, SourceConfig
from services.runtime.errors import ConfigError
from services.runtime.paths import DEPLOY_DIR

SHARED = SharingPolicy("shared", ("grenoble",))
OPEN = SharingPolicy("open", (), "ODbL-1.0")


def test_entity_level_rows_of_a_personal_source_only_for_a_named_partner() -> None:
    assert entity_access(SHARED, False, "grenoble")
    assert entity_access(SHARED, True, "grenoble")
    assert not entity_access(SHARED, False, "annecy")
    assert entity_access(OPEN, False, "annecy")
    assert not entity_access(OPEN, True, "annecy")  # open personal: never row by row
    assert not entity_access(SharingPolicy(), False, "grenoble")  # internal
    assert not entity_access(OPEN, False, "public")


def test_a_source_that_does_not_say_it_is_not_personal_counts_as_personal() -> None:
    """The policy module's reading (services/policy/access.py), not a second one: an
    energy source without a privacy section is a household's meter."""
    undeclared = SourceConfig("lyon", "m", "csv", "m", "energy", "id", "t", sharing=None)
    declared = SourceConfig(
        "lyon", "m", "csv", "m", "energy", "id", "t", privacy={"personal": False}
    )
    assert is_personal(undeclared) and not is_personal(declared)


def source(source_id: str, sharing: dict | None, personal: bool = False) -> SourceConfig:
    return SourceConfig(
        "lyon", source_id, "csv", source_id, "energy", "id", "t",
        privacy={"personal": personal}, sharing=sharing,
    )  # fmt: skip


def test_a_scope_lists_the_datasets_and_the_views_filter_by_them() -> None:
    city = CityConfig(
        "lyon",
        "Lyon",
        "Europe/Paris",
        (
            source("a", {"level": "open", "licence": "ODbL-1.0"}),
            source("b", {"level": "shared", "partners": ["grenoble"]}, personal=True),
            source("c", {"level": "open", "licence": "ODbL-1.0"}, personal=True),
            source("d", None),
        ),
    )
    scope = partner_scope("grenoble", {"lyon": city}, SharingPolicy())
    assert [g.source for g in scope.grants] == ["a", "b"]
    assert scope.aggregate_cities == ()
    ddl = "\n".join(view_statements(scope))
    assert "source = 'a'" in ddl and "source = 'b'" in ddl
    assert "source = 'c'" not in ddl and "source = 'd'" not in ddl
    assert "energy_aggregates_released FINAL WHERE 0" in ddl
    assert "default.energy_aggregates " not in ddl  # never the provisional table
    assert database_of("saint-etienne") == "partner_saint_etienne"


def test_old_users_files_read_as_before_and_bindings_survive_a_new_secret(
    tmp_path: Path,
) -> None:
    store = UserStore(tmp_path)
    write_private(store.path, json.dumps({"users": {}}))  # a file from before partners
    assert store.users() == {} and store.partners() == {}
    store.add("staff")
    assert "partners" not in json.loads(store.path.read_text())  # still the old shape
    store.add("ana", partner="grenoble")
    store.add("ana")  # a new secret, same partner
    assert store.partner("ana") == "grenoble" and store.partner("staff") is None
    store.remove("ana")
    assert store.partners() == {}


def test_a_binding_that_cannot_be_read_is_refused_not_ignored(tmp_path: Path) -> None:
    store = UserStore(tmp_path)
    document = {"users": {"ana": "x"}, "partners": {"ana": ["grenoble"]}}
    write_private(store.path, json.dumps(document))
    with pytest.raises(ConfigError, match="not a partner code"):
        store.partner("ana")


def test_sql_users_add_takes_only_a_partner_a_city_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cities = tmp_path / "cities"
    shutil.copytree(DEPLOY_DIR / "cities" / "registries", cities / "registries")
    text = (DEPLOY_DIR / "cities" / "lyon.yaml").read_text()
    opened = "sharing: {level: open, licence: ODbL-1.0}"
    assert opened in text
    shared = text.replace(opened, "sharing: {level: shared, partners: [grenoble]}", 1)
    (cities / "lyon.yaml").write_text(shared)
    monkeypatch.setenv("CITEPLUS_NODE_STATE_DIR", str(tmp_path / "state"))
    add = ["sql-users", "add", "ana", "--cities", str(cities), "--partner"]
    assert main([*add, "annecy"]) != 0
    assert "names 'annecy' as a partner (partners named: grenoble)" in capsys.readouterr().err
    assert main([*add, "public"]) != 0
    assert "anonymous callers" in capsys.readouterr().err
    assert main([*add, "grenoble"]) == 0
    assert "reads partner_grenoble only" in capsys.readouterr().err
    assert main(["sql-users", "list"]) == 0
    assert "ana\tpartner grenoble" in capsys.readouterr().out
