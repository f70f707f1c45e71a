"""The whole node on this machine, measured from outside: the five services, the
broker and the registry, from the HTTP ingest API to rows in ClickHouse; issue 17's
table in one run.

(0) a warm-up: Bordeaux's load curves and single readings, half the size of
    Paris's measured loads, through the whole node, its figures printed as a fresh
    node's (bench/pipeline_warm.py says why another city); ``--cold`` leaves it
    out, the basis of the figures before the eighth round of docs/performance.md;
(1) readings/s of meter load curves sent as a city would (a day of 10-minute
    readings per meter, 20 meters per payload) and of single readings (one reading
    per meter, 1,000 meters per payload), each from the first push until every
    reading is in ClickHouse, and the CPU each process of the node used meanwhile,
    per 1,000 readings (bench/pipeline_cpu.py: the kernel's account, not samples);
    for the single readings, the offsets each topic used per reading
    (bench/pipeline_topics.py: where the broker's messages go);
(2) latency p50/p99 of single readings offered open loop at 200/s and at 5,000/s
    (10 requests a second): a request's last reading's `landed_at` (set by
    ClickHouse at insert) minus the time the request was scheduled to leave;
(3) resident and peak resident memory of every process of the node;
(4) the Kafka ceiling in the same run, on the node's broker (after (1), the node
    drained, before (2) can leave a queue): bare confluent-kafka
    producing then consuming the same readings in the messages the pipeline
    carries (144-reading series; one reading per message; 1,000 per batch message),
    and the bare produce -> consume latency at the same offered rates;
then one table: each figure, its goal in issue 17 and its ratio to the goal, and
its ratio to the Kafka ceiling. A ratio >= 1.00 to a goal meets it (for latency:
goal / measured); a ratio to the ceiling says what share of bare Kafka the node
keeps (for latency: bare latency / measured).

Durations on this 2-core machine, node start included: ``--quick`` about 1.5 min,
the full run about 3 min on a quiet machine (84 s and 144 s measured on 2026-12-07
without the warm-up, 170 s with it); on a loaded machine up to 7 and 16 min
(measured: 394 s and 956 s at a load average of 10 to 20, with an earlier, slower
node). Each latency run waits at most 6x its duration for its readings to land, which
bounds a run where the node queues. ``--profile DIR``
also records every service with py-spy during the two throughput loads and prints
where each spends its time (about 1 min more).
The node is a private one (own state, ports and broker): nothing else is disturbed.
With ``--brokers 3`` and/or ``--workers N`` it runs bench/pipeline_scaled.py instead.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.pipeline_ceiling import bare_latency, ceiling, codec_costs, quantile
from bench.pipeline_cpu import cpu_lines, cpu_seconds
from bench.pipeline_hops import TOPICS as HOP_TOPICS
from bench.pipeline_hops import Hops, hops
from bench.pipeline_load import (
    T0,
    Latency,
    latency,
    memory_mb,
    node_pids,
    paris_csv,
    paris_source,
    throughput,
)
from bench.pipeline_topics import per_reading_lines, topic_offsets
from bench.pipeline_warm import warm_up
from testkit.local_node import LocalNode

RATES = (200, 5000)  # single readings/s offered for latency
GOALS = {  # issue 17's goals
    "curves": 60_000,
    "singles": 20_000,
    "p50@200": 0.250,
    "p99@200": 0.500,
    "p99@5000": 1.0,
}


@dataclass
class Sizes:
    """How much each part of a run offers (``--quick`` or the full run)."""

    meters: int
    singles: int
    seconds: int
    ceiling_readings: int


QUICK = Sizes(meters=400, singles=20_000, seconds=10, ceiling_readings=100_000)
FULL = Sizes(meters=2000, singles=100_000, seconds=30, ceiling_readings=300_000)


@dataclass
class Figures:
    """What one run measured, for the table."""

    curves: float = 0.0
    singles: float = 0.0
    latencies: dict[int, Latency] = field(default_factory=dict)
    memory: dict[str, tuple[float, float]] = field(default_factory=dict)
    ceiling: dict[str, float] = field(default_factory=dict)
    bare_latency: dict[int, list[float]] = field(default_factory=dict)


@contextmanager
def cpu_spent(node: LocalNode, readings: int) -> Iterator[list[str]]:
    """The lines of what each process of the node used while the block ran (filled
    when it ends)."""
    pids = node_pids(node)
    before, started = cpu_seconds(pids), time.monotonic()
    report: list[str] = []
    yield report
    seconds = time.monotonic() - started
    report.extend(cpu_lines(before, cpu_seconds(pids), readings, seconds))


def load_phase(node: LocalNode, sizes: Sizes, figures: Figures, profile: Path | None) -> None:
    """(1): the two throughput loads, each until every reading is in ClickHouse."""
    source = paris_source(node)
    print("\n(1a) load curves: a day of 10-minute readings per meter, 20 meters per payload")
    payloads = [paris_csv(range(m, m + 20), T0, 144) for m in range(0, sizes.meters, 20)]
    readings = sizes.meters * 144
    with cpu_spent(node, readings) as report:
        figures.curves = profiled(
            node,
            profile,
            "curves",
            lambda: throughput(node, source, payloads, readings, workers=4),
        )
    print(f"    {figures.curves:,.0f} readings/s ({readings:,} readings)", flush=True)
    print("    CPU each process used meanwhile:")
    print("\n".join(report), flush=True)

    print("\n(1b) single readings: one reading per meter, 1,000 meters per payload")
    payloads = [
        paris_csv(range(100_000 + m, 100_000 + m + 1000), T0 + 86400 * 10, 1)
        for m in range(0, sizes.singles, 1000)
    ]
    before = topic_offsets(node)
    with cpu_spent(node, sizes.singles) as report:
        figures.singles = profiled(
            node,
            profile,
            "singles",
            lambda: throughput(node, source, payloads, sizes.singles, workers=4),
        )
    print(f"    {figures.singles:,.0f} readings/s ({sizes.singles:,} readings)", flush=True)
    print("    CPU each process used meanwhile:")
    print("\n".join(report), flush=True)
    print("    offsets each topic used (records and transaction markers), per reading:")
    print("\n".join(per_reading_lines(before, topic_offsets(node), sizes.singles)), flush=True)


def latency_phase(node: LocalNode, sizes: Sizes, figures: Figures) -> None:
    """(2): latency at each offered rate, the lower first (the higher leaves a queue)."""
    source = paris_source(node)
    for rate in RATES:
        print(
            f"\n(2) latency: {rate:,} single readings/s offered for {sizes.seconds} s", flush=True
        )
        result = latency(node, source, rate, sizes.seconds, meter_base=1_000_000 + rate * 1000)
        figures.latencies[rate] = result
        print(
            f"    {len(result.seconds) + result.lost} requests of {result.per_request}: "
            f"p50 {ms(result.p50)}, p99 {ms(result.p99)}"
            + (f" ({result.lost} not landed after {result.bound_s:.0f} s)" if result.lost else ""),
            flush=True,
        )
        print(f"    {where_it_goes(node, result).line()}", flush=True)


def where_it_goes(node: LocalNode, result: Latency) -> Hops:
    """The run's requests hop by hop (bench/pipeline_hops.py), from the node's topics."""
    from services.runtime.config import load_node_config
    from services.runtime.provisioning import connect_contracts
    from services.runtime.topics import load_topics

    config = load_node_config(env=node.env)
    declared = load_topics()
    contracts = connect_contracts(config, [declared[topic] for topic in HOP_TOPICS])
    return hops(config, contracts, result.sent, result.landed)


def profiled(
    node: LocalNode, directory: Path | None, phase: str, action: Callable[[], float]
) -> float:
    """Run ``action``; with a directory, py-spy records every service meanwhile."""
    if directory is None:
        return action()
    from bench.pipeline_profile import read, record, summary

    recordings = record(node_pids(node), directory, phase)
    time.sleep(1.0)  # py-spy attaches
    try:
        return action()
    finally:
        for recording in recordings:
            recording.stop()
        profiles = [read(r.output, r.service) for r in recordings if r.output.exists()]
        total = max(1, sum(p.busy for p in profiles))
        print(f"\n  {phase}: CPU samples per service (py-spy, running threads only):")
        print("    " + ", ".join(f"{p.service} {p.busy / total:.0%}" for p in profiles))
        for found in profiles:
            print("\n".join(summary(found)))


def ceiling_phase(node: LocalNode, sizes: Sizes, figures: Figures) -> None:
    """(4): bare Kafka on the node's broker, same readings, same offered rates."""
    from services.runtime.config import load_node_config

    config = load_node_config(env=node.env)
    print("\n(4) Kafka ceiling on the node's broker: bare produce then consume", flush=True)
    figures.ceiling = ceiling(config, sizes.ceiling_readings)
    for shape, (encode_us, decode_us) in codec_costs().items():
        print(
            f"    {shape:11} fastavro in process: {encode_us:.2f} us to encode, "
            f"{decode_us:.2f} us to decode, per reading"
        )
    for rate in RATES:
        seconds = min(sizes.seconds, 10)
        figures.bare_latency[rate] = bare_latency(config, rate, seconds)
        ranked = figures.bare_latency[rate]
        print(
            f"    bare latency at {rate:,}/s: p50 {ms(quantile(ranked, 0.5))}, "
            f"p99 {ms(quantile(ranked, 0.99))} ({len(ranked):,} messages)",
            flush=True,
        )


def ms(seconds: float) -> str:
    return "not landed" if seconds == float("inf") else f"{seconds * 1000:,.0f} ms"


@dataclass
class Row:
    """One line of the table; ``rate`` figures are better high, latencies low."""

    name: str
    measured: float
    goal: float
    bare: float
    rate: bool

    def shown(self, value: float) -> str:
        if value != value:
            return "-"
        if value == float("inf"):
            return "not landed"
        return f"{value:,.0f}" if self.rate else f"{value:.3f}"

    def ratio(self, reference: float) -> str:
        """measured / reference for rates, reference / measured for latencies:
        >= 1.00 is at least as good as the reference."""
        value = self.measured / reference if self.rate else reference / self.measured
        if value != value or value in (0.0, float("inf")):
            return "-"
        return f"{value:.3f}" if value >= 0.01 else f"{value:.2g}"

    def cells(self) -> list[str]:
        return [
            self.shown(self.measured),
            self.shown(self.goal),
            self.ratio(self.goal),
            self.shown(self.bare),
            self.ratio(self.bare),
        ]


def rows(figures: Figures) -> list[Row]:
    """Issue 17's figures, each with its goal and its Kafka ceiling of the same run."""
    c = figures.ceiling
    found = [
        Row("load curves, readings/s", figures.curves, GOALS["curves"], c["curves"], True),
        Row(
            "single readings, readings/s, v1 ceiling",
            figures.singles,
            GOALS["singles"],
            c["singles v1"],
            True,
        ),
        Row(
            "single readings, readings/s, v2 ceiling",
            figures.singles,
            GOALS["singles"],
            c["singles v2"],
            True,
        ),
    ]
    for rate, got in figures.latencies.items():
        bare = figures.bare_latency.get(rate, [])
        for q, name in ((0.5, "p50"), (0.99, "p99")):
            goal = GOALS.get(f"{name}@{rate}", float("nan"))
            found.append(
                Row(
                    f"latency {name} at {rate:,}/s offered, s",
                    got.quantile(q),
                    goal,
                    quantile(bare, q),
                    False,
                )
            )
    return found


def table(figures: Figures) -> list[str]:
    """The table as printed lines, then the memory of every process."""
    head = ["measured", "goal", "vs goal", "ceiling", "vs ceiling"]
    lines = [f"{'figure':42} " + " ".join(f"{h:>10}" for h in head)]
    for row in rows(figures):
        lines.append(f"{row.name:42} " + " ".join(f"{cell:>10}" for cell in row.cells()))
    lines.append("peak resident memory per process, MB (no goal in the issue; now in brackets):")
    lines.extend(
        f"  {name:18} {peak:8,.0f} ({rss:,.0f})" for name, (rss, peak) in figures.memory.items()
    )
    return lines


def run(sizes: Sizes, profile: Path | None, warm: bool = True) -> Figures:
    node = LocalNode(Path(tempfile.mkdtemp(prefix="citeplus-bench-pipeline-")))
    print(f"starting a private node in {node.state} ...", flush=True)
    started = time.perf_counter()
    node.up()
    figures = Figures()
    try:
        if warm:
            warm_up(node, max(20, sizes.meters // 40 * 20), max(1000, sizes.singles // 2000 * 1000))
        load_phase(node, sizes, figures, profile)
        # bare Kafka while the node is drained, before the latency runs leave a queue
        ceiling_phase(node, sizes, figures)
        latency_phase(node, sizes, figures)
        print("\n(3) memory", flush=True)
        figures.memory = {name: memory_mb(pid) for name, pid in node_pids(node).items()}
        for name, (rss, peak) in figures.memory.items():
            print(f"    {name:18} {rss:8.0f} MB now, {peak:8.0f} MB peak")
    finally:
        node.down()
    print(f"\n(whole run {time.perf_counter() - started:.0f} s, node start and stop included)")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller loads: about 1.5 minutes on a quiet machine (full run: about 3)",
    )
    parser.add_argument("--meters", type=int, help="meters for the load-curve run (2,000)")
    parser.add_argument("--singles", type=int, help="readings for the single-reading run (100,000)")
    parser.add_argument("--seconds", type=int, help="duration of each latency run (30)")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy every service into DIR")
    parser.add_argument("--brokers", type=int, choices=(1, 3), default=1, help="brokers (1 or 3)")
    parser.add_argument("--workers", type=int, default=1, help="workers of each scalable stage")
    parser.add_argument(
        "--cold",
        action="store_true",
        help="no warm-up: measure a freshly started node (the basis of the figures before "
        "the eighth round of docs/performance.md)",
    )
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    sizes = Sizes(
        meters=args.meters or base.meters,
        singles=args.singles or base.singles,
        seconds=args.seconds or base.seconds,
        ceiling_readings=base.ceiling_readings,
    )
    if args.brokers > 1 or args.workers > 1:
        from bench.pipeline_scaled import scaled

        args.meters = sizes.meters
        return scaled(args)
    figures = run(sizes, args.profile, warm=not args.cold)
    print("\nissue 17's table (ratios >= 1.00 meet the goal; vs ceiling: share of bare Kafka)")
    print("\n".join(table(figures)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
