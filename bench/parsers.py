"""Parser cost per format, without a broker: what the strict checks (NaN, repeated
keys, surrogates, depth, format sniff, linear CSV headers) cost the clean batches
that make up nearly all traffic.

Each payload is parsed ``--repeat`` times in rounds; the figure is the median
round of CPU time (process time: steadier than wall time on a shared machine),
in µs per batch and readings/s. Run it in two checkouts (before and after a
change) and compare, alternating runs: ``PYTHONPATH=<checkout> python bench/parsers.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

from services.ingest.formats import parse_payload
from services.runtime.cities import CsvOptions, SourceConfig

T0 = 1_736_755_200


def source(fmt: str, entity: str, **options: object) -> SourceConfig:
    return SourceConfig(
        city="benchville",
        id="bench",
        format=fmt,
        dataset="bench",
        domain="energy",
        entity=entity,
        token="env:CITEPLUS_TOKEN_BENCH",
        **options,  # type: ignore[arg-type]
    )


def rows(meters: int = 100, per_meter: int = 10) -> list[dict]:
    """bench/ingest.py's batch: 100 meters x 10 ten-minute readings."""
    return [
        {"meter": f"{m:012d}", "t": T0 + 600 * k, "wh": 100 + (m * 7 + k) % 900}
        for m in range(meters)
        for k in range(per_meter)
    ]


def tic_group(label: str, data: str) -> bytes:
    covered = f"{label}\t{data}\t"
    return f"\n{covered}{chr((sum(covered.encode()) & 0x3F) + 0x20)}\r".encode()


def payloads() -> dict[str, tuple[bytes, SourceConfig, int]]:
    batch = rows()
    ndjson = "\n".join(json.dumps(r) for r in batch).encode()
    array = json.dumps(batch).encode()
    csv = ("meter;t;wh\n" + "".join(f"{r['meter']};{r['t']};{r['wh']}\n" for r in batch)).encode()
    sdm = json.dumps(
        [
            {"id": f"urn:meter:{r['meter']}", "type": "ACMeasurement", "activePower": r["wh"],
             "dateObserved": "2025-01-13T08:00:00+01:00", "location": {"type": "Point",
             "coordinates": [2.35, 48.85]}}
            for r in batch
        ]
    ).encode()  # fmt: skip
    frames = b"".join(
        b"\x02"
        + tic_group("ADSC", f"{m:012d}")
        + tic_group("DATE", f"H250113{k:02d}0000")
        + tic_group("EAST", f"{100 * k + m:09d}")
        + tic_group("SINSTS", "00420")
        + b"\x03"
        for m in range(10)
        for k in range(10)
    )
    n = len(batch)
    return {
        "ndjson (1,000 lines)": (ndjson, source("ndjson", "meter", numeric=("wh",)), n),
        "json array (1,000 items)": (array, source("json", "meter", numeric=("wh",)), n),
        "csv (1,000 lines)": (
            csv,
            source("csv", "meter", numeric=("wh",), csv=CsvOptions(separator=";")),
            n,
        ),
        "sdm-keyvalues (1,000 entities)": (sdm, source("sdm-keyvalues", "id"), n),
        "linky-tic (100 frames)": (frames, source("linky-tic", "ADSC"), 100),
    }


def median_us(parse: Callable[[], object], repeat: int, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(repeat):
            parse()
        times.append((time.process_time() - started) / repeat)
    return statistics.median(times) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="parses per round")
    parser.add_argument("--rounds", type=int, default=15, help="rounds (the median is shown)")
    args = parser.parse_args(argv)
    print(f"{'payload':32} {'µs/batch':>10} {'readings/s':>12}")
    for name, (data, src, readings) in payloads().items():
        result = parse_payload(data, src)
        assert result.accepted_rows == readings and not result.rejected, (name, result.rejected)
        us = median_us(lambda d=data, s=src: parse_payload(d, s), args.repeat, args.rounds)
        print(f"{name:32} {us:>10,.0f} {readings / us * 1e6:>12,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
