"""The promise context brokers break: run the whole pipeline on a fixed five-city data
set without faults, then again while SIGKILLing every service at random moments and
the broker once, and again on a 3-broker cluster with two workers per stage (publish
one) while a broker is SIGKILLed and restarted, one worker of each stage is SIGKILLed,
a worker is added and the brokers are restarted one by one: the ClickHouse
observations and aggregates must be exactly those of the fault-free run, and no
acknowledged ingest batch may be lost (the pushes succeed, retrying 503s, and every
reading is there). Each run is a node of its own (state directory, ports, broker or
cluster), driven through `citeplus` like an operator would; loopback only, bounded in
time. The fault-free run is made once for the module, beside the first faulty one."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from services.node.main import available_services
from testkit.fixture_secrets import fixture_secret
from testkit.local_node import LocalNode, free_port_block
from testkit.node_checks import Fingerprint, differences, settle

# Three whole nodes: the fault-free one beside the one restarted under faults (~3 min
# on a quiet machine), then the cluster one (~3 min): bounds of 10 and 20 minutes.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

CITIES = ("lyon", "paris", "nice", "bordeaux", "angers")
# Fixed keys so that every run gives the same pseudonyms (random dev keys otherwise).
SECRETS = {f"CITEPLUS_PSEUDONYM_SECRET_{c.upper()}": fixture_secret(f"crash-{c}") for c in CITIES}
SIMULATE = ["simulate", "--cities", ",".join(CITIES), "--meters", "20", "--days", "1"]
SIMULATE += ["--seed", "7"]
# ingest and the broker are killed while it pushes: up to ~2 min for them to come back
# (the default ~15 s was not always enough on a loaded machine).
SIMULATE += ["--attempts", "10"]
# One worker of each stage killed in the cluster run (the second of some, the first of others).
VICTIMS = ("anonymise#1", "normalise", "energy-analytics#1", "ingest#1")
SERVICES = ["publish", "api", "energy-analytics", "normalise", "anonymise", "ingest"]


def push(node: LocalNode) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", *SIMULATE, "--url", node.ingest_url, "--quiet"],
        env=node.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def watched(node: LocalNode, services: list[str]) -> list[str]:
    """Every worker whose lag, health and counters settle() must see. Not ingest's:
    it has no lag, the pushes that all succeeded say it answered, and its counters
    are its own business (they once kept the run from ever looking still, when every
    poll of the port its workers share read another worker)."""
    labels = list(node.service_pids())
    return [label for label in labels if label.split("#")[0] != "ingest"] or services


def extra_worker(node: LocalNode, stage: str, index: int) -> subprocess.Popen:
    """A worker added by hand beside the supervised ones (it joins the group), run as
    an operator runs one on another machine: restarted when it exits (a worker exits
    on a fatal error, e.g. a producer wedged by the roll restart, and must come back
    with a new producer). The loop and its worker share one process group."""
    port = node.metrics_base + 2 + 10 * index  # anonymise's port for worker ``index``
    log = (node.state / "logs" / f"{stage}-added.log").open("ab")
    worker = [sys.executable, "-m", "services.cli", "service", stage]
    worker += ["--instance", str(index), "--metrics-port", str(port)]
    return subprocess.Popen(
        ["bash", "-c", 'while true; do "$@"; sleep 1; done', "added-worker", *worker],
        env=node.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def answers_healthy(port: int, timeout_s: float = 60) -> bool:
    """Whether the worker at ``port`` says it is healthy within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(1)
    return False


def chaos_run(tmp: Path, services: list[str]) -> Fingerprint:
    node = LocalNode(tmp, secrets=SECRETS, brokers=3, workers=2)
    node.up()
    added: subprocess.Popen | None = None
    try:
        cluster = node.cluster()
        pushing = push(node)
        time.sleep(3)
        cluster.kill(2)
        time.sleep(4)
        cluster.restart(2)
        for victim in VICTIMS:
            assert node.kill_service(victim), f"{victim} was not running"
            time.sleep(2)
        added = extra_worker(node, "anonymise", 2)
        cluster.roll_restart()
        assert pushing.wait(timeout=600) == 0, pushing.stderr.read().decode()[-2000:]
        pushed = time.monotonic()  # after the roll restart: every fault is behind
        result = settle(node, watched(node, services), timeout_s=600)
        print(
            f"\nlag back to zero and the warehouse still {time.monotonic() - pushed:.0f} s "
            "after the last push (the faults were all over by then)"
        )
        restarts = node.restarts()
        assert all(restarts.get(victim, 0) >= 1 for victim in VICTIMS), restarts
        assert added.poll() is None, "the added worker's restart loop died"
        assert answers_healthy(node.metrics_base + 2 + 10 * 2), "the added worker is not up"
        return result
    finally:
        if added is not None and added.poll() is None:
            os.killpg(added.pid, signal.SIGTERM)
            added.wait(60)
        node.down()


def run(node: LocalNode, faults: bool, services: list[str]) -> Fingerprint:
    node.up()
    try:
        pushing = push(node)
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
        assert pushing.wait(timeout=300) == 0, pushing.stderr.read().decode()[-2000:]
        result = settle(node, services)
        if faults:
            restarts = node.restarts()
            assert all(restarts.get(name, 0) >= 1 for name in services), restarts
        return result
    finally:
        node.down()


@pytest.fixture(scope="module")
def clean(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LocalNode, Future[Fingerprint]]]:
    """The fault-free run (one broker, one worker per stage), started at once in the
    background: the faulty runs compare with it, the first one running beside it."""
    node = LocalNode(tmp_path_factory.mktemp("clean"), secrets=SECRETS)
    with ThreadPoolExecutor(max_workers=1) as beside:
        yield node, beside.submit(run, node, False, SERVICES)


def test_killing_every_service_and_the_broker_loses_and_duplicates_nothing(
    tmp_path: Path, clean: tuple[LocalNode, Future[Fingerprint]]
) -> None:
    assert available_services() == SERVICES, available_services()
    clean_node, clean_run = clean
    faulty_node = LocalNode(tmp_path / "faulty", secrets=SECRETS)
    # Two blocks, no shared port with the clean node running beside it.
    while abs(faulty_node.base_port - clean_node.base_port) < 34:
        faulty_node.base_port = free_port_block(34)
    faulty = run(faulty_node, faults=True, services=SERVICES)
    reference = clean_run.result()
    assert reference["observations"][0]["readings"] > 10_000
    assert faulty == reference, differences(reference, faulty)


def test_cluster_and_workers_under_faults_give_the_fault_free_warehouse(
    tmp_path: Path, clean: tuple[LocalNode, Future[Fingerprint]]
) -> None:
    reference = clean[1].result()  # done before the cluster starts: the two never share the cores
    faulty = chaos_run(tmp_path / "chaos", SERVICES)
    assert faulty == reference, differences(reference, faulty)
