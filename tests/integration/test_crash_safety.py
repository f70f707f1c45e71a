"""The promise context brokers break: run the whole pipeline on a fixed data set
without faults, then again while SIGKILLing every service at random moments and
the broker once; the ClickHouse observations and aggregates must be exactly the
same. Each run is a node of its own (state directory, ports, broker), driven
through `citeplus` like an operator would; loopback only, bounded in time."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.node.demo import wait_drained
from services.node.local import LocalNode
from services.node.main import available_services
from services.node.status import sample_service
from services.node.supervisor import read_state
from services.runtime.config import load_node_config

pytestmark = pytest.mark.integration

CITIES = ("lyon", "paris", "nice", "bordeaux", "angers")
# Fixed keys so that both runs give the same pseudonyms (random dev keys otherwise).
SECRETS = {
    f"CITEPLUS_PSEUDONYM_SECRET_{c.upper()}": f"crash-test-secret-{c}-0123456789abcdef"
    for c in CITIES
}
SIMULATE = [
    "simulate",
    "--cities",
    "lyon,paris,bordeaux",
    "--meters",
    "30",
    "--days",
    "1",
    "--seed",
    "7",
]

FINGERPRINTS = {
    "observations": """SELECT count() AS readings,
           sum(cityHash64(city, metric, entity, toUnixTimestamp64Milli(ts), value)) AS fingerprint,
           round(sum(value), 3) AS total
        FROM observations""",
    "observations_by_metric": """SELECT city, metric, count() AS n, round(sum(value), 3) AS total,
           uniqExact(entity) AS entities
        FROM observations GROUP BY city, metric ORDER BY city, metric""",
    "aggregates": """SELECT city, zone, carrier, sector, granularity, window_start,
           round(energy_kwh, 6) AS kwh, meter_count, round(peak_kw, 6) AS peak,
           round(largest_share, 6) AS share, suppressed
        FROM energy_aggregates FINAL
        ORDER BY city, zone, carrier, sector, granularity, window_start""",
}


def fingerprint(node: LocalNode) -> dict[str, list[dict]]:
    return {name: node.sql(sql).to_pylist() for name, sql in FINGERPRINTS.items()}


def all_up(node: LocalNode, config, services: list[str]) -> bool:
    """Every service running and healthy, none waiting for a restart."""
    state = {
        s["name"]: s for s in read_state(node.state / "node" / "status.json").get("services", [])
    }
    for name in services:
        if not state.get(name, {}).get("pid"):
            return False
        sample = sample_service(config, name, timeout=2.0)
        if sample is None or not sample.healthy:
            return False
    return True


def settle(node: LocalNode, services: list[str], timeout_s: float = 300) -> dict[str, list[dict]]:
    """Wait until every service is up, the stages drained and ClickHouse stopped changing
    (three equal fingerprints in a row)."""
    config = load_node_config(env=node.env)
    deadline = time.monotonic() + timeout_s
    previous, equal = None, 0
    while time.monotonic() < deadline:
        if not all_up(node, config, services):
            previous, equal = None, 0
            time.sleep(2)
            continue
        wait_drained(config, services, timeout_s=max(10.0, deadline - time.monotonic()), quiet_s=6)
        current = fingerprint(node)
        equal = equal + 1 if current == previous else 0
        if equal >= 2 and current["observations"][0]["readings"] > 0:
            return current
        previous = current
        time.sleep(3)
    raise AssertionError(f"the pipeline did not settle in {timeout_s} s: {previous}")


def run(tmp: Path, faults: bool, services: list[str]) -> dict[str, list[dict]]:
    node = LocalNode(tmp, secrets=SECRETS)
    node.up()
    try:
        push = subprocess.Popen(
            [sys.executable, "-m", "services.cli", *SIMULATE, "--url", node.ingest_url, "--quiet"],
            env=node.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if faults:
            chaos = random.Random(2026)
            victims = [*services, "broker"]
            chaos.shuffle(victims)
            for victim in victims:
                time.sleep(chaos.uniform(1.0, 4.0))
                if victim == "broker":
                    node.restart_broker_after_kill()
                else:
                    assert node.kill_service(victim), f"{victim} was not running"
        assert push.wait(timeout=300) == 0, push.stderr.read().decode()[-2000:]
        result = settle(node, services)
        if faults:
            restarts = node.restarts()
            assert all(restarts.get(name, 0) >= 1 for name in services), restarts
        return result
    finally:
        node.down()


def test_killing_every_service_and_the_broker_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    services = available_services()
    assert services == ["publish", "energy-analytics", "normalise", "anonymise", "ingest"], services
    clean = run(tmp_path / "clean", faults=False, services=services)
    faulty = run(tmp_path / "faulty", faults=True, services=services)
    assert clean["observations"][0]["readings"] > 10_000
    assert faulty == clean, differences(clean, faulty)


def differences(clean: dict[str, list[dict]], faulty: dict[str, list[dict]]) -> str:
    """The rows each run has that the other lacks, per query (a whole-dict diff of
    thousands of aggregate rows is cut by pytest before it shows anything)."""
    lines = []
    for name in FINGERPRINTS:
        rows_clean = {repr(sorted(r.items())) for r in clean[name]}
        rows_faulty = {repr(sorted(r.items())) for r in faulty[name]}
        for label, rows in (
            ("only without faults", rows_clean - rows_faulty),
            ("only with faults", rows_faulty - rows_clean),
        ):
            shown = sorted(rows)[:15]
            lines += [f"{name}: {len(rows)} rows {label}", *(f"  {r}" for r in shown)]
    return "\n".join(lines)
