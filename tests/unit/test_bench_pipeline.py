"""The arithmetic behind bench/pipeline.py's table and profiles: a request that never
landed counts as slower than every landed one (a queue must not read as a good
p99), ratios point the same way for rates and latencies, and a profile's shares
are of working samples, waits apart."""

from __future__ import annotations

import math
import os
from pathlib import Path

from bench.pipeline import Row
from bench.pipeline_load import Latency
from bench.pipeline_profile import read, summary


def test_requests_not_landed_count_as_the_slowest() -> None:
    landed = [0.1 * k for k in range(1, 99)]  # 98 requests landed, 2 did not
    result = Latency(offered=200, per_request=20, seconds=landed, lost=2, bound_s=60.0)

    assert math.isinf(result.p99)
    assert result.quantile(0.5) == landed[50]
    assert Latency(200, 20, landed, 0, 60.0).p99 == landed[-1]


def test_a_run_where_nothing_landed_has_no_finite_quantile() -> None:
    result = Latency(offered=5000, per_request=500, seconds=[], lost=10, bound_s=60.0)

    assert math.isinf(result.p50) and math.isinf(result.p99)


def test_ratios_at_or_above_one_are_as_good_as_the_reference() -> None:
    rate = Row("load curves", measured=30_000, goal=60_000, bare=120_000, rate=True)
    late = Row("p99", measured=2.0, goal=0.5, bare=0.1, rate=False)
    met = Row("p99", measured=0.25, goal=0.5, bare=0.1, rate=False)

    assert rate.cells() == ["30,000", "60,000", "0.500", "120,000", "0.250"]
    assert late.ratio(late.goal) == "0.250" and late.ratio(late.bare) == "0.050"
    assert met.ratio(met.goal) == "2.000"
    assert Row("p50", 1.0, float("nan"), 0.1, rate=False).cells()[1:3] == ["-", "-"]
    assert Row("p99", float("inf"), 1.0, 0.1, rate=False).cells()[:3] == [
        "not landed",
        "1.000",
        "-",
    ]


ROOT = (
    'process 7:"python -m services.cli service normalise";main (services/cli.py:239);'
    "StageRunner.run_once (/r/services/runtime/processor.py:233);"
)
STACKS = (
    f"{ROOT}decode (/r/services/runtime/wire.py:40) 30\n"
    f"{ROOT}NormaliseStage.transform (/r/services/normalise/stage.py:80);"
    "_emit (/r/services/normalise/transform.py:9) 50\n"
    f"{ROOT}consume (cimpl:0) 20\n"
)


def test_a_profile_counts_self_and_inclusive_shares_of_working_samples(tmp_path: Path) -> None:
    path = tmp_path / "curves-normalise.txt"
    path.write_text(STACKS)

    profile = read(path, "normalise")

    assert (profile.samples, profile.idle, profile.busy) == (100, 20, 80)
    assert profile.self_time["decode (services/runtime/wire.py)"] == 30
    assert profile.inclusive["NormaliseStage.transform (services/normalise/stage.py)"] == 50
    lines = summary(profile)
    assert lines[0] == "normalise: 100 samples, busy 80%"
    assert lines[1] == "  by kind: stage transform 62%, avro decode 38%"
    assert "62.5%  _emit (services/normalise/transform.py)" in [line.strip() for line in lines]
    # the main loop, on every working stack, says nothing about where to act
    assert not any("StageRunner.run_once" in line for line in lines)


def test_cpu_per_thousand_readings_is_each_process_own_time_most_first() -> None:
    from bench.pipeline_cpu import cpu_lines, cpu_seconds

    lines = cpu_lines({"a": 1.0, "b": 2.0}, {"a": 4.0, "b": 3.0, "new": 9.0}, 10_000, 2.0)
    assert lines[0].split()[:2] == ["a", "300.0"]  # 3 s over 10,000 readings
    assert lines[0].endswith("1.50 cores")
    assert lines[1].split()[:2] == ["b", "100.0"]
    assert lines[-1].split()[:3] == ["all", "processes", "400.0"]  # "new" was not there before
    mine = cpu_seconds({"me": os.getpid(), "gone": 2**22 + 1})
    assert set(mine) == {"me"} and mine["me"] > 0


def test_the_warm_up_payloads_are_what_bordeaux_reads_without_a_rejection() -> None:
    """The warm-up measures nothing, but a payload its city refused would warm up
    only ingest's error path and leave the later stages cold."""
    from bench.pipeline_warm import CITY, SOURCE, bordeaux_csv
    from services.ingest.formats.csv_format import parse
    from services.runtime.cities import load_cities
    from services.runtime.paths import CITIES_DIR

    source = load_cities(CITIES_DIR)[CITY].source(SOURCE)
    read = parse(bordeaux_csv(range(3), 1_736_722_800, 144), source)
    assert (read.accepted_rows, read.rejected, len(read.entities)) == (3 * 144, [], 3)


def test_the_warm_up_waits_until_no_topic_moves(monkeypatch) -> None:
    """energy-analytics may still be aggregating the warm-up when its readings are all
    in ClickHouse: the measured load must not start on that backlog."""
    import bench.pipeline_warm as warm

    seen = iter([{"t": 1}, {"t": 2}, {"t": 3}] + [{"t": 3}] * 100)
    monkeypatch.setattr(warm, "topic_offsets", lambda node: next(seen))
    monkeypatch.setattr(warm.time, "sleep", lambda s: None)
    clock = iter(range(10_000))
    monkeypatch.setattr(warm.time, "monotonic", lambda: float(next(clock)))
    waited, quiet = warm.settle(None, quiet_s=2.0, bound_s=60.0)  # type: ignore[arg-type]
    assert quiet and next(seen) == {"t": 3}  # it read past the moves, then stopped

    moving = iter({"t": n} for n in range(10_000))
    monkeypatch.setattr(warm, "topic_offsets", lambda node: next(moving))
    waited, quiet = warm.settle(None, quiet_s=2.0, bound_s=60.0)  # type: ignore[arg-type]
    assert not quiet and waited >= 60.0
