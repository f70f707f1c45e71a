"""``citeplus sql-users add|remove|list``: who may query the warehouse.

The users live in ``<state>/sql/users.json`` (scrypt hashes, mode 0600; see
sql_users.py). A running publish service sees changes at the next query.
"""

from __future__ import annotations

import argparse
import sys

from services.publish.sql_users import OPERATOR, UserStore, ensure_operator
from services.runtime.commands import Command, option
from services.runtime.config import load_node_config
from services.runtime.errors import CiteplusError


def _store() -> UserStore:
    """The node's users file; created with the operator's user if it does not exist yet,
    so that the local ``citeplus sql`` keeps working after a first ``add``."""
    state_dir = load_node_config().state_dir
    ensure_operator(state_dir)
    return UserStore(state_dir)


def add_command(args: argparse.Namespace) -> int:
    store = _store()
    secret = None
    if args.secret_stdin:
        secret = sys.stdin.readline().rstrip("\n")
        if len(secret) < 16:
            raise CiteplusError("a secret of at least 16 characters, please")
    replaced = args.name in store.users()
    secret = store.add(args.name, secret)
    print(
        f"{'replaced' if replaced else 'added'} SQL user {args.name} in {store.path}",
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
    for name in sorted(_store().users()):
        print(name)
    return 0


SQL_USERS = Command(
    "sql-users",
    "who may query the warehouse (ClickHouse HTTP interface): add, remove, list users",
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
            "once on standard output, unless --secret-stdin reads one.",
            options=(
                option("name", help="lowercase letters, digits, '._-'"),
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
        Command("list", "the user names (never secrets)", list_command),
    ),
)
