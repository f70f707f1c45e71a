"""`citeplus demo` (what `make run` runs): a node on its embedded defaults with
realistic data for several cities, pushed through the HTTP ingest API like city
systems would, then the first answers an energy team wants, and an HTML report."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from services.node.main import available_services, bring_up, workers_of
from services.node.report import ReportData, render_report
from services.node.status import Sample, sample_service
from services.publish.main import run_query
from services.publish.questions import question
from services.runtime.commands import Command, option
from services.runtime.config import NodeConfig, load_node_config
from services.simulate.cli import city_list
from services.warehouse.query import render_table

AIR_SQL = """SELECT city, hour, round(sumMerge(total) / countMerge(readings), 1) AS no2
FROM observations_hourly WHERE metric = 'no2'
GROUP BY city, hour ORDER BY city, hour"""
# What the release costs, measured on what was released (energy_aggregates_released:
# each window once, when its day closed): the share of zone x sector cells of each
# day withheld, and the share of the energy they hold (from the readings, which only
# the node's own staff see).
SUPPRESSION_SQL = """WITH truth AS (
    SELECT city, if(zone = '', 'unknown', zone) AS zone,
           if(sector = '', 'unknown', sector) AS sector,
           toStartOfDay(ts, 'UTC') AS day, sum(value) AS kwh
    FROM observations WHERE domain = 'energy' AND metric = 'active_energy_import'
    GROUP BY city, zone, sector, day)
SELECT r.city AS city, count() AS day_cells, countIf(r.suppressed) AS suppressed_cells,
       round(100 * countIf(r.suppressed) / count(), 1) AS cells_suppressed_pct,
       round(100 * sumIf(t.kwh, r.suppressed) / sum(t.kwh), 1) AS energy_suppressed_pct,
       arrayStringConcat(groupUniqArrayIf(r.suppression_reason, r.suppressed), ', ') AS reasons
FROM energy_aggregates_released AS r FINAL
LEFT JOIN truth AS t ON t.city = r.city AND t.zone = r.zone AND t.sector = r.sector
    AND t.day = toStartOfDay(r.window_start, 'UTC')
WHERE r.granularity = 'P1D' AND r.zone != '*' AND r.sector != '*' AND r.carrier = 'electricity'
GROUP BY r.city ORDER BY r.city"""
RELEASED_SQL = "SELECT count() AS n FROM energy_aggregates_released"
COUNTS_SQL = """SELECT domain, metric, count() AS readings, uniqExact(entity) AS entities
FROM observations GROUP BY domain, metric ORDER BY readings DESC"""
# The open datasets' side (what the common API serves): stations, roads, counters
# and car parks per city and domain.
OPEN_DATA_SQL = """SELECT city, domain, uniqExact(source) AS sources, uniqExact(entity) AS entities,
       count() AS readings
FROM observations WHERE domain != 'energy' GROUP BY city, domain ORDER BY city, domain"""
ZONES_SQL = """SELECT city, zone, round(sumMerge(total), 1) AS kwh
FROM observations_daily WHERE metric = 'active_energy_import'
GROUP BY city, zone ORDER BY kwh DESC LIMIT 15"""


def wait_drained(
    node: NodeConfig, services: list[str], timeout_s: float, quiet_s: float = 8.0
) -> dict[str, Sample | None]:
    """Until every stage has consumed what exists and nothing moved for ``quiet_s``."""
    deadline = time.monotonic() + timeout_s
    workers = workers_of(node, services, None)  # several ingest workers: each its own port
    last: dict[str, tuple[float, float]] = {}
    still_since = time.monotonic()
    samples: dict[str, Sample | None] = {}
    while time.monotonic() < deadline:
        samples = {name: sample_service(node, name, workers=workers) for name in services}
        current = {
            name: (s.records_in, s.records_out) for name, s in samples.items() if s is not None
        }
        lag = sum(s.lag for s in samples.values() if s is not None)
        if current != last or lag > 0:
            last, still_since = current, time.monotonic()
        elif time.monotonic() - still_since >= quiet_s:
            return samples
        print(f"\r  waiting for the pipeline to drain (lag {lag:,.0f})", end="", file=sys.stderr)
        time.sleep(2.0)
    print("\n  the pipeline did not drain in time; figures below may be partial", file=sys.stderr)
    return samples


def wait_released(node: NodeConfig, timeout_s: float) -> int:
    """Until the closed days' release has landed and stopped growing."""
    print("==> waiting for the release of the closed days", file=sys.stderr)
    deadline = time.monotonic() + timeout_s
    last, steady = -1, 0
    while time.monotonic() < deadline:
        count = int(query(node, RELEASED_SQL)[0]["n"])
        steady = steady + 1 if count == last and count > 0 else 0
        if steady >= 2:
            return count
        last = count
        time.sleep(3.0)
    print("  nothing released yet; the suppression figures below may be empty", file=sys.stderr)
    return max(last, 0)


def api_answer(node: NodeConfig) -> str:
    """Whether the common API answers, and how to call it: the demo's last word."""
    base = f"http://{node.api.host}:{node.api.port}"
    try:
        with urllib.request.urlopen(f"{base}/openapi.json", timeout=10) as response:
            paths = len(json.load(response)["paths"])
    except (OSError, ValueError, KeyError) as exc:
        return f"Common API: not answering at {base} ({exc}); see `citeplus logs api`"
    return (
        f"Common API (NGSI-LD, {paths} paths): {base}/docs\n"
        f"  developer portal (datasets, examples, live values): {base}/portal\n"
        f"  curl -s '{base}/ngsi-ld/v1/entities?type=AirQualityObserved&limit=2'"
    )


def query(node: NodeConfig, sql: str) -> list[dict]:
    return run_query(node, sql).to_pylist()


def cmd_demo(args: argparse.Namespace) -> int:
    # The demo's days are in the past: once the simulated city goes quiet for this
    # long, energy-analytics closes them by the wall clock and releases them.
    os.environ.setdefault("CITEPLUS_PROCESSING_IDLE_CLOSE_S", str(args.idle_close))
    node = load_node_config()
    services = available_services()
    started = time.monotonic()
    print(f"==> starting the node ({', '.join(services)})", file=sys.stderr)
    healthy = bring_up(node, args.storage, services, wait_s=180)
    unhealthy = [name for name, ok in healthy.items() if not ok]
    if unhealthy:
        print(f"services not healthy: {unhealthy}; see `citeplus logs <service>`", file=sys.stderr)
        return 1
    url = f"http://{node.ingest.host}:{node.ingest.port}"
    print(
        f"==> simulating {args.meters} meters per city over {args.days} days, pushed to {url}",
        file=sys.stderr,
    )
    simulate = [
        sys.executable,
        "-m",
        "services.cli",
        "simulate",
        "--url",
        url,
        "--cities",
        ",".join(args.cities),
        "--meters",
        str(args.meters),
        "--days",
        str(args.days),
        "--seed",
        str(args.seed),
    ]
    subprocess.run(simulate, check=False)
    print("==> waiting for every stage to drain", file=sys.stderr)
    samples = wait_drained(node, services, timeout_s=args.timeout)
    print(file=sys.stderr)
    wait_released(node, args.idle_close + 60)
    report_path = summarise(node, services, samples, Path(args.report) if args.report else None)
    if "api" in services:
        print(f"\n{api_answer(node)}")
    print(f"\nDone in {time.monotonic() - started:.0f} s. Report: {report_path}")
    print("The node keeps running: citeplus status --watch | citeplus sql | citeplus down")
    return 0


def summarise(
    node: NodeConfig, services: list[str], samples: dict[str, Sample | None], path: Path | None
) -> Path:
    print("Records per stage")
    for name in services:
        if name == "api":
            continue  # it consumes no records: it answers HTTP (api_answer)
        sample = samples.get(name)
        if sample is None:
            print(f"  {name:18} (no metrics)")
            continue
        print(
            f"  {name:18} in {sample.records_in:>10,.0f}   out {sample.records_out:>10,.0f}   "
            f"readings {sample.readings_out:>12,.0f}   dead letters {sample.dead_letters:>6,.0f}"
        )
    sections = {
        "Readings landed in ClickHouse": COUNTS_SQL,
        "Air, traffic, bikes, parking and weather per city": OPEN_DATA_SQL,
        "Dead letters, top reasons": question("dead-letters-by-reason").sql + "\nLIMIT 10",
        "Statistical secrecy of the released aggregates (zone x sector x day cells)": (
            SUPPRESSION_SQL
        ),
        "Peak hour (UTC) per city and local day": question("peak-hour-per-city").sql,
        "Zones that consume most (kWh, all days)": ZONES_SQL,
        "Daily load profile (kWh per hour, UTC)": question("daily-load-profile").sql,
    }
    tables = []
    for title, sql in sections.items():
        rows = run_query(node, sql)
        print(f"\n{title}\n{render_table(rows, max_rows=30)}")
        tables.append((title, rows.to_pylist()[:50]))
    data = ReportData(
        title=f"Cité+ node {node.node.id}: demo report",
        summary=[
            (
                name,
                f"{s.records_in:,.0f} in, {s.records_out:,.0f} out, "
                f"{s.dead_letters:,.0f} dead letters",
            )
            for name, s in samples.items()
            if s is not None
        ],
        load_profile=query(node, question("daily-load-profile").sql),
        zones=query(node, ZONES_SQL),
        air_quality=[{**r, "hour": r["hour"].isoformat()} for r in query(node, AIR_SQL)],
        tables=tables,
    )
    path = path or node.state_dir / "report" / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(data), encoding="utf-8")
    return path


DEMO = Command(
    "demo",
    "start a node, push simulated data for five cities, print answers, write a report",
    cmd_demo,
    description="What `make run` does: start the node (broker, registry, the five services, "
    "the common API), generate realistic data for the cities with `citeplus simulate` and "
    "push it through the HTTP ingest API, wait until every stage has drained, then print "
    "records per stage, dead letters, suppressed aggregate cells and the first energy "
    "answers, write an HTML report that opens offline, and say where the common API "
    "answers. The node keeps running afterwards.",
    options=(
        option("--meters", type=int, default=1000, help="meters per city (default 1000)"),
        option("--days", type=int, default=2, help="days of data (default 2)"),
        option(
            "--cities",
            type=city_list,
            default="paris,lyon,nice,bordeaux,angers",
            metavar="LIST",
            help="comma-separated cities (default: %(default)s)",
        ),
        option("--seed", type=int, default=42),
        option("--storage", choices=["kafkasql", "memory"], default="kafkasql"),
        option("--timeout", type=float, default=600, help="longest wait for draining (s)"),
        option("--report", help="report path (default <state>/report/index.html)"),
        option(
            "--idle-close",
            type=float,
            default=20.0,
            help="seconds a quiet city waits before its past days are released (default 20)",
        ),
    ),
)

COMMANDS = (DEMO,)
