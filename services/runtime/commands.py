"""One way to declare a ``citeplus`` command: a table of small typed values.

Each package lists its commands as :class:`Command` values (name, help, handler,
options, sub-actions) next to their handlers; :func:`mount` is the one place that
turns them into argparse parsers. A package therefore never touches argparse's
sub-parser objects, a command reads as what it accepts, and an option every
command shares (``--cities``, the directory of city files) is declared once.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.runtime.paths import CITIES_DIR

Handler = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Option:
    """One argument: its flags (or positional name) and argparse's keywords for it."""

    flags: tuple[str, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)


def option(*flags: str, **settings: Any) -> Option:
    """``option("--days", type=int, default=2, help=...)``: add_argument's own words."""
    return Option(flags, settings)


@dataclass(frozen=True)
class OneOf:
    """Options of which at most one is given (exactly one when ``required``)."""

    options: tuple[Option, ...]
    required: bool = False


@dataclass(frozen=True)
class Command:
    """A command, or a group of actions when ``actions`` is not empty.

    ``dest`` names the attribute that records the chosen action (default
    ``<name>_command``); ``metavar`` is how help shows the actions' slot;
    ``verbatim`` keeps the description's and epilog's line breaks.
    """

    name: str
    help: str
    handler: Handler | None = None
    options: tuple[Option | OneOf, ...] = ()
    actions: tuple[Command, ...] = ()
    description: str | None = None
    epilog: str | None = None
    verbatim: bool = False
    dest: str | None = None
    metavar: str | None = "ACTION"


def cities_option(help: str = "directory of city files") -> Option:
    """``--cities DIR``: the directory of city files, a path, the same in every command."""
    return option("--cities", type=Path, default=CITIES_DIR, help=help)


def mount(
    parser: argparse.ArgumentParser,
    commands: Iterable[Command],
    *,
    dest: str,
    metavar: str | None = "COMMAND",
) -> None:
    """Add ``commands`` as the required sub-commands of ``parser``."""
    actions = parser.add_subparsers(dest=dest, metavar=metavar)
    actions.required = True
    for command in commands:
        _add(actions, command)


def _add(actions: Any, command: Command) -> None:
    parser = actions.add_parser(
        command.name,
        help=command.help,
        description=command.description,
        epilog=command.epilog,
        formatter_class=(
            argparse.RawDescriptionHelpFormatter if command.verbatim else argparse.HelpFormatter
        ),
    )
    add_options(parser, command.options)
    if command.actions:
        dest = command.dest or f"{command.name.replace('-', '_')}_command"
        mount(parser, command.actions, dest=dest, metavar=command.metavar)
    if command.handler is not None:
        parser.set_defaults(handler=command.handler)


def add_options(parser: argparse.ArgumentParser, options: Iterable[Option | OneOf]) -> None:
    """Add each option, and each :class:`OneOf` as a mutually exclusive group."""
    for item in options:
        if isinstance(item, OneOf):
            group = parser.add_mutually_exclusive_group(required=item.required)
            for choice in item.options:
                group.add_argument(*choice.flags, **choice.settings)
        else:
            parser.add_argument(*item.flags, **item.settings)
