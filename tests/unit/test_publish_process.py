"""``citeplus service publish`` still serves the federation API beside publish.

Publish no longer imports federation (tests/unit/test_import_layers.py); with chDB only
the publish process may open the warehouse, so the command that starts that process
must hand publish the federation server. Before the layers were made one-way, publish
started it itself; this keeps the behaviour while the wiring lives above both stages.
"""

from __future__ import annotations

import argparse

import pytest

from services.cli import build_parser
from services.federation.hook import federation_beside_publish
from services.publish import main as publish_main


def test_service_publish_hands_publish_the_federation_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handed: list[object] = []

    def serve(args: argparse.Namespace, beside: object = None) -> int:
        handed.append(beside)
        return 0

    monkeypatch.setattr(publish_main, "serve", serve)
    args = build_parser().parse_args(["service", "publish", "--instance", "1"])
    assert args.handler(args) == 0
    assert handed == [federation_beside_publish]
    assert args.instance == "1"
