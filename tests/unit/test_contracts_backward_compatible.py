"""Every contract in avro/ must read data written by every committed version of
it (BACKWARD_TRANSITIVE): topics keep data for weeks and partners replay them.

The versions compared are those of the `main` branch and of every commit that
touched avro/; a working-tree change that breaks one of them fails here before
it can land.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from services.runtime.compat import incompatibilities
from services.runtime.paths import REPO_ROOT
from services.runtime.schemas import build_record_schema, load_schemas


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=True
    ).stdout


def committed_revisions() -> list[str]:
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        return []
    revisions: list[str] = []
    for ref in ("main", "origin/main"):
        try:
            revisions.append(git("rev-parse", "--verify", "-q", ref).strip())
        except subprocess.CalledProcessError:
            pass
    try:
        revisions += git("log", "--format=%H", "--", "avro/").split()
    except subprocess.CalledProcessError:
        pass
    return list(dict.fromkeys(r for r in revisions if r))


def contracts_at(revision: str) -> dict[str, dict]:
    names = git("ls-tree", "--name-only", f"{revision}:avro/").split()
    documents = {}
    for name in names:
        if name.endswith(".avsc"):
            doc = json.loads(git("show", f"{revision}:avro/{name}"))
            documents[f"{doc.get('namespace')}.{doc['name']}"] = doc
    return {
        doc["name"]: build_record_schema(full, documents).expanded
        for full, doc in documents.items()
    }


REVISIONS = committed_revisions()


@pytest.mark.skipif(not REVISIONS, reason="no git history of avro/ to compare with")
@pytest.mark.parametrize("revision", REVISIONS, ids=lambda r: r[:10])
def test_current_contracts_read_committed_versions(revision: str) -> None:
    current = load_schemas()
    try:
        old_versions = contracts_at(revision)
    except subprocess.CalledProcessError:
        pytest.skip(f"{revision[:10]} has no avro/ directory")
    problems = []
    for name, old in old_versions.items():
        if name not in current:
            problems.append(f"{name}: contract removed (topics still hold its data)")
            continue
        problems += [f"{name}.{p}" for p in incompatibilities(current[name].expanded, old)]
    assert not problems, f"not backward compatible with {revision[:10]}:\n" + "\n".join(problems)


def test_breaking_change_would_be_caught(tmp_path: Path) -> None:
    """The guard itself can fail: a field added without a default is flagged."""
    current = load_schemas()["Observation"].expanded
    broken = json.loads(json.dumps(current))
    broken["fields"].append({"name": "new_required", "type": "string"})
    assert incompatibilities(broken, current) == [
        "new_required: new field without a default cannot read old data"
    ]
