"""Cité+ nodes with their common API, for the API's whole-node tests and its bench.

A node here is what serves the API for real: its federation server (``citeplus
federation serve``, holding its own chDB warehouse, seeded before it starts) and
its ``api`` service (``citeplus service api``), which reads every city, its own
included, through the federation gRPC API with the node's certificate. Nodes of
one federation share a development authority and name each other in their peers
files. ``python -m testkit.api_nodes seed STATE_DIR CITY DAYS ENTITIES`` fills a
warehouse and writes ``expected.json`` beside it: what the warehouse holds, read
back with SQL, for the tests to compare the API's answers with.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from services.runtime.paths import REPO_ROOT
from testkit.api_world import ZONES, observations, write_city
from testkit.federation_nodes import Node, energy_aggregate, free_port, release_of
from testkit.local_node import free_port_block

LATEST_SQL = """SELECT city, source, dataset, entity, entity_type, metric, unit, zone,
       argMax(value, ts) AS latest, max(ts) AS observed_at, count() AS readings
FROM observations GROUP BY city, source, dataset, entity, entity_type, metric, unit, zone
ORDER BY city, source, entity, metric"""
HOURLY_SQL = """SELECT entity, metric,
       formatDateTime(toStartOfHour(ts), '%Y-%m-%dT%H:%i:%SZ', 'UTC') AS hour,
       sum(value) AS sum, max(value) AS max, count() AS readings
FROM observations WHERE source = 'air'
GROUP BY entity, metric, hour ORDER BY entity, metric, hour"""
RELEASED_SQL = """SELECT zone, carrier, sector, granularity, window_start, energy_kwh,
       meter_count, suppressed, suppression_reason
FROM energy_aggregates_released FINAL ORDER BY zone, window_start"""


def _iso(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return value


def read_back(warehouse: Any) -> dict[str, list[dict]]:
    """What the warehouse holds, by SQL: the oracle the API's answers are held to."""
    return {
        name: [
            {k: _iso(v) for k, v in row.items()} for row in warehouse.query_arrow(sql).to_pylist()
        ]
        for name, sql in (
            ("latest", LATEST_SQL),
            ("hourly_air", HOURLY_SQL),
            ("released", RELEASED_SQL),
        )
    }


def seed(state_dir: Path, city: str, *, days: int = 2, entities: int = 3) -> None:
    """Readings of every source of the world, released energy aggregates, and
    ``expected.json`` (the warehouse read back) beside the warehouse."""
    from services.publish.rows import Landed, aggregates_table, observations_table, released_table
    from services.warehouse.chdb_embedded import ChdbWarehouse
    from services.warehouse.migrations import migrate

    warehouse = ChdbWarehouse(state_dir / "warehouse")
    try:
        migrate(warehouse)
        landed = [Landed(r, "seed", 0, i) for i, r in enumerate(observations(city, days, entities))]
        for start in range(0, len(landed), 200):
            warehouse.insert_arrow("observations", observations_table(landed[start : start + 200]))
        cells = [
            Landed(energy_aggregate(city, zone, hour, suppressed=zone == ZONES[-1]), "seed", 0, i)
            for i, (zone, hour) in enumerate(
                (zone, hour) for zone in (*ZONES, "*") for hour in range(24 * min(days, 2))
            )
        ]
        warehouse.insert_arrow("energy_aggregates", aggregates_table(cells))
        released = [Landed(release_of(c.record), "seed", 0, c.offset) for c in cells]
        warehouse.insert_arrow("energy_aggregates_released", released_table(released))
        expected = read_back(warehouse)
        (state_dir / "expected.json").write_text(json.dumps(expected, default=str), "utf-8")
    finally:
        warehouse.close()


@dataclass
class ApiNode:
    """A node of the world: its federation server and its api service."""

    federation: Node
    api_port: int = field(default_factory=free_port)
    metrics_base: int = field(default_factory=lambda: free_port_block(20))
    rate_per_s: int = 100_000  # generous quotas: tests and benches measure, not throttle
    days: int = 2
    entities: int = 3
    process: subprocess.Popen | None = None

    @property
    def code(self) -> str:
        return self.federation.code

    @property
    def root(self) -> Path:
        return self.federation.root

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def log_file(self) -> Path:
        return self.root / "api.log"

    def expected(self) -> dict[str, list[dict]]:
        return json.loads((self.federation.state_dir / "expected.json").read_text("utf-8"))

    def env(self) -> dict[str, str]:
        env = self.federation.env()
        env.update(
            {
                "CITEPLUS_API_HOST": "127.0.0.1",
                "CITEPLUS_API_PORT": str(self.api_port),
                "CITEPLUS_API_ANONYMOUS_RATE": str(self.rate_per_s),
                "CITEPLUS_API_KEY_RATE": str(self.rate_per_s),
                "CITEPLUS_API_ANONYMOUS_BURST": str(self.rate_per_s),
                "CITEPLUS_API_KEY_BURST": str(self.rate_per_s),
                "CITEPLUS_METRICS_BASE_PORT": str(self.metrics_base),
            }
        )
        return env

    def prepare(self) -> subprocess.Popen:
        """City file, peers file; the seeding subprocess (to run in parallel)."""
        write_city(self.root / "cities", self.code)
        document = {"peers": self.federation.peers}
        (self.root / "federation.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
        return subprocess.Popen(
            [
                *(sys.executable, "-m", __name__, "seed", str(self.federation.state_dir)),
                *(self.code, str(self.days), str(self.entities)),
            ],
            cwd=REPO_ROOT,
            env=self.env(),
        )

    def citeplus(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "services.cli", *args],
            cwd=REPO_ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start_api(self) -> ApiNode:
        log = self.log_file.open("ab")
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "services.cli", "service", "api"),
                *("--cities", str(self.root / "cities")),
                *("--topic-prefix", self.federation.topic_prefix),
            ],
            cwd=REPO_ROOT,
            env=self.env(),
            stdout=log,
            stderr=log,
        )
        return self

    def wait_api(self, timeout_s: float = 90.0) -> ApiNode:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"api of {self.code} exited ({self.process.returncode}):\n"
                    + self.log_file.read_text(errors="replace")[-4000:]
                )
            try:
                if httpx.get(f"{self.url}/ngsi-ld/v1/types", timeout=2).status_code < 500:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"api of {self.code} not answering after {timeout_s} s")

    def stop_api(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def create_key(self, application: str, partner: str | None = None, wait: bool = True) -> str:
        """A key issued by this node (``citeplus api keys create``): its secret; with
        ``wait``, once the running api has read it."""
        args = ["api", "keys", "create", "--application", application]
        args += ["--cities", str(self.root / "cities")]  # the partner must be a city's
        if partner:
            args += ["--partner", partner]
        done = self.citeplus(*args)
        if done.returncode != 0:
            raise RuntimeError(f"citeplus {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        secret = secret_in(done.stdout)
        if wait:
            self.wait_key_known(secret)
        return secret

    def issue_keys(self, wanted: dict[str, tuple[str, str | None]]) -> dict[str, str]:
        """Keys ``{name: (application, partner)}`` issued one after the other (the key
        file is rewritten by each), before the api starts: ``{name: secret}``."""
        return {name: self.create_key(*spec, wait=False) for name, spec in wanted.items()}

    def wait_key_known(self, secret: str, timeout_s: float = 30.0) -> None:
        """Until the running api has read the new key (it reloads its key file)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            answer = httpx.get(
                f"{self.url}/ngsi-ld/v1/types",
                headers={"Authorization": f"Bearer {secret}"},
                timeout=10,
            )
            if answer.status_code != 401:
                return
            time.sleep(0.2)
        raise RuntimeError(f"the api of {self.code} still refuses a key created {timeout_s} s ago")


def secret_in(output: str) -> str:
    """The key's secret in ``keys create``'s output (its longest token-like word)."""
    words = re.findall(r"[A-Za-z0-9_\-.~]{24,}", output)
    if not words:
        raise RuntimeError(f"no secret in the output of keys create:\n{output}")
    return max(words, key=len)


@dataclass
class World:
    """Nodes of one federation, started together; ``nodes[code]``."""

    nodes: dict[str, ApiNode]
    certs: Path
    keys: dict[str, dict[str, str]] = field(default_factory=dict)  # city -> name -> secret

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop_api()
            node.federation.stop()


def start_world(
    root: Path,
    cities: tuple[str, ...],
    *,
    infrastructure: tuple[str, str],
    extra_peers: dict[str, list[dict[str, str]]] | None = None,
    days: int = 2,
    entities: int = 3,
    peer_timeout_s: float = 3.0,
    keys: dict[str, dict[str, tuple[str, str | None]]] | None = None,
) -> World:
    """One node per city, each peering with every other, plus ``extra_peers[city]``
    (``{code, address}`` entries: a peer that never answers, one that is down), and
    ``keys[city]`` issued by that city's node while the warehouses are seeded."""
    from testkit.federation_nodes import make_authority

    bootstrap, registry = infrastructure
    certs = make_authority(root / "certs", list(cities))
    prefix = f"test.api{int(time.time() * 1000) % 10**8}."
    nodes = {
        code: ApiNode(
            Node(
                code,
                root / code,
                certs_dir=certs,
                bootstrap=bootstrap,
                registry=registry,
                topic_prefix=f"{prefix}{code}.",
                peer_timeout_s=peer_timeout_s,
            ),
            days=days,
            entities=entities,
        )
        for code in cities
    }
    for code, node in nodes.items():
        node.federation.peers = [
            {"code": other, "address": nodes[other].federation.address}
            for other in cities
            if other != code
        ]
    for code, extra in (extra_peers or {}).items():
        nodes[code].federation.peers += extra
    world = World(nodes, certs)
    try:
        _start_all(world, keys or {})
    except BaseException:
        world.stop()
        raise
    return world


def _start_all(world: World, keys: dict[str, dict[str, tuple[str, str | None]]]) -> None:
    """Everything that can overlap does (start-up is most of a test module's time): keys
    are issued while the warehouses are seeded; each node's federation server starts
    as soon as its own warehouse is seeded, its api beside it (the api dials nobody
    until asked, and it is asked only once the federation servers serve)."""
    nodes = world.nodes
    seeding = {code: node.prepare() for code, node in nodes.items()}
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        issued = {code: pool.submit(nodes[code].issue_keys, want) for code, want in keys.items()}
        world.keys = {code: future.result() for code, future in issued.items()}
    for code, node in nodes.items():
        if seeding[code].wait(600) != 0:
            raise RuntimeError(f"seeding the warehouse of {code} failed (see the output above)")
        node.federation.start()
        node.start_api()
    for node in nodes.values():
        node.federation.wait_ready(120)
    for node in nodes.values():
        node.wait_api()


def silent_peer() -> socket.socket:
    """A socket that accepts connections and never says a word (a hung node)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def main(argv: list[str]) -> int:
    if len(argv) == 5 and argv[0] == "seed":
        seed(Path(argv[1]), argv[2], days=int(argv[3]), entities=int(argv[4]))
        return 0
    print("usage: python -m testkit.api_nodes seed STATE_DIR CITY DAYS ENTITIES", file=sys.stderr)
    return 2


if __name__ == "__main__":
    os.environ.pop("CLICKHOUSE_URL", None)
    sys.exit(main(sys.argv[1:]))
