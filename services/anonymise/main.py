"""Commands of anonymise: the service, key management and a policy check.

- ``citeplus service anonymise``: run the stage (raw.v1 -> anonymised.v1, audit.v1);
- ``citeplus keys init --city C | --all``: create missing keyrings;
- ``citeplus keys rotate --city C [--from-epoch YYYY-MM]``: a new secret from an epoch;
- ``citeplus keys list``: where each city's secret comes from and its epochs;
- ``citeplus privacy check``: validate every source's privacy policy.

No command ever prints a secret.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from services.policy.topics import declared_topics
from services.privacy.keys import (
    KeyStore,
    current_epoch,
    env_variable,
    init_keyring,
    keyring_from_env,
    keys_dir_of,
    rotate_keyring,
)
from services.runtime.cities import load_cities

# The stage's own modules are imported inside the commands on purpose: services/cli.py imports
# every main to build its parser, and a command loads only what it runs.
from services.runtime.commands import Command, OneOf, cities_option, option
from services.runtime.config import load_node_config
from services.runtime.errors import CiteplusError, ConfigError
from services.runtime.service_main import run_stage, stage_options


def _keys_dir(args: argparse.Namespace) -> Path:
    if args.keys_dir is not None:
        return Path(args.keys_dir)
    return keys_dir_of(load_node_config().state_dir)


def _city_codes(args: argparse.Namespace) -> list[str]:
    cities = load_cities(Path(args.cities))
    if getattr(args, "all", False):
        return sorted(cities)
    if args.city not in cities:
        raise CiteplusError(f"unknown city {args.city!r}; known: {', '.join(sorted(cities))}")
    return [args.city]


def serve(args: argparse.Namespace) -> int:
    from services.anonymise.stage import build_stage

    keys_dir = Path(args.keys_dir) if args.keys_dir else None
    return run_stage(
        "anonymise",
        lambda node, contracts, cities, metrics: build_stage(
            node, contracts, cities, metrics, keys_dir=keys_dir
        ),
        args,
        topics=declared_topics,
    )


def keys_init(args: argparse.Namespace) -> int:
    keys_dir = _keys_dir(args)
    for city in _city_codes(args):
        if keyring_from_env(city) is not None:
            print(f"{city:10} secret from {env_variable(city)} (environment); no file needed")
            continue
        path, created = init_keyring(keys_dir, city)
        state = "created" if created else "exists, left unchanged"
        print(f"{city:10} {path} ({state}; mode 0600)")
    return 0


def keys_rotate(args: argparse.Namespace) -> int:
    [city] = _city_codes(args)
    path, epoch = rotate_keyring(_keys_dir(args), city, args.from_epoch)
    print(f"{city}: new secret effective from epoch {epoch} ({path}).")
    print("Records of earlier epochs keep their keys, so replays give the same pseudonyms.")
    if epoch <= current_epoch():
        print(
            "This epoch has begun: restart `citeplus service anonymise` now. Records of "
            f"{epoch} anonymised before the restart keep pseudonyms of the previous secret."
        )
    else:
        print("Running anonymise services pick it up at the first record of that epoch.")
    return 0


def keys_list(args: argparse.Namespace) -> int:
    store = KeyStore(_keys_dir(args))
    args.all = True
    for city in _city_codes(args):
        try:
            keyring = store.keyring(city)
        except ConfigError as exc:
            print(f"{city:10} MISSING  {exc}")
            continue
        epochs = ", ".join(f"from {e}" for e in keyring.epochs)
        print(f"{city:10} {keyring.origin}  secrets: {epochs}")
    return 0


def privacy_check(args: argparse.Namespace) -> int:
    from collections import Counter

    from services.anonymise.policy import load_policies

    policies = load_policies(load_cities(Path(args.cities)))
    for policy in policies:
        classes = Counter(rule.cls for rule in policy.fields.values())
        summary = ", ".join(f"{count} {name}" for name, count in sorted(classes.items()))
        coarsen = policy.coarsening
        extra = "; personal data" if policy.personal else ""
        extra += f"; coarsened to {coarsen.step}" if coarsen else ""
        extra += " per entity and day" if coarsen and coarsen.daily else ""
        extra += "; consent declared" if policy.consent else ""
        print(f"{policy.city}/{policy.source}: version {policy.version}: {summary}{extra}")
    print(f"{len(policies)} privacy policies valid.")
    return 0


KEYS_DIR = option(
    "--keys-dir",
    default=None,
    help="directory of the keyrings (default: <node state dir>/secrets/keys)",
)

SERVICE = Command(
    "anonymise",
    "apply each source's privacy policy: raw.v1 -> anonymised.v1 (+ audit.v1)",
    serve,
    options=(*stage_options(), KEYS_DIR),
)

KEYS = Command(
    "keys",
    "pseudonymisation keys of each city (never printed)",
    description="Each city's secret lives in a keyring file outside the repository "
    "(mode 0600) or in CITEPLUS_PSEUDONYM_SECRET_<CITY>; keys are derived per "
    "epoch (a month of the city's calendar, in its time zone) so that pseudonyms of "
    "different months cannot be linked.",
    actions=(
        Command(
            "init",
            "create the missing keyring(s)",
            keys_init,
            options=(
                OneOf(
                    (
                        option("--city", help="city code"),
                        option("--all", action="store_true", help="every city of the city files"),
                    ),
                    required=True,
                ),
                cities_option(),
                KEYS_DIR,
            ),
        ),
        Command(
            "rotate",
            "add a new secret effective from an epoch (default: next month)",
            keys_rotate,
            options=(
                option("--city", required=True, help="city code"),
                option(
                    "--from-epoch",
                    default=None,
                    metavar="YYYY-MM",
                    help="first epoch of the new secret",
                ),
                cities_option(),
                KEYS_DIR,
            ),
        ),
        Command(
            "list",
            "where each city's secret comes from, its epochs",
            keys_list,
            options=(cities_option(), KEYS_DIR),
        ),
    ),
)

PRIVACY = Command(
    "privacy",
    "the privacy policies of the city files",
    actions=(
        Command(
            "check",
            "validate every source's privacy policy",
            privacy_check,
            options=(cities_option(),),
        ),
    ),
)

COMMANDS = (KEYS, PRIVACY)
