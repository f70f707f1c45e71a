"""The ClickHouse cluster variant of the warehouse DDL, generated from the single-node one.

``deploy/clickhouse/NNN_name.sql`` is the only DDL written by hand. For a
cluster (shards of replicas, coordinated by ClickHouse Keeper) every statement
of it is translated here, so the two variants cannot drift:

- a table ``T`` becomes ``T_local`` on every host (same columns, partitioning,
  ordering, TTL and settings, on the ``Replicated`` variant of its engine) and
  ``T`` itself, a ``Distributed`` table over the ``T_local`` of every shard: the
  names that services, analysts and the README's questions use do not change;
- a materialised view reads and writes the *local* tables, so each shard
  aggregates its own rows and a query through the Distributed rollup merges the
  partial aggregate states of every shard (``sumMerge``, ``uniqMerge``...);
- ``ALTER``/``DROP`` of a table apply to both of its tables;
- a one-time backfill ``INSERT INTO T SELECT ... FROM S`` runs once, through the
  Distributed tables (read from every shard, written by ``T``'s sharding key).

Everything runs ``ON CLUSTER '{cluster}'`` and replica paths use the
``{shard}``/``{replica}``/``{database}`` macros, so the generated files are the
same for every cluster: each server's configuration names its cluster, shard
and replica (docs/runbook.md). A statement this module does not know how to
translate stops the generation with a message, rather than being copied.

Where rows go is the one decision the single-node DDL cannot carry: the
sharding key of each table that services insert into (``SHARDING_KEYS``). Tables
filled by a materialised view need none (nobody inserts through them).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from services.runtime.commands import OneOf, add_options, option
from services.runtime.errors import CiteplusError
from services.warehouse.migrations import DDL_DIR, Migration, load_migrations

CLUSTER_DIR = DDL_DIR / "cluster"
LOCAL_SUFFIX = "_local"
ON_CLUSTER = "ON CLUSTER '{cluster}'"
REPLICA_PATH = "/clickhouse/tables/{shard}/{database}/%s"

# Deterministic keys only: a batch the sink retries after a crash is split over
# the shards exactly as the first attempt was, so each shard's deduplication
# (the insert's token) recognises its part.
SHARDING_KEYS: dict[str, str] = {
    # One entity's readings on one shard: per-entity queries touch one shard,
    # uniq(entity) states of different shards never count a meter twice.
    "observations": "cityHash64(city, entity)",
    # Every version of a window on one shard: ReplacingMergeTree and FINAL
    # collapse versions per shard, so the key must not spread them.
    "energy_aggregates": "cityHash64(city, zone)",
    "energy_aggregates_released": "cityHash64(city, zone)",
    # The dead-letter sink's batches follow their source partition.
    "dead_letters": "cityHash64(_topic, _partition)",
    # Filled by its view shard-locally (same shard as the entity's readings) and once
    # by the migration's backfill through the Distributed table: the same key.
    "observations_latest": "cityHash64(city, entity)",
    "readings_by_entity": "cityHash64(city, entity)",
}

_CREATE_TABLE = re.compile(
    r"^CREATE\s+TABLE\s+(?P<if_not_exists>IF\s+NOT\s+EXISTS\s+)?(?P<name>\w+)\s*"
    r"\((?P<columns>.*)\)\s*ENGINE\s*=\s*(?P<engine>\w+)(?:\s*\((?P<args>[^()]*)\))?"
    r"(?P<rest>.*)$",
    re.S | re.I,
)
_CREATE_MV = re.compile(
    r"^CREATE\s+MATERIALIZED\s+VIEW\s+(?P<if_not_exists>IF\s+NOT\s+EXISTS\s+)?(?P<name>\w+)"
    r"(?P<middle>.*?)\bAS\s+(?P<select>(?:WITH|SELECT)\b.*)$",
    re.S | re.I,
)
_VIEW_TARGET = re.compile(r"^\s*TO\s+(?P<target>\w+)\s*$", re.I)
_ALTER_TABLE = re.compile(r"^ALTER\s+TABLE\s+(?P<name>\w+)\s+(?P<actions>.*)$", re.S | re.I)
_DROP = re.compile(
    r"^DROP\s+(?P<kind>TABLE|VIEW)\s+(?P<if_exists>IF\s+EXISTS\s+)?(?P<name>\w+)\s*$", re.S | re.I
)
_INSERT_SELECT = re.compile(
    r"^INSERT\s+INTO\s+(?P<name>\w+)\s+(?P<select>(?:WITH|SELECT)\b.*)$", re.S | re.I
)
_TABLE_REFERENCE = re.compile(r"\b(?P<keyword>FROM|JOIN)(?P<space>\s+)(?P<name>\w+)\b", re.I)
# Column changes must reach the Distributed table too; anything else (TTL,
# settings, indexes, projections, partitions) concerns only the stored data.
_COLUMN_ACTION = re.compile(r"^\s*(ADD|DROP|MODIFY|RENAME|COMMENT|CLEAR)\s+COLUMN\b", re.I)


class ClusterDDLError(CiteplusError):
    """A single-node statement has no cluster translation (yet)."""


@dataclass(frozen=True)
class ClusterStatement:
    """One generated statement and the single-node table it comes from."""

    sql: str
    table: str
    kind: str  # "local", "distributed", "view", "alter", "drop"


@dataclass
class _Schema:
    """What the statements seen so far created: tables and materialised views."""

    tables: dict[str, str]  # table -> engine (single-node)
    views: set[str]
    view_targets: set[str]


def _split_actions(actions: str) -> list[str]:
    """ALTER actions separated by top-level commas (not those inside parentheses)."""
    parts, depth, current = [], 0, []
    for char in actions:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return [part for part in parts if part]


def _replicated_engine(table: str, engine: str, args: str | None) -> str:
    if not engine.endswith("MergeTree") or engine.startswith("Replicated"):
        raise ClusterDDLError(
            f"table {table}: engine {engine} has no replicated variant; the warehouse keeps "
            "its data in the MergeTree family only"
        )
    replicated = [f"'{REPLICA_PATH % (table + LOCAL_SUFFIX)}'", "'{replica}'"]
    if args and args.strip():
        replicated.append(args.strip())
    return f"Replicated{engine}({', '.join(replicated)})"


def _cluster_settings(rest: str) -> str:
    # The single-node insert-deduplication window becomes the replicated one
    # (same size): a retried insert is recognised on every replica of a shard.
    return re.sub(
        r"\bnon_replicated_deduplication_window\b", "replicated_deduplication_window", rest
    )


def _create_table(match: re.Match[str], schema: _Schema) -> list[ClusterStatement]:
    name = match["name"]
    if name.endswith(LOCAL_SUFFIX):
        raise ClusterDDLError(f"table {name}: names ending in {LOCAL_SUFFIX} are reserved")
    if name in schema.tables:
        raise ClusterDDLError(f"table {name} is created twice")
    guard = "IF NOT EXISTS " if match["if_not_exists"] else ""
    local = name + LOCAL_SUFFIX
    engine = _replicated_engine(name, match["engine"], match["args"])
    local_sql = (
        f"CREATE TABLE {guard}{local} {ON_CLUSTER}\n({match['columns']})\n"
        f"ENGINE = {engine}{_cluster_settings(match['rest'])}"
    )
    schema.tables[name] = match["engine"]
    return [
        ClusterStatement(local_sql, name, "local"),
        ClusterStatement(_distributed(name, guard), name, "distributed"),
    ]


def _distributed(name: str, guard: str) -> str:
    local = name + LOCAL_SUFFIX
    key = SHARDING_KEYS.get(name)
    arguments = f"'{{cluster}}', currentDatabase(), {local}" + (f", {key}" if key else "")
    return f"CREATE TABLE {guard}{name} {ON_CLUSTER}\nAS {local}\nENGINE = Distributed({arguments})"


def _check_sharding(schema: _Schema) -> None:
    """Tables that services insert into need a declared sharding key."""
    missing = sorted(set(schema.tables) - schema.view_targets - set(SHARDING_KEYS))
    if missing:
        raise ClusterDDLError(
            f"no sharding key for {', '.join(missing)}: declare how rows spread over shards in "
            "SHARDING_KEYS of services/publish/cluster_ddl.py (a deterministic expression of "
            "the columns, e.g. cityHash64(city, entity))"
        )


def _localise(select: str, schema: _Schema) -> str:
    """Point a view's FROM/JOIN at the local tables of the shard."""

    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in schema.tables:
            raise ClusterDDLError(
                f"a materialised view reads {name}, which the DDL has not created before it"
            )
        return f"{match['keyword']}{match['space']}{name}{LOCAL_SUFFIX}"

    return _TABLE_REFERENCE.sub(replace, select)


def _create_view(match: re.Match[str], schema: _Schema) -> list[ClusterStatement]:
    name = match["name"]
    to = _VIEW_TARGET.match(match["middle"])
    target = to["target"] if to else None
    if not target:
        raise ClusterDDLError(
            f"materialised view {name}: write it with TO <table> (a table declared in the DDL), "
            "so that the cluster variant can replicate and distribute that table"
        )
    if target not in schema.tables:
        raise ClusterDDLError(f"materialised view {name} writes to unknown table {target}")
    guard = "IF NOT EXISTS " if match["if_not_exists"] else ""
    schema.views.add(name)
    schema.view_targets.add(target)
    sql = (
        f"CREATE MATERIALIZED VIEW {guard}{name} {ON_CLUSTER} TO {target}{LOCAL_SUFFIX} AS\n"
        f"{_localise(match['select'], schema)}"
    )
    return [ClusterStatement(sql, target, "view")]


def _alter(match: re.Match[str], schema: _Schema) -> list[ClusterStatement]:
    name = match["name"]
    if name not in schema.tables:
        raise ClusterDDLError(f"ALTER TABLE {name}: the DDL has not created that table")
    actions = _split_actions(match["actions"])
    columns = [a for a in actions if _COLUMN_ACTION.match(a)]
    out = [
        ClusterStatement(
            f"ALTER TABLE {name}{LOCAL_SUFFIX} {ON_CLUSTER}\n"
            + ",\n".join(_cluster_settings(a) for a in actions),
            name,
            "alter",
        )
    ]
    if columns:
        out.append(
            ClusterStatement(
                f"ALTER TABLE {name} {ON_CLUSTER}\n" + ",\n".join(columns), name, "alter"
            )
        )
    return out  # stored-data actions (TTL, settings, indexes) concern the local table only


def _drop(match: re.Match[str], schema: _Schema) -> list[ClusterStatement]:
    name, kind = match["name"], match["kind"].upper()
    guard = "IF EXISTS " if match["if_exists"] else ""
    if kind == "VIEW":
        schema.views.discard(name)
        return [ClusterStatement(f"DROP VIEW {guard}{name} {ON_CLUSTER} SYNC", name, "drop")]
    schema.tables.pop(name, None)
    schema.view_targets.discard(name)
    return [
        ClusterStatement(f"DROP TABLE {guard}{name} {ON_CLUSTER} SYNC", name, "drop"),
        ClusterStatement(f"DROP TABLE {guard}{name}{LOCAL_SUFFIX} {ON_CLUSTER} SYNC", name, "drop"),
    ]


def _insert(match: re.Match[str], schema: _Schema) -> list[ClusterStatement]:
    """A backfill: once, between Distributed tables (never ON CLUSTER: each host would
    copy everything again); the target's sharding key places the rows."""
    name = match["name"]
    if name not in schema.tables:
        raise ClusterDDLError(f"INSERT INTO {name}: the DDL has not created that table")
    if name not in SHARDING_KEYS:
        raise ClusterDDLError(
            f"INSERT INTO {name}: a backfill goes through the Distributed table, which needs "
            "a sharding key (SHARDING_KEYS), the one its view's rows follow"
        )
    for source in _TABLE_REFERENCE.finditer(match["select"]):
        if source["name"] not in schema.tables:
            raise ClusterDDLError(f"INSERT INTO {name} reads {source['name']}, not created before")
    return [ClusterStatement(f"INSERT INTO {name}\n{match['select']}", name, "insert")]


def translate(statement: str, schema: _Schema) -> list[ClusterStatement]:
    """The cluster statements of one single-node statement."""
    text = statement.strip()
    for pattern, handler in (
        (_CREATE_TABLE, _create_table),
        (_CREATE_MV, _create_view),
        (_ALTER_TABLE, _alter),
        (_DROP, _drop),
        (_INSERT_SELECT, _insert),
    ):
        match = pattern.match(text)
        if match:
            return handler(match, schema)
    first = " ".join(text.split()[:4])
    raise ClusterDDLError(
        f"no cluster translation for a statement starting {first!r}; add a rule to "
        "services/publish/cluster_ddl.py rather than writing the cluster DDL by hand"
    )


@dataclass(frozen=True)
class ClusterMigration:
    source: Migration
    statements: tuple[ClusterStatement, ...]

    @property
    def filename(self) -> str:
        return f"{self.source.version:03d}_{self.source.name}.sql"

    def render(self) -> str:
        header = (
            f"-- GENERATED from deploy/clickhouse/{self.filename} by "
            "`citeplus warehouse ddl --cluster --write`\n"
            "-- (services/publish/cluster_ddl.py). Do not edit: change the single-node file and\n"
            "-- regenerate; tests/unit/test_cluster_ddl.py fails while this file is stale.\n"
            "-- Needs the macros {cluster}, {shard} and {replica} on every server.\n"
        )
        body = ";\n\n".join(s.sql for s in self.statements)
        return f"{header}\n{body};\n"


def generate(migrations: Sequence[Migration] | None = None) -> list[ClusterMigration]:
    """Translate every single-node migration, in order."""
    if migrations is None:
        migrations = load_migrations(DDL_DIR)
    schema = _Schema(tables={}, views=set(), view_targets=set())
    out = []
    for migration in migrations:
        statements = [s for stmt in migration.statements for s in translate(stmt, schema)]
        out.append(ClusterMigration(migration, tuple(statements)))
    _check_sharding(schema)
    return out


def render_all(migrations: Sequence[Migration] | None = None) -> dict[str, str]:
    """File name -> content of the cluster variant."""
    return {m.filename: m.render() for m in generate(migrations)}


def write(directory: Path = CLUSTER_DIR) -> list[Path]:
    """Write the generated files (and remove stale generated ones); returns what changed."""
    directory.mkdir(parents=True, exist_ok=True)
    wanted = render_all()
    changed = []
    for path in sorted(directory.glob("*.sql")):
        if path.name not in wanted:
            path.unlink()
            changed.append(path)
    for name, text in wanted.items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed


def stale(directory: Path = CLUSTER_DIR) -> list[str]:
    """Names of the committed cluster files that differ from a fresh generation."""
    wanted = render_all()
    present = {p.name: p.read_text(encoding="utf-8") for p in directory.glob("*.sql")}
    names = sorted(set(wanted) | set(present))
    return [name for name in names if wanted.get(name) != present.get(name)]


def single_node_sql(migrations: Iterable[Migration] | None = None) -> str:
    """The single-node DDL as one script (what `migrate` applies, in order)."""
    if migrations is None:
        migrations = load_migrations(DDL_DIR)
    return "".join(
        f"-- {m.version:03d}_{m.name}\n" + "".join(f"{s};\n\n" for s in m.statements)
        for m in migrations
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m services.publish.cluster_ddl`: the same as `citeplus warehouse ddl`."""
    parser = argparse.ArgumentParser(prog="python -m services.publish.cluster_ddl")
    add_options(parser, DDL_OPTIONS)
    return ddl_command(parser.parse_args(argv))


DDL_OPTIONS = (
    option(
        "--cluster",
        action="store_true",
        help="the cluster variant (ReplicatedMergeTree shards, Distributed tables)",
    ),
    OneOf(
        (
            option(
                "--write",
                action="store_true",
                help=f"write the cluster variant to {CLUSTER_DIR.relative_to(DDL_DIR.parents[1])}/",
            ),
            option(
                "--check",
                action="store_true",
                help="exit 1 if the committed cluster files differ from a fresh generation",
            ),
        )
    ),
)


def ddl_command(args: argparse.Namespace) -> int:
    if (args.write or args.check) and not args.cluster:
        raise CiteplusError("--write and --check apply to the cluster variant: add --cluster")
    if args.write:
        changed = write()
        for path in changed:
            print(f"wrote {path}")
        print(f"cluster DDL up to date in {CLUSTER_DIR} ({len(changed)} files changed)")
        return 0
    if args.check:
        differ = stale()
        if differ:
            print(
                f"stale cluster DDL in {CLUSTER_DIR}: {', '.join(differ)}; run "
                "`citeplus warehouse ddl --cluster --write`",
                file=sys.stderr,
            )
            return 1
        print(f"cluster DDL in {CLUSTER_DIR} matches deploy/clickhouse/")
        return 0
    if args.cluster:
        sys.stdout.write("\n".join(render_all().values()))
    else:
        sys.stdout.write(single_node_sql())
    return 0


if __name__ == "__main__":
    sys.exit(main())
