"""The ``citeplus`` command: one entry point for operators, analysts and tests.

Subcommands grow with the services; each one explains itself with ``--help``
and every expected failure prints a sentence saying what to do, not a trace.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType

from services.policy.topics import declared_topics
from services.runtime.codec import schema_summary
from services.runtime.commands import Command, mount
from services.runtime.config import load_node_config
from services.runtime.dev_secrets import dev_env_file, load_env_file
from services.runtime.errors import CiteplusError
from services.runtime.provisioning import connect_contracts, delete_scratch_topics, provision_topics
from services.runtime.topics import load_topics

Handler = Callable[[argparse.Namespace], int]

# The supervised pipeline services: each ``main`` module declares ``SERVICE`` (its
# ``citeplus service <name>`` command) and ``COMMANDS`` (its other commands).
SERVICE_MODULES = (
    "services.ingest.main",
    "services.anonymise.main",
    "services.normalise.main",
    "services.energy.main",
    "services.node.publish_process",  # publish, with the federation API beside it
    "services.api.main",  # the common API, reading through the federation API
)

# Modules that only add commands (tools, the node's operator commands, infra).
COMMAND_MODULES = (
    "services.publish.main",
    "services.publish.warehouse_cli",
    "services.federation.main",
    "services.simulate.cli",
    "services.node.main",
    "services.node.demo",
    "services.infra.cli",
)


def _cmd_topics_apply(args: argparse.Namespace) -> int:
    node = load_node_config()
    report = provision_topics(node, declared_topics(node))
    for name in report.created:
        print(f"created   {name}")
    for name in report.verified:
        print(f"verified  {name}")
    return 0


def _cmd_topics_list(args: argparse.Namespace) -> int:
    print(f"{'topic':32} {'value':18} {'parts':>5} {'cleanup':8} {'retention':>12}  key")
    for spec in load_topics().values():
        retention = "forever" if spec.retention_ms < 0 else f"{spec.retention_ms / 86_400_000:g} d"
        print(
            f"{spec.name:32} {spec.value:18} {spec.partitions:>5} {spec.cleanup_policy:8} "
            f"{retention:>12}  {spec.key}"
        )
    return 0


def _cmd_topics_clean(args: argparse.Namespace) -> int:
    deleted = delete_scratch_topics(load_node_config())
    print(f"deleted {len(deleted)} scratch topics (test.*, bench.*)")
    return 0


def _cmd_schemas_register(args: argparse.Namespace) -> int:
    node = load_node_config()
    contracts = connect_contracts(node, declared_topics(node))
    for topic in contracts.topics():
        print(schema_summary(contracts.codec(topic)))
    return 0


TOPICS = Command(
    "topics",
    "the topics declared in deploy/topics.yaml",
    actions=(
        Command(
            "apply",
            "create missing topics and verify existing ones (mismatches fail)",
            _cmd_topics_apply,
        ),
        Command("list", "print the declared topics", _cmd_topics_list),
        Command(
            "clean-scratch",
            "delete the test.* and bench.* topics that tests and benchmarks leave behind",
            _cmd_topics_clean,
        ),
    ),
)

SCHEMAS = Command(
    "schemas",
    "the Avro contracts in avro/",
    actions=(
        Command(
            "register",
            "register every topic's value schema under <topic>-value",
            _cmd_schemas_register,
            description="Register every declared topic's value schema under <topic>-value, "
            "each subject set to BACKWARD_TRANSITIVE first (a weaker level found is raised and "
            "logged), so that the registry refuses any schema that would break a registered "
            "version.",
        ),
    ),
)


def _modules(names: Sequence[str]) -> Iterator[ModuleType]:
    """The modules of this build (a package another issue writes may be absent)."""
    for module_name in names:
        try:
            yield importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # that package is not part of this build yet
            raise


def command_table() -> list[Command]:
    """Every top-level command, in the order ``citeplus --help`` lists them."""
    services = [module.SERVICE for module in _modules(SERVICE_MODULES)]
    service = Command(
        "service",
        "run one pipeline service in the foreground (what supervisors and containers run)",
        actions=tuple(services),
        dest="service_name",
        metavar="SERVICE",
    )
    commands = [TOPICS, SCHEMAS, service]
    for module in _modules(SERVICE_MODULES + COMMAND_MODULES):
        commands.extend(module.COMMANDS)
    return commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="citeplus",
        description=(
            "Cité+: the common data layer of a group of cities. Runs a node "
            "(Kafka broker, schema registry, pipeline services) and operates it."
        ),
        epilog="Configuration: deploy/node.yaml (override with CITEPLUS_<SECTION>_<KEY>).",
    )
    mount(parser, command_table(), dest="command")
    return parser


def service_names() -> list[str]:
    """The ``citeplus service`` names this build has: what a node can supervise
    depends on which service packages are installed, and this is where they say so."""
    return [module.SERVICE.name for module in _modules(SERVICE_MODULES)]


def _load_dev_secrets() -> None:
    """Make a local node's generated tokens and keys visible to every command."""
    try:
        load_env_file(dev_env_file(load_node_config().state_dir))
    except CiteplusError:
        pass  # a bad node file is reported by the command that needs it


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = getattr(args, "handler", None) or args.func
    try:
        _load_dev_secrets()
        return handler(args)
    except CiteplusError as exc:
        print(f"citeplus: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
