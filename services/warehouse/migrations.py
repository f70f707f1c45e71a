"""Versioned, idempotent DDL migrations from ``deploy/clickhouse/NNN_name.sql``.

Applied in order at start-up; each applied version is recorded in
``schema_migrations`` so a node upgraded later applies only what is new. The
statements themselves are idempotent too (IF NOT EXISTS), so a crash between a
statement and its record is harmless.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from services.runtime.errors import ConfigError
from services.runtime.paths import DEPLOY_DIR
from services.warehouse.port import Warehouse

DDL_DIR = DEPLOY_DIR / "clickhouse"
_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def split_statements(sql: str) -> list[str]:
    """Statements of a file: ``;``-separated, comments dropped (no ``;`` inside strings)."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]


def load_migrations(directory: Path = DDL_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise ConfigError("expected NNN_name.sql", source=str(path))
        statements = tuple(split_statements(path.read_text(encoding="utf-8")))
        migrations.append(Migration(int(match.group(1)), match.group(2), statements))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise ConfigError("two migrations share a version number", source=str(directory))
    return migrations


def applied_versions(warehouse: Warehouse) -> set[int]:
    warehouse.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version UInt32, name String, applied_at DateTime DEFAULT now()) "
        "ENGINE = MergeTree ORDER BY version"
    )
    table = warehouse.query_arrow("SELECT version FROM schema_migrations")
    return set(table.column("version").to_pylist()) if table.num_rows else set()


def migrate(warehouse: Warehouse, directory: Path = DDL_DIR) -> list[str]:
    """Apply the migrations not yet applied; returns their names."""
    done = applied_versions(warehouse)
    applied = []
    for migration in load_migrations(directory):
        if migration.version in done:
            continue
        for statement in migration.statements:
            warehouse.command(statement)
        warehouse.command(
            "INSERT INTO schema_migrations (version, name) "
            f"VALUES ({migration.version}, '{migration.name}')"
        )
        applied.append(f"{migration.version:03d}_{migration.name}")
    return applied
