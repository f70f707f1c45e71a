"""`citeplus replay` as an operator runs it on a live node: the stage is held
stopped, its consumer groups go back, the supervisor restarts it, and it reads
its input again; what analysts see in ClickHouse does not change (no duplicate
reading, no aggregate counted twice). Loopback only, bounded in time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services.node.main import available_services
from services.node.status import sample_service
from services.runtime.config import load_node_config
from testkit.local_node import LocalNode
from testkit.node_checks import differences, settle
from testkit.question_checks import check_every_question

pytestmark = pytest.mark.integration

SIMULATE = ["simulate", "--cities", "lyon,paris", "--meters", "12", "--days", "1", "--seed", "3"]


def records_in(node: LocalNode, service: str) -> float:
    sample = sample_service(load_node_config(env=node.env), service, timeout=5.0)
    assert sample is not None, f"{service} does not answer"
    return sample.records_in


# Four settles of a whole node (about 3 to 5 minutes on a loaded 2-core machine, the
# README questions' checks a few seconds of it): more than the suite's default 300 s.
@pytest.mark.timeout(600)
def test_replayed_stages_read_again_and_change_nothing_downstream(tmp_path: Path) -> None:
    services = available_services()
    node = LocalNode(tmp_path / "node")
    node.up()
    try:
        subprocess.run(
            [sys.executable, "-m", "services.cli", *SIMULATE, "--url", node.ingest_url, "--quiet"],
            env=node.env,
            check=True,
            timeout=300,
        )
        before = settle(node, services)
        assert before["observations"][0]["readings"] > 1_000
        check_every_question(node)  # the README's questions, on this node's own output
        for stage, where in (
            ("normalise", ["--from-offset", "0"]),
            ("energy-analytics", ["--from-time", "2000-01-01T00:00:00+00:00"]),
            ("publish", ["--from-offset", "0"]),
        ):
            read_first, pid = records_in(node, stage), node.service_pids()[stage]
            assert read_first > 0
            moved = node.citeplus("replay", stage, *where, timeout=240).stdout.splitlines()
            assert moved and all(line.endswith("-> 0") for line in moved), moved
            after = settle(node, services)
            # A new process, whose counters start at zero, read its input again (publish's
            # sink resumes after what the warehouse holds: only its republisher re-reads).
            assert node.service_pids()[stage] != pid, f"{stage} was not restarted"
            read_again = records_in(node, stage)
            assert read_again >= (read_first if stage != "publish" else 1), (stage, read_again)
            # ... and what landed is the same, to the reading and the aggregate.
            assert after == before, f"after replaying {stage}:\n" + differences(before, after)
        refused = node.citeplus("replay", "nothing-here", "--from-offset", "0", check=False)
        assert refused.returncode == 2 and "no consumer group" in refused.stderr
    finally:
        node.down()
