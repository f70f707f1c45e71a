"""Topic names are written once: deploy/topics.yaml declares them, the registry
(services/runtime/topics.py) names them for the code, and no other module of
``services/`` writes one (a stage that spelled its own would miss a rename, a
version bump or a test's prefix)."""

from __future__ import annotations

import ast
from pathlib import Path

from services.energy.stage import EnergyTopics
from services.runtime.topics import TopicName, TopicRegistry, load_topics, resolve_topics

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = ROOT / "services" / "runtime" / "topics.py"


def _declared() -> set[str]:
    return {spec.name for spec in TopicRegistry.load().specs(*TopicName.all())} | set(load_topics())


def _literals(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string constant, f-string parts included (docstrings and help texts too:
    they only match when they are a topic name and nothing else)."""
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_no_topic_name_is_written_outside_the_registry() -> None:
    declared = set(TopicName.all())
    found = []
    for path in sorted((ROOT / "services").rglob("*.py")):
        if path == REGISTRY or "generated" in path.parts:
            continue
        for line, value in _literals(ast.parse(path.read_text(encoding="utf-8"))):
            if value.strip(".") in declared or any(
                value.endswith("." + name) or value == name for name in declared
            ):
                found.append(f"{path.relative_to(ROOT)}:{line}: {value!r}")
    assert not found, "topic names written outside services/runtime/topics.py:\n" + "\n".join(found)


def test_every_declared_topic_has_a_name_in_the_registry_and_back() -> None:
    in_file = {spec.name for spec in TopicRegistry.load().specs(*TopicName.all())}
    assert in_file == set(TopicName.all())
    assert set(load_topics()) <= set(TopicName.all())


def test_a_prefix_is_applied_once_to_every_topic_and_partition_counts_come_along() -> None:
    registry = resolve_topics("test.p.")
    topic = registry[TopicName.ENERGY_REGROUPED]
    assert topic.name == "test.p.energy.regrouped.v2"
    assert topic.declared == TopicName.ENERGY_REGROUPED
    assert topic.partitions == load_topics()[TopicName.ENERGY_REGROUPED].partitions
    assert topic.subject == "test.p.energy.regrouped.v2-value"
    shared = registry[TopicName.SHARED_OBSERVATIONS].for_partner("lyon")
    assert shared.name == "test.p.public.shared.lyon.observations.v1"
    energy = EnergyTopics.resolve(registry)
    assert energy == EnergyTopics().prefixed("test.p.")
    assert energy.partitions == topic.partitions
    assert energy.dead_letters == "test.p.dlq.v1"
