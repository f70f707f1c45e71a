"""The command line as operators and the node supervisor see it."""

from __future__ import annotations

import pytest

from services.cli import build_parser, service_names
from services.node.main import PIPELINE, available_services


def test_every_pipeline_service_has_a_service_command() -> None:
    assert sorted(service_names()) == sorted(PIPELINE)
    # Start order of a node: what comes last in the flow starts first; the common API
    # right after publish, whose federation server it reads through.
    assert available_services() == [
        "publish",
        "api",
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


def test_replay_takes_a_stage_and_a_start_or_dead_letters_and_a_source() -> None:
    from services.runtime.errors import CiteplusError

    parser = build_parser()
    letters = parser.parse_args(
        ["replay", "dead-letters", "--city", "lyon", "--source", "s", "--letter", "a"]
    )
    assert (letters.city, letters.source, letters.letter) == ("lyon", "s", ["a"])
    stage = parser.parse_args(["replay", "normalise", "--from-offset", "0"])
    assert stage.from_offset == 0
    for incomplete, needed in (
        (["replay", "normalise"], "--from-time or --from-offset"),
        (["replay", "dead-letters", "--city", "lyon"], "--city and --source"),
    ):
        args = parser.parse_args(incomplete)
        with pytest.raises(CiteplusError, match=needed):
            args.handler(args)
