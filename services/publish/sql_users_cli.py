"""``citeplus sql-users add|remove|list``: who may query the warehouse.

The users live in ``<state>/sql/users.json`` (scrypt hashes, mode 0600; see
sql_users.py). A running publish service sees changes at the next query.
"""

from __future__ import annotations

import argparse
import sys

from services.policy.access import PUBLIC_AUDIENCE
from services.policy.federation import load_federation
from services.publish.partner_views import database_of, known_partners
from services.publish.sql_users import OPERATOR, UserStore, ensure_operator
from services.runtime.cities import load_cities
from services.runtime.commands import Command, cities_option, option
from services.runtime.config import load_node_config
from services.runtime.errors import CiteplusError


def _store() -> UserStore:
    """The node's users file; created with the operator's user if it does not exist yet,
    so that the local ``citeplus sql`` keeps working after a first ``add``."""
    state_dir = load_node_config().state_dir
    ensure_operator(state_dir)
    return UserStore(state_dir)


def _known_partner(code: str, args: argparse.Namespace) -> str:
    """``code`` when a city file (or the federation file) names it as a partner."""
    if code == PUBLIC_AUDIENCE:
        raise CiteplusError(
            f"'{PUBLIC_AUDIENCE}' is the audience of anonymous callers, not a partner: "
            "give the analyst an internal user, or the code of a partner city"
        )
    known = known_partners(
        load_cities(args.cities), load_federation(load_node_config()).energy_aggregates
    )
    if code not in known:
        named = ", ".join(sorted(known)) or "none yet"
        raise CiteplusError(
            f"no city file of {args.cities} names {code!r} as a partner (partners named: "
            f"{named}); add it to a source's sharing.partners first, or check the spelling"
        )
    return code


def add_command(args: argparse.Namespace) -> int:
    partner = _known_partner(args.partner, args) if args.partner else None
    store = _store()
    secret = None
    if args.secret_stdin:
        secret = sys.stdin.readline().rstrip("\n")
        if len(secret) < 16:
            raise CiteplusError("a secret of at least 16 characters, please")
    replaced = args.name in store.users()
    secret = store.add(args.name, secret, partner=partner)
    bound = store.partner(args.name)
    reads = f"reads {database_of(bound)} only" if bound else "internal analyst, reads everything"
    print(
        f"{'replaced' if replaced else 'added'} SQL user {args.name} ({reads}) in {store.path}",
        file=sys.stderr,
    )
    if not args.secret_stdin:
        print(
            "its secret (shown once; give it to the user, e.g. as CITEPLUS_SQL_SECRET):",
            file=sys.stderr,
        )
        print(secret)
    return 0


def remove_command(args: argparse.Namespace) -> int:
    store = _store()
    if not store.remove(args.name):
        raise CiteplusError(f"no SQL user {args.name!r} in {store.path}")
    print(f"removed SQL user {args.name}", file=sys.stderr)
    return 0


def list_command(args: argparse.Namespace) -> int:
    store = _store()
    partners = store.partners()
    for name in sorted(store.users()):
        print(f"{name}\tpartner {partners[name]}" if name in partners else f"{name}\tinternal")
    return 0


SQL_USERS = Command(
    "sql-users",
    "who may query the warehouse (internal or a partner's analysts): add, remove, list",
    description="Users of the warehouse's SQL door, publish's ClickHouse HTTP interface "
    "(sql.port, default 8123): citeplus sql, clickhouse-connect, JDBC, Grafana, DBeaver log "
    "in with a user name and its secret as password. Kept in <state>/sql/users.json: "
    f"salted scrypt hashes, mode 600. The node creates '{OPERATOR}' on its first start, "
    "with its secret in <state>/sql/credentials for the local citeplus sql. Others send "
    "CITEPLUS_SQL_USER and CITEPLUS_SQL_SECRET.",
    actions=(
        Command(
            "add",
            "add a user (or give it a new secret); prints a generated secret once",
            add_command,
            description="Add NAME, or replace its secret. A secret is generated and printed "
            "once on standard output, unless --secret-stdin reads one. Without --partner "
            "the user is an internal analyst (reads everything, read-only); with --partner "
            "CODE it reads only the views of database partner_<CODE>: what the city files "
            "share with that partner, released energy aggregates only. Replacing a user's "
            "secret keeps its partner; to change what it reads, remove it and add it again.",
            options=(
                option("name", help="lowercase letters, digits, '._-'"),
                option(
                    "--partner",
                    metavar="CODE",
                    help="bind the user to a partner a city file names (sharing.partners)",
                ),
                cities_option("directory of city files naming the partners"),
                option(
                    "--secret-stdin",
                    action="store_true",
                    help="read the secret from standard input",
                ),
            ),
        ),
        Command(
            "remove",
            "remove a user; its next query is refused",
            remove_command,
            options=(option("name"),),
        ),
        Command("list", "the user names and what each reads (never secrets)", list_command),
    ),
)
