"""The one access rule (services/policy/access.py): a table of who may see a dataset
and who may read its entities, the public audience reserved, and personal sources
recognised as anonymise recognises them in the repository's city files."""

from __future__ import annotations

import pytest

from services.anonymise.policy import parse_policy
from services.federation.calls import Caller
from services.policy.access import (
    PUBLIC_AUDIENCE,
    may_read_entities,
    may_see,
    source_is_personal,
)
from services.policy.sharing import SharingPolicy, parse_sharing
from services.runtime.cities import SourceConfig, load_cities
from services.runtime.errors import ConfigError
from services.runtime.paths import DEPLOY_DIR

HOME = "lyon"
OPEN = SharingPolicy("open", (), "ODbL-1.0")
TO_PARIS = SharingPolicy("shared", ("paris",), None)
INTERNAL = SharingPolicy()

# (policy, personal, identity, on_behalf_of, may see the dataset, may read its entities)
CASES = [
    # open, not personal: everyone, relayed or not
    (OPEN, False, "paris", None, True, True),
    (OPEN, False, HOME, PUBLIC_AUDIENCE, True, True),
    (OPEN, False, PUBLIC_AUDIENCE, None, True, True),
    (OPEN, False, "nice", "paris", True, True),
    # open but personal: the dataset is listed, its entities go to nobody but the node
    (OPEN, True, HOME, None, True, True),
    (OPEN, True, HOME, PUBLIC_AUDIENCE, True, False),
    (OPEN, True, PUBLIC_AUDIENCE, None, True, False),
    (OPEN, True, "paris", None, True, False),
    (OPEN, True, HOME, "paris", True, False),
    # shared with paris, personal: paris, and the node relaying for paris
    (TO_PARIS, True, "paris", None, True, True),
    (TO_PARIS, True, HOME, "paris", True, True),
    (TO_PARIS, True, HOME, None, True, True),
    (TO_PARIS, True, HOME, PUBLIC_AUDIENCE, False, False),
    (TO_PARIS, True, HOME, "nice", False, False),
    (TO_PARIS, True, "nice", None, False, False),
    (TO_PARIS, True, "nice", "paris", False, False),  # relaying never widens
    (TO_PARIS, True, "paris", "nice", False, False),
    (TO_PARIS, True, "paris", HOME, True, False),  # the node only for itself, unrelayed
    # shared, not personal
    (TO_PARIS, False, HOME, "paris", True, True),
    (TO_PARIS, False, HOME, PUBLIC_AUDIENCE, False, False),
    # internal: never, not even the node itself
    (INTERNAL, False, HOME, None, False, False),
    (INTERNAL, True, "paris", None, False, False),
    (INTERNAL, False, PUBLIC_AUDIENCE, None, False, False),
]


@pytest.mark.parametrize(("policy", "personal", "identity", "relayed", "sees", "reads"), CASES)
def test_access_table(
    policy: SharingPolicy,
    personal: bool,
    identity: str,
    relayed: str | None,
    sees: bool,
    reads: bool,
) -> None:
    assert may_see(policy, identity, HOME, relayed) is sees
    assert may_read_entities(policy, identity, HOME, relayed, personal=personal) is reads
    # The federation's Caller asks the same module: one rule, not two.
    caller = Caller(identity, relayed)
    assert caller.may_see(policy, HOME) is sees
    assert caller.may_read_entities(policy, HOME, personal=personal) is reads


def test_entities_are_never_more_than_the_dataset() -> None:
    for policy, personal, identity, relayed, _, _ in CASES:
        if may_read_entities(policy, identity, HOME, relayed, personal=personal):
            assert may_see(policy, identity, HOME, relayed)


def test_public_is_reserved_and_never_a_partner() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_sharing(
            {"level": "shared", "partners": ["paris", PUBLIC_AUDIENCE]},
            source="lyon.yaml",
            key="sources[0].sharing",
        )
    message = str(caught.value)
    assert "sources[0].sharing.partners" in message and "level: open" in message


def source(privacy: object, domain: str = "mobility") -> SourceConfig:
    return SourceConfig(
        city="lyon",
        id="s",
        format="ndjson",
        dataset="d",
        domain=domain,
        entity="id",
        token="env:T",
        privacy=privacy,
    )


def test_personal_sources_are_recognised() -> None:
    assert source_is_personal(source({"personal": True}))
    assert not source_is_personal(source({"personal": False}, domain="energy"))
    assert source_is_personal(source({"fields": {"prm": "identifier"}}))
    assert source_is_personal(
        source({"fields": {"pos": {"class": "quasi-identifier", "grid": 200}}})
    )
    assert source_is_personal(source({"fields": {"v": "measure"}}, domain="water"))
    assert not source_is_personal(source({"fields": {"v": "measure"}}))
    assert source_is_personal(source(None))  # no policy: nothing says it is not


def test_personal_as_anonymise_decides_for_every_city_file() -> None:
    """The repository's city files: the access rule and anonymise agree on every source."""
    cities = load_cities(DEPLOY_DIR / "cities")
    checked = 0
    for city in cities.values():
        for index, entry in enumerate(city.sources):
            expected = parse_policy(entry, city, index).personal
            assert source_is_personal(entry) is expected, f"{city.code}/{entry.id}"
            checked += 1
    assert checked > 20
