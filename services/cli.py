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


# Where each supervised service and each top-level command is declared. A process that
# runs one of them (`citeplus service normalise`, what a supervisor starts six times per
# node; `citeplus up`, `replay`, `api keys create`...) imports that module only instead of
# every service package (gRPC, ClickHouse, the web servers): about 1.2 s of CPU saved per
# process on a small machine. A name missing here still works, through the whole table;
# tests/unit/test_cli.py checks that every entry names the module that declares it.
SERVICE_HOMES = {
    "ingest": "services.ingest.main",
    "anonymise": "services.anonymise.main",
    "normalise": "services.normalise.main",
    "energy-analytics": "services.energy.main",
    "publish": "services.node.publish_process",
    "api": "services.api.main",
}
COMMAND_HOMES = {
    "ingest": "services.ingest.main",
    "keys": "services.anonymise.main",
    "privacy": "services.anonymise.main",
    "normalise": "services.normalise.main",
    "energy": "services.energy.main",
    "api": "services.api.main",
    "sql": "services.publish.main",
    "sql-users": "services.publish.main",
    "warehouse": "services.publish.warehouse_cli",
    "federation": "services.federation.main",
    "certs": "services.federation.main",
    "simulate": "services.simulate.cli",
    "up": "services.node.main",
    "down": "services.node.main",
    "status": "services.node.main",
    "logs": "services.node.main",
    "replay": "services.node.main",
    "node": "services.node.main",
    "demo": "services.node.demo",
    "infra": "services.infra.cli",
}


def _service_group(services: Sequence[Command]) -> Command:
    return Command(
        "service",
        "run one pipeline service in the foreground (what supervisors and containers run)",
        actions=tuple(services),
        dest="service_name",
        metavar="SERVICE",
    )


def command_table() -> list[Command]:
    """Every top-level command, in the order ``citeplus --help`` lists them."""
    services = [module.SERVICE for module in _modules(SERVICE_MODULES)]
    commands = [TOPICS, SCHEMAS, _service_group(services)]
    for module in _modules(SERVICE_MODULES + COMMAND_MODULES):
        commands.extend(module.COMMANDS)
    return commands


def commands_for(argv: Sequence[str]) -> list[Command] | None:
    """The only command ``argv`` can run, taken from the one module that declares it, or
    None when the whole table is needed (no command, help, a name not listed above or
    whose package is not part of this build): the parser then says what exists."""
    words = list(argv)
    if len(words) >= 2 and words[0] == "service" and words[1] in SERVICE_HOMES:
        found = list(_modules([SERVICE_HOMES[words[1]]]))
        return [_service_group([found[0].SERVICE])] if found else None
    if words and words[0] in (TOPICS.name, SCHEMAS.name):
        return [TOPICS, SCHEMAS]
    if not words or words[0] not in COMMAND_HOMES:
        return None
    found = list(_modules([COMMAND_HOMES[words[0]]]))
    chosen = [c for module in found for c in module.COMMANDS if c.name == words[0]]
    return chosen or None


def build_parser(commands: Sequence[Command] | None = None) -> argparse.ArgumentParser:
    """The ``citeplus`` parser, with ``commands`` only when given (default: all of them)."""
    parser = argparse.ArgumentParser(
        prog="citeplus",
        description=(
            "Cité+: the common data layer of a group of cities. Runs a node "
            "(Kafka broker, schema registry, pipeline services) and operates it."
        ),
        epilog="Configuration: deploy/node.yaml (override with CITEPLUS_<SECTION>_<KEY>).",
    )
    mount(parser, command_table() if commands is None else commands, dest="command")
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
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(commands_for(words))
    args = parser.parse_args(words)
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
