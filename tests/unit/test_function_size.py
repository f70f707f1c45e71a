"""No function in services/ grows past what a reader holds in their head.

The limits are the ones the architecture clean-up brought every function under:
60 lines (from ``def`` to its last line, docstring included) and a cyclomatic
complexity of 15 as radon counts it (branches, loops, boolean operators,
comprehensions). A function that needs more is split into named steps, not
exempted here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from radon.complexity import cc_visit

SERVICES = Path(__file__).resolve().parents[2] / "services"
MAX_LINES = 60
MAX_COMPLEXITY = 15


def _sources() -> list[Path]:
    return sorted(p for p in SERVICES.rglob("*.py") if "generated" not in p.parts)


def _long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{path}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_LINES
    ]


def _complex_functions(path: Path) -> list[str]:
    found = []
    for block in cc_visit(path.read_text(encoding="utf-8")):
        # Classes are scored as the mean of their methods; the methods are listed too.
        for scored in [block, *getattr(block, "methods", [])]:
            if getattr(scored, "is_method", None) is None and hasattr(scored, "methods"):
                continue  # the class itself
            if scored.complexity > MAX_COMPLEXITY:
                found.append(
                    f"{path}:{scored.lineno} {scored.name} (complexity {scored.complexity})"
                )
    return found


def test_no_function_in_services_is_longer_than_60_lines() -> None:
    offenders = [line for path in _sources() for line in _long_functions(path)]
    assert not offenders, "split these into named steps:\n" + "\n".join(offenders)


def test_no_function_in_services_is_more_complex_than_15() -> None:
    offenders = sorted({line for path in _sources() for line in _complex_functions(path)})
    assert not offenders, "split these into named steps:\n" + "\n".join(offenders)


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("def f(x):\n" + "    x += 1\n" * 60 + "    return x\n", "lines"),
        (
            "def f(x):\n"
            + "".join(f"    if x == {i}:\n        return {i}\n" for i in range(16))
            + "    return -1\n",
            "complexity",
        ),
        (
            "class C:\n    def m(self, x):\n"
            + "".join(f"        if x == {i}:\n            return {i}\n" for i in range(16))
            + "        return -1\n",
            "complexity",
        ),
    ],
)
def test_the_checks_catch_an_offender(tmp_path: Path, source: str, kind: str) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(source)
    check = _long_functions if kind == "lines" else _complex_functions
    assert check(probe), f"a {kind} offender went unseen"
