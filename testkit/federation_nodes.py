"""Several Cité+ nodes on one machine for federation tests and the bench.

Each node is a subprocess running ``citeplus federation serve`` with its own state
directory (its own chDB warehouse: one process can open only one), its own port,
its own topic prefix on the one local broker, its own city files and peers file;
all share one development authority. ``python -m testkit.federation_nodes
seed STATE_DIR CITY`` fills a node's warehouse before its server starts.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from services.federation.certs import ensure_dev_certificates
from services.federation.client import FederationClient
from services.policy.federation import certificate_paths
from services.runtime.paths import REPO_ROOT

T0 = 1_736_722_800_000_000  # 2025-01-13T00:00:00+01:00 (23:00 UTC the day before)
HOUR_US = 3_600_000_000
ZONES = ("z1", "z2", "z3", "z4")

# Sources of every test city: what each shares, with whom (filled per city).
SOURCES = {
    "air": ("environment", "air-quality-observed", "no2", "µg/m3"),
    "traffic": ("mobility", "traffic-flow-observed", "traffic_intensity", "vehicle/h"),
    "meters": ("energy", "courbes-de-charge-10min", "active_energy_import", "kWh"),
    "water": ("water", "water-consumption-observed", "water_volume", "m3"),
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_city(directory: Path, code: str, sharing: dict[str, dict[str, Any] | None]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    sources = []
    for source, (domain, dataset, _, _) in SOURCES.items():
        entry: dict[str, Any] = {
            "id": source,
            "format": "ndjson",
            "dataset": dataset,
            "domain": domain,
            "entity": "id",
            "token": "env:CITEPLUS_TEST_TOKEN",
        }
        # Households' meters are personal data: their entities never reach the public
        # (services/policy/access.py); stations and counters are public infrastructure.
        entry["privacy"] = {"personal": domain in ("energy", "water")}
        if sharing.get(source):
            entry["sharing"] = sharing[source]
        sources.append(entry)
    document = {"code": code, "name": code.title(), "timezone": "Europe/Paris", "sources": sources}
    path = directory / f"{code}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def observation(city: str, source: str, zone: str, entity: int, start_us: int, n: int) -> dict:
    domain, dataset, metric, unit = SOURCES[source]
    return {
        "city": city,
        "domain": domain,
        "metric": metric,
        "unit": unit,
        "entity_pseudonym": f"{city}-{source}-{zone}-{entity}",
        "entity_type": None,
        "zone": zone,
        "position": None,
        "start": start_us,
        "step_seconds": 600,
        "times": [],
        "values": [float((entity + 1) * (i % 6 + 1)) for i in range(n)],
        "quality": [],
        "source": source,
        "dataset": dataset,
        "lineage_id": f"{city}-{source}-{zone}-{entity}-{start_us}",
        "key_epoch": "2025-01",
        "sector": "residential" if source == "meters" else None,
        "carrier": "electricity" if source == "meters" else None,
    }


def energy_aggregate(city: str, zone: str, hour: int, suppressed: bool = False) -> dict:
    start = T0 + hour * HOUR_US
    return {
        "city": city,
        "zone": zone,
        "carrier": "electricity",
        "sector": "*",
        "granularity": "PT1H",
        "window_start": start,
        "window_end": start + HOUR_US,
        "version": 1,
        "energy_kwh": None if suppressed else 100.0 + hour,
        "meter_count": None if suppressed else 40,
        "peak_kw": None if suppressed else 12.5,
        "largest_share": None if suppressed else 0.1,
        "suppressed": suppressed,
        "suppression_reason": "too-few-meters" if suppressed else None,
        "computed_at": start + 2 * HOUR_US,
    }


def release_of(upsert: dict) -> dict:
    """The release of a cell, 100 kWh below its provisional upsert."""
    out = {k: v for k, v in upsert.items() if k not in ("version", "largest_share", "computed_at")}
    if out["energy_kwh"] is not None:
        out["energy_kwh"] -= 100.0
    return {**out, "closed_by": "watermark", "released_at": upsert["computed_at"]}


def seed(state_dir: Path, city: str, *, days: int = 2, entities: int = 3) -> int:
    """Two days of 10-minute readings of every source, hourly energy aggregates."""
    from services.publish.rows import Landed, aggregates_table, observations_table, released_table
    from services.warehouse.chdb_embedded import ChdbWarehouse
    from services.warehouse.migrations import migrate

    warehouse = ChdbWarehouse(state_dir / "warehouse")
    try:
        migrate(warehouse)
        held = warehouse.query_arrow("SELECT count() AS n FROM observations").column(0)[0]
        if held.as_py():
            return 0
        landed = []
        offset = 0
        for source in SOURCES:
            for zone in ZONES:
                for entity in range(entities):
                    record = observation(city, source, zone, entity, T0, 144 * days)
                    landed.append(Landed(record, "seed", 0, offset))
                    offset += 1
        warehouse.insert_arrow("observations", observations_table(landed))
        cells = [
            Landed(energy_aggregate(city, zone, hour, suppressed=zone == "z4"), "seed", 0, i)
            for i, (zone, hour) in enumerate(
                (zone, hour) for zone in (*ZONES, "*") for hour in range(24 * days)
            )
        ]
        warehouse.insert_arrow("energy_aggregates", aggregates_table(cells))
        # What partners may see: the release. The provisional upserts above carry
        # other values (and a largest_share) that must never come out.
        released = [Landed(release_of(c.record), "seed", 0, c.offset) for c in cells]
        warehouse.insert_arrow("energy_aggregates_released", released_table(released))
        return len(landed)
    finally:
        warehouse.close()


@dataclass
class Node:
    """One federation node: a ``citeplus federation serve`` subprocess."""

    code: str
    root: Path
    certs_dir: Path
    bootstrap: str
    registry: str
    topic_prefix: str
    port: int = field(default_factory=free_port)
    peers: list[dict[str, Any]] = field(default_factory=list)
    sharing: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    peer_timeout_s: float = 3.0
    limits: dict[str, float] = field(default_factory=dict)  # `limits:` of its federation file
    seed_days: int = 2
    seed_entities: int = 3
    process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "CLICKHOUSE_URL"}
        env.update(
            {
                "CITEPLUS_NODE_STATE_DIR": str(self.state_dir),
                "CITEPLUS_NODE_ID": self.code,
                "CITEPLUS_KAFKA_BOOTSTRAP": self.bootstrap,
                "CITEPLUS_REGISTRY_URL": self.registry,
                "CITEPLUS_FEDERATION_IDENTITY": self.code,
                "CITEPLUS_FEDERATION_LISTEN": self.address,
                "CITEPLUS_FEDERATION_CERTS_DIR": str(self.certs_dir),
                "CITEPLUS_FEDERATION_PEERS_FILE": str(self.root / "federation.yaml"),
                "CITEPLUS_FEDERATION_PEER_TIMEOUT_S": str(self.peer_timeout_s),
                "CITEPLUS_TEST_TOKEN": "test",
            }
        )
        return env

    def prepare(self, seed: bool = True) -> subprocess.Popen | None:
        """City file, peers file, and the seeding subprocess (returned, to run in
        parallel; none without ``seed``: the server starts on an empty warehouse)."""
        write_city(self.root / "cities", self.code, self.sharing)
        document: dict[str, Any] = {"peers": self.peers}
        if self.limits:
            document["limits"] = self.limits
        (self.root / "federation.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
        if not seed:
            return None
        return subprocess.Popen(
            [
                *(sys.executable, "-m", __name__, "seed", str(self.state_dir), self.code),
                *(str(self.seed_days), str(self.seed_entities)),
            ],
            cwd=REPO_ROOT,
            env=self.env(),
        )

    def start(self) -> Node:
        assert self.process is None or self.process.poll() is not None
        log = self.log_file.open("ab")
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "services.cli", "federation", "serve"),
                *("--cities", str(self.root / "cities"), "--topic-prefix", self.topic_prefix),
            ],
            cwd=REPO_ROOT,
            env=self.env(),
            stdout=log,
            stderr=log,
        )
        return self

    def wait_ready(self, timeout_s: float = 180.0) -> Node:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"node {self.code} exited ({self.process.returncode}):\n"
                    + self.log_file.read_text(errors="replace")[-4000:]
                )
            try:
                with self.client(self.code) as client:
                    if client.health(timeout=1.0) == "SERVING":
                        return self
            except Exception:
                time.sleep(0.3)
        raise RuntimeError(f"node {self.code} not serving after {timeout_s} s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def client(self, as_identity: str, **kwargs: Any) -> FederationClient:
        """A client of this node holding ``as_identity``'s certificate."""
        return FederationClient.connect(
            self.address, certificate_paths(self.certs_dir, as_identity), self.code, **kwargs
        )


def make_authority(directory: Path, identities: list[str]) -> Path:
    ensure_dev_certificates(directory, identities)
    return directory


def main(argv: list[str]) -> int:
    if len(argv) in (3, 5) and argv[0] == "seed":
        days, entities = (int(argv[3]), int(argv[4])) if len(argv) == 5 else (2, 3)
        seed(Path(argv[1]), argv[2], days=days, entities=entities)
        return 0
    print(
        "usage: python -m testkit.federation_nodes seed STATE_DIR CITY [DAYS ENTITIES]",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
