"""The command line as operators and the node supervisor see it."""

from __future__ import annotations

import pytest

from services.cli import build_parser, service_names
from services.node.main import PIPELINE, available_services


def test_every_pipeline_service_has_a_service_command() -> None:
    assert sorted(service_names()) == sorted(PIPELINE)
    # Start order of a node: what comes last in the flow starts first.
    assert available_services() == [
        "publish",
        "energy-analytics",
        "normalise",
        "anonymise",
        "ingest",
    ]


@pytest.mark.parametrize("name", PIPELINE)
def test_service_commands_parse_and_explain_themselves(name: str, capsys) -> None:
    args = build_parser().parse_args(["service", name])
    assert args.service_name == name and callable(getattr(args, "handler", None) or args.func)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["service", name, "--help"])
    assert "usage: citeplus service " + name in capsys.readouterr().out
