"""A ``citeplus`` process that runs one command imports the module declaring it, not
the whole tool: the supervisor starts six services per node and tests and scripts
call ``citeplus`` hundreds of times, each paying the import of every service package
otherwise. Here: the short table gives the very same parse as the whole one, and the
map of where commands live stays true."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from services.cli import (
    COMMAND_HOMES,
    SERVICE_HOMES,
    build_parser,
    command_table,
    commands_for,
    service_names,
)
from services.runtime.paths import REPO_ROOT


def test_every_service_is_listed_with_the_module_that_declares_it() -> None:
    assert sorted(SERVICE_HOMES) == sorted(service_names())
    for name, home in SERVICE_HOMES.items():
        assert importlib.import_module(home).SERVICE.name == name, (name, home)


@pytest.mark.parametrize("name", sorted(COMMAND_HOMES))
def test_every_listed_command_is_declared_by_its_module(name: str) -> None:
    declared = [c.name for c in importlib.import_module(COMMAND_HOMES[name]).COMMANDS]
    assert name in declared, f"{COMMAND_HOMES[name]} declares {declared}, not {name!r}"
    assert [c for c in command_table() if c.name == name], f"{name} is not a citeplus command"


ARGVS = [
    *(["service", name] for name in SERVICE_HOMES),
    ["service", "normalise", "--instance", "2", "--metrics-port", "9999"],
    ["up", "--storage", "memory", "--wait", "180"],
    ["down"],
    ["replay", "normalise", "--from-offset", "0"],
    ["simulate", "--cities", "lyon,paris", "--meters", "12", "--seed", "3", "--url", "http://x"],
    ["topics", "list"],
    ["schemas", "register"],
    ["infra", "up", "--storage", "memory"],
]


@pytest.mark.parametrize("argv", ARGVS, ids=" ".join)
def test_the_short_table_parses_as_the_whole_one(argv: list[str]) -> None:
    short = commands_for(argv)
    assert short is not None, f"{argv} builds the whole table"
    assert vars(build_parser(short).parse_args(argv)) == vars(build_parser().parse_args(argv))


@pytest.mark.parametrize("argv", [[], ["--help"], ["service"], ["service", "no-such"], ["nope"]])
def test_help_and_unknown_names_get_the_whole_table(argv: list[str]) -> None:
    assert commands_for(argv) is None


def test_a_service_process_imports_its_own_package_only() -> None:
    """What ``citeplus service normalise`` has imported once its command line is read:
    not the common API's web server, nor ClickHouse, nor gRPC (it failed before: every
    process built the whole command table)."""
    probe = (
        "import sys\n"
        "from services import cli\n"
        "try:\n"
        "    cli.main(['service', 'normalise', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('services.api.main', 'chdb', 'grpc', 'aiohttp',\n"
        "    'services.publish.main', 'services.infra.cli') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout[-2000:]
