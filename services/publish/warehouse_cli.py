"""``citeplus warehouse migrate|ddl``: the warehouse schema, for operators and deployments.

- ``migrate`` applies the DDL migrations not yet applied to the node's warehouse
  (the ClickHouse server of ``CLICKHOUSE_URL``, else chDB) and exits: what the
  one-shot ``warehouse-migrate`` container of docker-compose.yml runs before
  publish starts. ``--cluster`` applies the generated cluster variant instead.
- ``ddl`` prints the single-node DDL, or with ``--cluster`` its cluster variant
  (``--write`` regenerates ``deploy/clickhouse/cluster/``, ``--check`` says if
  the committed files are stale).
"""

from __future__ import annotations

import argparse
import time

from services.publish.cluster_ddl import (
    CLUSTER_DIR,
    DDL_OPTIONS,
    ddl_command,
    stale,
)
from services.runtime.commands import Command, option
from services.runtime.config import load_node_config
from services.runtime.errors import CiteplusError, InfrastructureError
from services.warehouse.migrations import DDL_DIR, migrate
from services.warehouse.port import open_warehouse


def migrate_command(args: argparse.Namespace) -> int:
    directory = CLUSTER_DIR if args.cluster else DDL_DIR
    if args.cluster:
        differ = stale()
        if differ:
            raise CiteplusError(
                f"the cluster DDL in {CLUSTER_DIR} is stale ({', '.join(differ)}); run "
                "`citeplus warehouse ddl --cluster --write` and deploy that first"
            )
    node = load_node_config()
    deadline = time.monotonic() + args.wait
    while True:
        try:
            warehouse = open_warehouse(node)
            break
        except InfrastructureError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(2)
    try:
        applied = migrate(warehouse, directory)
    finally:
        warehouse.close()
    where = warehouse.description
    if applied:
        for name in applied:
            print(f"applied   {name}")
        print(f"{where}: {len(applied)} migrations applied")
    else:
        print(f"{where}: schema up to date")
    return 0


WAREHOUSE = Command(
    "warehouse",
    "the warehouse schema: apply migrations, print the (cluster) DDL",
    description="ClickHouse DDL of Cité+: deploy/clickhouse/NNN_name.sql for one server "
    "(or chDB), and its generated cluster variant in deploy/clickhouse/cluster/.",
    actions=(
        Command(
            "migrate",
            "apply the pending migrations to the node's warehouse and exit",
            migrate_command,
            description="Apply the migrations not yet recorded in schema_migrations to the "
            "ClickHouse server of CLICKHOUSE_URL (or the node's chDB directory when it is "
            "unset).",
            options=(
                option(
                    "--cluster",
                    action="store_true",
                    help="apply the cluster variant (ON CLUSTER, Replicated + Distributed tables)",
                ),
                option(
                    "--wait",
                    type=float,
                    default=0.0,
                    metavar="SECONDS",
                    help="keep trying to reach the server this long before failing (default: 0)",
                ),
            ),
        ),
        Command(
            "ddl",
            "print the single-node DDL, or its cluster variant (--cluster)",
            ddl_command,
            description="Print the DDL. The cluster variant is generated from the single-node "
            "migrations (services/publish/cluster_ddl.py), so the two cannot drift.",
            options=DDL_OPTIONS,
        ),
    ),
)

COMMANDS = (WAREHOUSE,)
