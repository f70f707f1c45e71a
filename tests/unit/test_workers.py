"""Several workers per stage: what each worker process is started with, the
co-partitioning check energy-analytics runs at every assignment, and the sources'
rate limits divided among ingest workers. Pure: no broker."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from services.ingest.rate_limit import SourceLimits, share_of
from services.node.status import endpoint
from services.node.supervisor import Supervisor, split_label, worker_args, worker_labels
from services.node.workers_status import GroupWorkers, render_workers
from services.runtime.cities import RateLimit
from services.runtime.config import NodeConfig, ProcessingSection, load_node_config
from services.runtime.copartition import CoPartitionError, check_co_partitioned, group_settings
from services.runtime.errors import ConfigError
from services.runtime.kafka import consumer_settings

INPUTS = ("observations.v1", "energy.regrouped.v1")
COUNTS = {"observations.v1": 6, "energy.regrouped.v1": 6, "energy.state.v1": 6}


def test_range_gives_same_numbers_and_the_check_accepts_it() -> None:
    check_co_partitioned([(t, p) for t in INPUTS for p in (0, 1, 2)], COUNTS, INPUTS)
    check_co_partitioned([], COUNTS, INPUTS)  # a worker beyond the partition count


def test_an_assignment_splitting_partition_numbers_is_refused_naming_the_topics() -> None:
    # What roundrobin or cooperative-sticky may hand a member: observations 1, regrouped 2.
    split = [("observations.v1", 0), ("observations.v1", 1), ("energy.regrouped.v1", 0)]
    with pytest.raises(CoPartitionError) as refused:
        check_co_partitioned(split, COUNTS, INPUTS)
    message = str(refused.value)
    assert "energy.regrouped.v1 lacks [1]" in message and "range" in message


def test_topics_of_different_partition_counts_are_refused() -> None:
    counts = {**COUNTS, "energy.regrouped.v1": 3}
    assigned = [(t, p) for t in INPUTS for p in (0, 1)]
    with pytest.raises(CoPartitionError, match=r"same number.*regrouped\.v1: 3"):
        check_co_partitioned(assigned, counts, INPUTS)
    with pytest.raises(CoPartitionError, match=r"energy\.state\.v1: missing"):
        check_co_partitioned(assigned, {**COUNTS, "energy.state.v1": None}, INPUTS)


def node_with(protocol: str) -> NodeConfig:
    node = NodeConfig()
    return replace(node, processing=ProcessingSection(group_protocol=protocol))


def test_co_partitioned_stages_pin_range_and_refuse_the_new_protocol() -> None:
    pinned = group_settings(node_with("classic"), co_partitioned=True, client_id="w1")
    assert pinned == {"client.id": "w1", "partition.assignment.strategy": "range"}
    free = group_settings(node_with("classic"), co_partitioned=False, client_id="w1")
    assert "partition.assignment.strategy" not in free
    with pytest.raises(ConfigError, match=r"processing\.group_protocol: .*range"):
        group_settings(node_with("consumer"), co_partitioned=True, client_id="w1")
    stateless = group_settings(node_with("consumer"), co_partitioned=False, client_id="w1")
    settings = consumer_settings(node_with("consumer"), group_id="g", **stateless)
    assert settings["group.protocol"] == "consumer"
    assert "session.timeout.ms" not in settings and "heartbeat.interval.ms" not in settings


def test_each_worker_has_its_index_and_port_and_ingest_workers_share_the_port(
    tmp_path: Path,
) -> None:
    workers = {"anonymise": 2, "ingest": 3, "publish": 1}
    labels = worker_labels(["publish", "anonymise", "ingest"], workers)
    assert labels == ["publish", "anonymise", "anonymise#1", "ingest", "ingest#1", "ingest#2"]
    assert split_label("anonymise#1") == ("anonymise", 1)
    assert worker_args("publish", workers, 9405) == []  # one worker: started as before
    assert worker_args("anonymise", workers, 9402) == ["--instance", "0"]
    assert worker_args("anonymise#1", workers, 9412) == [
        "--instance",
        "1",
        "--metrics-port",
        "9412",
    ]
    assert worker_args("ingest#2", workers, None) == [
        "--instance",
        "2",
        "--reuse-port",
        "--workers",
        "3",
    ]
    # Several ingest workers share the HTTP port: each, the first too, has its own metrics.
    assert worker_args("ingest", workers, 9401) == [
        "--instance",
        "0",
        "--reuse-port",
        "--workers",
        "3",
        "--metrics-port",
        "9401",
    ]
    assert worker_args("ingest#2", workers, 9421)[-2:] == ["--metrics-port", "9421"]
    assert worker_args("ingest", {"ingest": 1}, 9401) == []  # one: its HTTP port, as before
    node = NodeConfig()
    supervisor = Supervisor(
        ["anonymise"],
        log_dir=tmp_path / "logs",
        state_file=tmp_path / "status.json",
        hold_dir=tmp_path / "hold",
        workers={"anonymise": 2},
        metrics_port=node.metrics_port,
    )
    assert supervisor.services == ["anonymise", "anonymise#1"]
    command = supervisor.command("anonymise#1")
    assert command[command.index("service") + 1 :] == [
        "anonymise",
        "--instance",
        "1",
        "--metrics-port",
        "9412",
    ]
    (tmp_path / "hold").mkdir()
    (tmp_path / "hold" / "anonymise").touch()  # citeplus replay holds every worker
    assert supervisor.held("anonymise") and supervisor.held("anonymise#1")


def test_replicas_of_publish_and_api_stay_one(tmp_path: Path) -> None:
    node_file = tmp_path / "node.yaml"
    node_file.write_text("replicas:\n  anonymise: 3\n  energy_analytics: 2\n")
    node = load_node_config(node_file, env={})
    assert node.replicas.of("anonymise") == 3 and node.replicas.of("energy-analytics") == 2
    node_file.write_text("replicas:\n  publish: 2\n")
    with pytest.raises(ConfigError, match=r"replicas\.publish: .*ClickHouse server"):
        load_node_config(node_file, env={})
    with pytest.raises(ConfigError, match=r"replicas\.normalise: must be between 1 and 16"):
        load_node_config(
            node_file, env={"CITEPLUS_REPLICAS_PUBLISH": "1", "CITEPLUS_REPLICAS_NORMALISE": "0"}
        )


def test_rate_limits_are_divided_among_ingest_workers() -> None:
    limit = RateLimit(per_second=10.0, burst=5)
    assert share_of(limit, 1) == limit
    assert share_of(limit, 2) == RateLimit(per_second=5.0, burst=3)
    assert share_of(RateLimit(per_second=1.0, burst=1), 4).burst == 1  # never zero

    class Clock:
        now = 0.0

        def __call__(self) -> float:
            return self.now

    city = SimpleNamespace(code="lyon", sources=[SimpleNamespace(id="linky", rate_limit=limit)])

    clock = Clock()
    workers = [SourceLimits([city], clock, workers=2) for _ in range(2)]  # type: ignore[list-item]
    admitted = sum(w.wait_for("lyon", "linky") == 0 for w in workers for _ in range(10))
    assert admitted == 6  # two bursts of 3, not two of 5
    clock.now = 10.0
    admitted = sum(w.wait_for("lyon", "linky") == 0 for w in workers for _ in range(100))
    assert admitted <= 5 + 1  # the whole burst (rounded up per worker), never 2 x 5


def test_status_names_each_worker_and_the_partitions_it_holds() -> None:
    group = GroupWorkers("anonymise", "stable", "range")
    group.members = {
        "citeplus.dev-node.anonymise.0": {"raw.v1": [0, 1, 2, 5]},
        "citeplus.dev-node.anonymise.1": {},
    }
    shown = render_workers([group, GroupWorkers("normalise", error="coordinator not available")])
    assert shown.splitlines() == [
        "workers: anonymise 2 in its group (stable, range)",
        "  citeplus.dev-node.anonymise.0: raw.v1 0-2,5",
        "  citeplus.dev-node.anonymise.1: no partitions",
        "workers: normalise: group not described (coordinator not available)",
    ]


def test_status_reads_one_ingest_on_its_http_port_and_several_each_on_its_own() -> None:
    node = NodeConfig()
    assert endpoint(node, "anonymise#1") == f"http://127.0.0.1:{node.metrics_port('anonymise', 1)}"
    assert endpoint(node, "anonymise", {"anonymise": 2}) == "http://127.0.0.1:9402"
    assert endpoint(node, "ingest") == f"http://127.0.0.1:{node.ingest.port}"
    assert endpoint(node, "ingest", {"anonymise": 2}) == f"http://127.0.0.1:{node.ingest.port}"
    assert endpoint(node, "ingest#1") is None  # no second worker runs
    several = {"ingest": 2}  # the supervisor state's "workers"
    assert endpoint(node, "ingest", several) == "http://127.0.0.1:9401"
    assert endpoint(node, "ingest#1", several) == "http://127.0.0.1:9411"
    assert node.metrics_port("ingest", 1) == 9411 != node.ingest.port
