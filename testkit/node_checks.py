"""What tests that run a whole LocalNode look at: what ClickHouse holds, summed up
so that two runs (or a run before and after an operation) compare exactly, and a
wait until the pipeline has settled."""

from __future__ import annotations

import time

from confluent_kafka import KafkaException

from services.node.status import sample_service
from services.node.supervisor import read_state
from services.node.unread import unread_input
from services.node.workers_status import GROUPS, UNGROUPED
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


Counters = tuple[tuple[str, int, float, float, float], ...]


def pipeline_counters(node: LocalNode, config: NodeConfig, services: list[str]) -> Counters | str:
    """Every service's (pid, records in, records out, dead letters), or why not: one of
    them is down, waiting for a restart, unanswering, unhealthy or has input left to
    read (lag above 0) -- the reason a wait that times out reports."""
    supervisor = read_state(node.state / "node" / "status.json")
    state = {s["name"]: s for s in supervisor.get("services", [])}
    counters = []
    for name in services:
        pid = state.get(name, {}).get("pid")
        if not pid:
            return f"{name} is not running"
        sample = sample_service(config, name, timeout=2.0, workers=supervisor.get("workers"))
        if sample is None:
            return f"{name} (pid {pid}) does not answer on its metrics port"
        if not sample.healthy:
            return f"{name} (pid {pid}) is unhealthy"
        if sample.lag > 0:
            return f"{name} (pid {pid}) has {sample.lag:.0f} records left to read"
        counters.append((name, pid, sample.records_in, sample.records_out, sample.dead_letters))
    return tuple(counters)


def stage_groups(services: list[str]) -> list[str]:
    """The consumer groups of the services (workers share their stage's group)."""
    stages = {label.split("#")[0] for label in services} - set(UNGROUPED)
    return sorted(
        group
        for stage in stages
        for group in GROUPS.get(stage, {stage: f"citeplus.{stage}"}).values()
    )


def settle(
    node: LocalNode, services: list[str], timeout_s: float = 300, quiet_s: float = 5.0
) -> Fingerprint:
    """Wait until the pipeline has settled, and return what ClickHouse then holds.

    Settled means: every service running and healthy with nothing left to read and
    not one counter moving for two quiet spells of ``quiet_s`` in a row, ClickHouse
    giving the same fingerprint at the end of each spell, and the brokers saying that
    every stage's group has read all its input. The services are polled every second
    and any movement (a record read or written, a restart, a lag) starts the wait
    again, so a stage that is still working, restarting or catching up is never taken
    for settled; the second fingerprint catches a write that no counter shows, and the
    brokers' word a restarted worker that holds no partition yet: it shows no lag of
    its own while its group waits for the killed member's session to end (a run once
    passed for settled with three cities still unread that way)."""
    config = load_node_config(env=node.env)
    groups = stage_groups(services)
    deadline = time.monotonic() + timeout_s
    last: Counters | str = "not polled yet"
    quiet_since = time.monotonic()
    taken: Fingerprint | None = None
    unread_seen = ""
    while time.monotonic() < deadline:
        counters = pipeline_counters(node, config, services)
        now = time.monotonic()
        if isinstance(counters, str) or counters != last:
            last, quiet_since, taken = counters, now, None
        elif now - quiet_since >= quiet_s:
            current = fingerprint(node)
            if current == taken and current["observations"][0]["readings"] > 0:
                try:
                    unread = unread_input(config, groups)
                except (KafkaException, TimeoutError) as exc:  # the brokers cannot say yet
                    unread_seen = f"the brokers could not say what is unread: {exc}"
                else:
                    if not unread:
                        return current
                    unread_seen = "; ".join(map(str, unread[:3]))
                last, current = f"input unread: {unread_seen}", None
            taken, quiet_since = current, time.monotonic()
        time.sleep(1.0)
    raise AssertionError(
        f"the pipeline did not settle in {timeout_s} s: "
        + (f"the warehouse still changed: {str(taken)[:2000]}" if taken else str(last))
        + (f" (and earlier: {unread_seen})" if unread_seen else "")
    )


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
