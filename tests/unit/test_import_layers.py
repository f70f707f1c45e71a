"""Layers point one way: a package imports only packages of a lower layer.

Read from the source with ``ast`` (nothing is imported or executed), imports inside
functions included: a lazy import is still a dependency, and the publish <-> federation
loop of old hid in them. The layers, bottom to top:

0. ``runtime``: Kafka, Avro, configuration, the exactly-once loop. Knows no stage.
1. ``infra`` (broker and registry processes), ``warehouse`` (the ClickHouse port, its
   adapters, migrations, analyst queries), ``policy`` (sharing levels, federation
   settings, the node's declared topics), ``privacy`` (keyrings and pseudonyms).
2. The stages: ``ingest``, ``anonymise``, ``normalise``, ``energy``, ``publish``,
   ``federation``, ``simulate``. They meet on topics and through layer 1, never
   through each other.
3. ``api``: the common HTTP API; it reads every city, its own node's included, through
   the federation API (``federation``'s client is its adapter), never the warehouse.
4. ``node`` and ``cli`` (``services/cli.py``): compose everything.

Within one layer only a package's own modules may be imported, except at the top,
where composition is the job. A new package must be placed here before it is used.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from services.runtime.paths import REPO_ROOT

LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"runtime"}),
    frozenset({"infra", "warehouse", "policy", "privacy"}),
    frozenset({"ingest", "anonymise", "normalise", "energy", "publish", "federation", "simulate"}),
    frozenset({"api"}),
    frozenset({"node", "cli"}),
)
TOP = LAYERS[-1]
SERVICES = REPO_ROOT / "services"
# Generated gRPC modules import only themselves and grpc/protobuf.
SKIPPED = ("generated",)


def layer_of(package: str) -> int:
    for level, packages in enumerate(LAYERS):
        if package in packages:
            return level
    raise KeyError(package)


def package_of(path: Path, root: Path) -> str:
    """``services/<package>/...`` -> package; ``services/cli.py`` -> ``cli``."""
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else path.stem


def module_name(path: Path, root: Path) -> str:
    parts = ["services", *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, module) of every ``services.*`` import in the file, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    here = module_name(path, root).split(".")
    package_parts = here if path.name == "__init__.py" else here[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if node.module is None or target == "services":
                found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, target))
    return [(line, name) for line, name in found if name.startswith("services.")]


def violations(root: Path) -> list[str]:
    """Every import that points up a layer or sideways into another package."""
    problems: list[str] = []
    for path in sorted(root.rglob("*.py")):
        if any(part in SKIPPED for part in path.relative_to(root).parts):
            continue
        own = package_of(path, root)
        for line, name in imported_modules(path, root):
            target = name.split(".")[1]
            if target == own or target == "__init__":
                continue
            where = f"{path.relative_to(root.parent)}:{line} imports {name}"
            try:
                mine, theirs = layer_of(own), layer_of(target)
            except KeyError as exc:
                problems.append(f"{where}: package {exc} has no layer in test_import_layers.py")
                continue
            if theirs > mine:
                problems.append(f"{where}: {target} is above {own}")
            elif theirs == mine and own not in TOP:
                problems.append(f"{where}: {target} is beside {own} (same layer)")
    return problems


def test_imports_point_down_the_layers() -> None:
    problems = violations(SERVICES)
    assert not problems, "imports against the layers:\n  " + "\n  ".join(problems)


def test_runtime_imports_no_stage() -> None:
    stages = LAYERS[2]
    runtime = SERVICES / "runtime"
    found = [
        f"{path.relative_to(REPO_ROOT)}:{line} imports {name}"
        for path in sorted(runtime.rglob("*.py"))
        for line, name in imported_modules(path, SERVICES)
        if name.split(".")[1] in stages
    ]
    assert not found, "the runtime imports a stage:\n  " + "\n  ".join(found)


def test_every_package_has_a_layer() -> None:
    packages = {p.name for p in SERVICES.iterdir() if (p / "__init__.py").exists()}
    packages |= {p.stem for p in SERVICES.glob("*.py") if p.stem != "__init__"}
    unplaced = sorted(packages - set().union(*LAYERS))
    assert not unplaced, f"packages with no layer in test_import_layers.py: {unplaced}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def f():\n    from services.publish.sharing import x\n", "publish is above runtime"),
        ("import services.anonymise.keys\n", "anonymise is above runtime"),
        ("from services import federation\n", "federation is above runtime"),
    ],
)
def test_the_check_sees_lazy_and_plain_imports(tmp_path: Path, source: str, expected: str) -> None:
    """The check itself: an upward import in the runtime, at module level or inside a
    function, is reported with its file and line."""
    (tmp_path / "runtime").mkdir()
    (tmp_path / "runtime" / "__init__.py").write_text("")
    (tmp_path / "runtime" / "bad.py").write_text(source)
    [problem] = violations(tmp_path)
    assert expected in problem and "bad.py:" in problem


def test_the_check_refuses_a_stage_importing_a_stage(tmp_path: Path) -> None:
    (tmp_path / "publish").mkdir()
    (tmp_path / "publish" / "service.py").write_text(
        "from .sink import x\nfrom services.federation.hook import beside\n"
    )
    [problem] = violations(tmp_path)
    assert "federation is beside publish" in problem and "service.py:2" in problem
