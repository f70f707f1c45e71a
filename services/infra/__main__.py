"""``python -m services.infra up|down|status``: the infra commands without the main CLI."""

from __future__ import annotations

import argparse
import logging
import sys

from services.infra.cli import ACTIONS
from services.runtime.commands import mount


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="citeplus infra: %(message)s", stream=sys.stderr)
    parser = argparse.ArgumentParser(
        prog="python -m services.infra",
        description="Fetch, start and stop the local Kafka broker and schema registry.",
    )
    mount(parser, ACTIONS, dest="infra_command", metavar="ACTION")
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
