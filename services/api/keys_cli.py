"""``citeplus api keys create|list|revoke``: the API keys of this node.

Keys live in ``<state>/api/keys.json`` (SHA-256 digests, mode 0600; keys.py says
why). A running api service sees a created or revoked key within ``api.keys_reload_s``
(1 s by default), without a restart. The token is printed once, on standard output
alone, so that a script can capture it: ``KEY=$(citeplus api keys create ...)``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from services.api.audience import PUBLIC_AUDIENCE
from services.api.keys import ApiKey, KeyStore, keys_path, parse_rate
from services.policy.federation import load_federation
from services.policy.sharing import partners_of, sharing_policies
from services.runtime.cities import load_cities
from services.runtime.commands import Command, cities_option, option
from services.runtime.config import NodeConfig, load_node_config
from services.runtime.errors import CiteplusError


def _store(node: NodeConfig) -> KeyStore:
    return KeyStore(keys_path(node.state_dir))


def known_partners(node: NodeConfig, cities_dir: Path) -> list[str]:
    """The partners a key may be bound to: those the city files share datasets with, and
    those the federation file shares energy aggregates with."""
    partners = set(partners_of(sharing_policies(load_cities(cities_dir))))
    partners.update(load_federation(node).energy_aggregates.partners)
    partners.discard(PUBLIC_AUDIENCE)
    return sorted(partners)


def check_partner(partner: str, known: list[str], node_identity: str = "") -> None:
    if partner == node_identity:
        raise CiteplusError(
            f"{partner!r} is this node's own identity: a key bound to it would read what only "
            "the node may see (personal entity-level data); bind the key to a partner"
        )
    if partner == PUBLIC_AUDIENCE:
        raise CiteplusError(
            f"{PUBLIC_AUDIENCE!r} is the audience of every caller without a partner; "
            "create the key without --partner for open data"
        )
    if partner not in known:
        named = ", ".join(known) or "none yet"
        raise CiteplusError(
            f"no city file names partner {partner!r} (partners named: {named}); a key bound "
            "to a partner sees what the cities share with it, so name one of those, or add "
            "the partner to a source's sharing section first"
        )


def create_command(args: argparse.Namespace) -> int:
    node = load_node_config()
    if args.partner is not None:
        identity = load_federation(node).identity
        check_partner(args.partner, known_partners(node, args.cities), identity)
    rate = parse_rate(args.rate) if args.rate is not None else None
    store = _store(node)
    key, token = store.create(
        args.application, args.partner, rate, args.burst, args.max_subscriptions
    )
    scope = f"partner {key.partner}" if key.partner else "open data only"
    limit = f"{key.rate:g}/s" if key.rate else f"{node.api.key_rate:g}/s (node default)"
    if key.max_subscriptions is not None:
        limit += f", at most {key.max_subscriptions} subscriptions"
    print(
        f"created API key {key.key_id} for {key.application!r} ({scope}, {limit}) in "
        f"{store.path}\nthe key (shown once; send it as `Authorization: Bearer <key>` or "
        "`X-API-Key: <key>`):",
        file=sys.stderr,
    )
    print(token)
    return 0


def _row(key: ApiKey) -> str:
    rate = f"{key.rate:g}/s" if key.rate else "default"
    state = f"revoked {key.revoked_at}" if key.revoked_at else "active"
    partner = key.partner or "-"
    application = key.application[:28]
    return f"{key.key_id:18} {application:28} {partner:12} {rate:9} {key.created_at:26} {state}"


def list_command(args: argparse.Namespace) -> int:
    keys = sorted(_store(load_node_config()).keys().values(), key=lambda k: k.created_at)
    if not keys:
        print("no API keys on this node yet: citeplus api keys create --application NAME")
        return 0
    print(f"{'key id':18} {'application':28} {'partner':12} {'rate':9} {'created':26} state")
    for key in keys:
        print(_row(key))
    return 0


def revoke_command(args: argparse.Namespace) -> int:
    store = _store(load_node_config())
    key = store.revoke(args.key_id)
    print(
        f"revoked API key {key.key_id} ({key.application!r}) at {key.revoked_at}; the running "
        "api refuses it within api.keys_reload_s",
        file=sys.stderr,
    )
    return 0


KEYS = Command(
    "keys",
    "API keys of this node: create, list, revoke",
    description="Keys of the common API, issued per node (a peer trusts the node's "
    "certificate, never a key). Kept in <state>/api/keys.json as SHA-256 digests, mode 600. "
    "Without a key a client reads open data at the anonymous rate; a key has its own quota, "
    "and a key bound to a partner also reads what the city files share with that partner.",
    actions=(
        Command(
            "create",
            "issue a key; prints it once on standard output",
            create_command,
            options=(
                option("--application", required=True, help="who the key is for (shown in list)"),
                option(
                    "--partner",
                    default=None,
                    help="bind the key to a partner code named by a city file's sharing",
                ),
                option("--rate", default=None, help="requests per second, like 20/s"),
                option(
                    "--burst", type=int, default=None, help="requests at once (default 2 x rate)"
                ),
                option(
                    "--max-subscriptions",
                    type=int,
                    default=None,
                    help="NGSI-LD subscriptions the key may hold (default: the node's "
                    "api.subscriptions.per_key, 20)",
                ),
                cities_option(),
            ),
        ),
        Command(
            "list", "the keys (ids, applications, partners, state; never secrets)", list_command
        ),
        Command(
            "revoke",
            "revoke a key; its next request is refused (401)",
            revoke_command,
            options=(option("key_id", help="the id shown by create and list (k0123...)"),),
        ),
    ),
)

API = Command(
    "api",
    "the common NGSI-LD API of this node: its keys",
    actions=(KEYS,),
    description="The common API (citeplus service api) serves every city's open data over "
    "NGSI-LD; docs/api.md is its guide. These commands manage who may call it with a key.",
)
