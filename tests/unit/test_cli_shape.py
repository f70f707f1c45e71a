"""Every ``citeplus`` command keeps its options and defaults.

The command table replaced thirteen hand-written argparse ``register()`` functions;
tests/fixtures/cli_commands.json is the command tree as it was before (written by
running this module: ``uv run --frozen python tests/unit/test_cli_shape.py``), so a
command, an option, a default, a choice or a required flag that goes missing or
changes shows up here, with its path, instead of in an operator's script.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from services.cli import build_parser
from services.runtime.paths import REPO_ROOT

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "cli_commands.json"


def _plain(value: Any) -> Any:
    """A default as text, the repository's absolute path left out (paths and their
    string spelling compare equal: ``--cities`` is one option type now)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value).replace(str(REPO_ROOT), "<repo>")


def _option(action: argparse.Action) -> dict[str, Any]:
    return {
        "flags": list(action.option_strings) or [action.dest],
        "default": _plain(action.default),
        "required": action.required,
        "choices": _plain(list(action.choices)) if action.choices else None,
        "nargs": action.nargs,
        "action": type(action).__name__,
        "documented": bool(action.help),
    }


def command_tree(parser: argparse.ArgumentParser, path: str = "citeplus") -> dict[str, Any]:
    """Each command path with its options and whether it explains itself."""
    tree: dict[str, Any] = {}
    options = []
    for action in parser._actions:  # reading the built parser, as argparse's own help does
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                tree.update(command_tree(sub, f"{path} {name}"))
        elif not isinstance(action, argparse._HelpAction):
            options.append(_option(action))
    groups = [
        sorted(a.option_strings[0] for a in group._group_actions)
        for group in parser._mutually_exclusive_groups
    ]
    tree[path] = {"options": options, "exclusive": sorted(groups)}
    return tree


def _kept(now: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """``now`` as comparable to ``before``: an option that had no help may have
    gained one (that is the only change allowed)."""
    undocumented = {tuple(o["flags"]) for o in before["options"] if not o["documented"]}
    options = [
        {**o, "documented": False} if tuple(o["flags"]) in undocumented else o
        for o in now["options"]
    ]
    return {**now, "options": options}


def test_every_command_keeps_its_options_and_defaults() -> None:
    before = json.loads(FIXTURE.read_text(encoding="utf-8"))
    now = command_tree(build_parser())
    assert sorted(now) == sorted(before), "commands added or removed"
    changed = [path for path, shape in before.items() if _kept(now[path], shape) != shape]
    for path in changed:
        assert _kept(now[path], before[path]) == before[path], path


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    return build_parser()


@pytest.mark.parametrize("path", sorted(command_tree(build_parser())))
def test_every_command_explains_itself(path: str, parser: argparse.ArgumentParser, capsys) -> None:
    words = path.split()[1:]
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args([*words, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {path}") and len(out.splitlines()) > 3


if __name__ == "__main__":  # pragma: no cover - regenerates the fixture on purpose
    FIXTURE.write_text(
        json.dumps(command_tree(build_parser()), indent=1, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )


def test_service_modules_list_only_supervised_services() -> None:
    """SERVICE_MODULES is what a node supervises; tools and operator commands live in
    COMMAND_MODULES, where they cannot be mistaken for a service."""
    import importlib

    from services.cli import COMMAND_MODULES, SERVICE_MODULES
    from services.node.supervisor import PIPELINE

    services = [importlib.import_module(name).SERVICE.name for name in SERVICE_MODULES]
    assert sorted(services) == sorted(PIPELINE)
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        assert not hasattr(module, "SERVICE") and module.COMMANDS, name
