"""A fresh clone of the repository alone runs the tests, the benches and the services.

Nothing reads the workspace folder beside the repository (by a relative path up or by
its absolute path: the samples the tests use are copied into ``tests/fixtures/`` with
their provenance), and
every note the code and the docs cite (``docs/design.md``...) is in the repository."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CODE = ("tests", "bench", "services", "testkit")
CITING = (*CODE, "docs", "deploy")
SKIPPED = {"generated", "__pycache__"}
TEXT = {".py", ".md", ".yaml", ".yml", ".json", ".toml", ".sh", ".txt", ".cfg", ".ini", ""}

# The workspace folder beside the repository, named once so this file never spells a path
# to it; then a path to it spelled out, or joined piece by piece.
NEIGHBOUR = "".join(("sha", "red"))
OUTSIDE = re.compile(
    rf"""\.\./{NEIGHBOUR}|/work/{NEIGHBOUR}|["']\.\.["']\s*,\s*["']{NEIGHBOUR}["']"""
    rf"""|parents\[\d+\]\s*/\s*["']{NEIGHBOUR}["']|\.parent\s*/\s*["']{NEIGHBOUR}["']"""
)
CITED_NOTE = re.compile(r"(?<![\w./-])([\w./-]*[A-Za-z]\.md)\b")


def files(*tops: str) -> list[Path]:
    found = []
    for top in tops:
        for path in (REPO / top).rglob("*"):
            inside = path.relative_to(REPO).parts
            if path.is_file() and path.suffix in TEXT and not SKIPPED & set(inside):
                found.append(path)
    return found


def test_no_file_reads_outside_the_repository() -> None:
    offenders = []
    for path in files(*CODE):
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == [], "copy the file into tests/fixtures/ with its provenance"


def resolves(cited: str, citing: Path) -> bool:
    """A path resolves from the root, docs/ or the citing file; a bare name anywhere."""
    if cited.endswith("LICENSE.md"):  # third-party licence files, named in provenance
        return True
    if "/" not in cited:
        return (REPO / cited).is_file() or any(path.name == cited for path in files(*CITING))
    return any((base / cited).is_file() for base in (REPO, REPO / "docs", citing.parent))


def test_every_cited_note_is_in_the_repository() -> None:
    missing = []
    for path in [*files(*CITING), REPO / "README.md"]:
        if "fixtures" in path.relative_to(REPO).parts:
            continue  # provenance notes name files of the upstream repositories
        for cited in CITED_NOTE.findall(path.read_text(errors="replace")):
            if not resolves(cited, path):
                missing.append(f"{path.relative_to(REPO)} cites {cited}")
    assert missing == [], "write the note under docs/ or drop the citation"


def test_production_code_imports_no_test_support() -> None:
    """services/ is what a node runs: test harnesses and helpers live in testkit/."""
    pattern = re.compile(r"^\s*(from|import)\s+(tests|testkit)\b", re.MULTILINE)
    offenders = [
        str(path.relative_to(REPO))
        for path in files("services")
        if path.suffix == ".py" and pattern.search(path.read_text())
    ]
    assert offenders == []


def test_tests_and_benches_import_no_test_module() -> None:
    """Helpers live in testkit/, so no test or bench imports a module of tests/."""
    pattern = re.compile(r"^\s*(from|import)\s+tests\b", re.MULTILINE)
    offenders = [
        str(path.relative_to(REPO))
        for path in files("tests", "bench", "testkit")
        if path.suffix == ".py" and pattern.search(path.read_text())
    ]
    assert offenders == []
