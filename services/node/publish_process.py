"""``citeplus service publish``: publish, with the federation API beside it.

With chDB only one process may open the warehouse, so the federation server runs
in the publish process and answers from publish's warehouse object. Publish and
federation do not import each other (they meet through services.warehouse and
services.policy); this module, above both, puts them in one process.
"""

from __future__ import annotations

import argparse

from services.federation.hook import federation_beside_publish
from services.publish import main as publish_main
from services.runtime.commands import Command
from services.runtime.service_main import stage_options


def serve(args: argparse.Namespace) -> int:
    return publish_main.serve(args, beside=federation_beside_publish)


SERVICE = Command(
    "publish",
    "land observations, aggregates and dead letters in ClickHouse; feed public topics",
    serve,
    options=stage_options(),
)

COMMANDS: tuple[Command, ...] = ()
