"""What tests that run a whole LocalNode look at: what ClickHouse holds, summed up
so that two runs (or a run before and after an operation) compare exactly, and a
wait until the pipeline has settled."""

from __future__ import annotations

import time

from services.node.demo import wait_drained
from services.node.status import sample_service
from services.node.supervisor import read_state
from services.runtime.config import NodeConfig, load_node_config
from testkit.local_node import LocalNode

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

Fingerprint = dict[str, list[dict]]


def fingerprint(node: LocalNode) -> Fingerprint:
    return {name: node.sql(sql).to_pylist() for name, sql in FINGERPRINTS.items()}


def all_up(node: LocalNode, config: NodeConfig, services: list[str]) -> bool:
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


def settle(node: LocalNode, services: list[str], timeout_s: float = 300) -> Fingerprint:
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


def differences(expected: Fingerprint, got: Fingerprint) -> str:
    """The rows each side has that the other lacks, per query (a whole-dict diff of
    thousands of aggregate rows is cut by pytest before it shows anything)."""
    lines = []
    for name in FINGERPRINTS:
        rows_expected = {repr(sorted(r.items())) for r in expected[name]}
        rows_got = {repr(sorted(r.items())) for r in got[name]}
        for label, rows in (
            ("only in the expected run", rows_expected - rows_got),
            ("only in the run under test", rows_got - rows_expected),
        ):
            lines += [f"{name}: {len(rows)} rows {label}", *(f"  {r}" for r in sorted(rows)[:15])]
    return "\n".join(lines)
