"""The shared strict YAML reader: the same mistake reads the same in every file."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.normalise.vocabulary import load_vocabulary
from services.policy.federation import load_peers_file
from services.runtime.config import load_node_config
from services.runtime.errors import ConfigError
from services.runtime.topics import load_topics
from services.runtime.yaml_config import ConfigReader, describe, parse_strict

WHERE = "deploy/cities/testville.yaml"
REPO = Path(__file__).resolve().parents[2]


def test_parse_strict_reads_plain_yaml() -> None:
    assert parse_strict("a: 1\nb: [x, y]\nc: {d: true}\n", WHERE) == {
        "a": 1,
        "b": ["x", "y"],
        "c": {"d": True},
    }


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("a: 1\na: 2\n", id="top-level"),
        pytest.param("outer:\n  a: 1\n  a: 2\n", id="nested"),
        pytest.param("- {a: 1, a: 2}\n", id="flow-in-list"),
    ],
)
def test_parse_strict_refuses_duplicate_keys(text: str) -> None:
    with pytest.raises(ConfigError, match=r"duplicate key 'a'") as info:
        parse_strict(text, WHERE)
    assert str(info.value).startswith(f"{WHERE}: not valid YAML: ")
    assert "line " in str(info.value)  # YAML's mark says where to look


def test_parse_strict_refuses_python_tags() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_strict("!!python/object/apply:os.system [echo]\n", WHERE)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "nothing"),
        (False, "a boolean"),
        ({}, "a mapping"),
        ([], "a list"),
        (3, "int 3"),
        ("x", "str 'x'"),
    ],
)
def test_describe(value: object, expected: str) -> None:
    assert describe(value) == expected


def test_mapping_names_the_unknown_key_and_the_allowed_ones() -> None:
    reader = ConfigReader(WHERE)
    assert reader.mapping({"a": 1}, "sources[0]", ("a", "b")) == {"a": 1}
    with pytest.raises(ConfigError) as info:
        reader.mapping({"c": 1}, "sources[0]", ("a", "b"))
    assert str(info.value) == f"{WHERE}: sources[0].c: unknown key 'c'; allowed keys: a, b"
    with pytest.raises(ConfigError) as info:
        reader.mapping({"c": 1}, None, ("a",))
    assert str(info.value) == f"{WHERE}: c: unknown key 'c'; allowed keys: a"
    with pytest.raises(ConfigError) as info:
        reader.mapping([1], "csv", ("a",))
    assert str(info.value) == f"{WHERE}: csv: expected a mapping, got a list"


@pytest.mark.parametrize(
    ("value", "item", "message"),
    [
        (None, "string", "k: expected a non-empty list of strings, got nothing"),
        ([], "field name", "k: expected a non-empty list of field names, got a list"),
        (["a", ""], "string", "k[1]: expected a non-empty string, got str ''"),
        (["a", 2], "field name", "k[1]: expected a non-empty field name, got int 2"),
        (["a", "a"], "string", "k: names must not repeat"),
    ],
)
def test_string_list_errors(value: object, item: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ConfigReader(WHERE).string_list(value, "k", item=item)
    assert str(info.value) == f"{WHERE}: {message}"
    assert info.value.source == WHERE


def test_string_list_returns_a_tuple() -> None:
    assert ConfigReader(WHERE).string_list(["a", "b"], "k") == ("a", "b")


@pytest.mark.parametrize(
    ("original", "load"),
    [
        pytest.param("deploy/node.yaml", lambda p: load_node_config(p, env={}), id="node"),
        pytest.param("deploy/topics.yaml", load_topics, id="topics"),
        pytest.param("deploy/vocabulary.yaml", load_vocabulary, id="vocabulary"),
        pytest.param("deploy/federation.yaml", lambda p: load_peers_file(p, "lyon"), id="peers"),
    ],
)
def test_every_hand_written_file_refuses_a_repeated_key(tmp_path: Path, original, load) -> None:
    """A key written twice (the second silently winning) is refused in every file."""
    text = (REPO / original).read_text(encoding="utf-8")
    load(_write(tmp_path / "ok.yaml", text))  # the repository's file loads as it is
    first_key = next(line for line in text.splitlines() if line and line[0].isalpha())
    with pytest.raises(ConfigError, match="duplicate key") as info:
        load(_write(tmp_path / "twice.yaml", text + "\n" + first_key + "\n"))
    assert "twice.yaml" in str(info.value)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
