"""``citeplus simulate``: generate the five cities' sample data, push it or write it."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path
from typing import Any

from services.runtime.cities import load_cities
from services.runtime.commands import Command, OneOf, mount, option
from services.runtime.errors import CiteplusError
from services.runtime.paths import CITIES_DIR
from services.runtime.progress import Progress
from services.simulate.generator import RESOLUTIONS, Simulation, SimulationConfig
from services.simulate.population import CITIES

DEFAULTS = SimulationConfig()

DESCRIPTION = """\
Generate realistic, deterministic sample data for the cities, each in its own
source format as real city systems send it, and push it to a node's HTTP API
(--url) or write it as files (--out).

Energy: household and business load curves (night base, morning and evening
peaks, weekdays and weekends, electric heating that follows a synthetic daily
temperature) over IRIS-like zones, including zones with fewer than 10 meters
and one zone dominated by a single large site, for the statistical-secrecy
rules. Paris sends CSV in kWh with naive local times and decimal commas,
Bordeaux NDJSON in Wh with epoch times, Lyon Linky frames with cumulative
indexes (the meters of deploy/cities/registries/lyon-linky.csv), Nice Smart
Data Models meter entities, Angers headerless CSV of average power in UTC.
Air quality (NO2, PM10, PM2.5, O3) and traffic come hourly in each city's
declared format, and so do bike stations (Lyon, Angers), bike counters (Paris),
car parks (Lyon, Nice, Bordeaux), charging points (every city) and weather stations
(Paris, Nice), at real places of each city with their position.
The same seed always gives the same bytes."""

EPILOG = """\
examples:
  citeplus simulate --url http://127.0.0.1:8000
  citeplus simulate --cities paris,lyon --meters 200 --days 1 --out var/sample
  citeplus simulate --resolution-minutes 60 --days 30 --no-traffic --dry-run

Pushing needs each source's token in the environment or file its city file
names (a local node started by `citeplus up` provides them). Files land in
DIR/<city>/<source>/NNNN.<ext>; replay one with
`citeplus ingest DIR/<city>/<source> --city <city> --source <source>`."""


def run_simulate(args: argparse.Namespace) -> int:
    config = SimulationConfig(
        cities=args.cities,
        meters=args.meters,
        days=args.days,
        start=args.start,
        resolution_minutes=args.resolution_minutes,
        seed=args.seed,
        air=not args.no_air,
        traffic=not args.no_traffic,
        stations=not args.no_stations,
    )
    simulation = Simulation(config, load_cities(args.city_files))
    if args.url:
        progress = _progress(args, simulation, args.url)
        return _push(simulation, args.url, progress, attempts=args.attempts)
    if args.out:
        return _write(simulation, args.out, _progress(args, simulation, str(args.out)))
    return _count(simulation, _progress(args, simulation, "nowhere (dry run)"))


def _progress(args: argparse.Namespace, simulation: Simulation, target: str) -> Progress | None:
    return None if args.quiet else Progress(simulation.payload_count(), f"simulate → {target}")


def _push(simulation: Simulation, url: str, progress: Progress | None, *, attempts: int = 6) -> int:
    from services.simulate.push import Pusher

    pusher = Pusher(url, simulation.sources(), attempts=attempts)
    for (city, source), reason in pusher.unusable.items():
        print(f"warning: {city}/{source} will not be sent: {reason}", file=sys.stderr)
    try:
        report = pusher.push(simulation, progress)
    finally:
        pusher.close()
        _close(progress)
    rows = [
        (city, source, t.payloads, t.readings, t.accepted, t.rejected, _failures(t))
        for (city, source), t in report.totals.items()
    ]
    _table(("city", "source", "payloads", "readings", "accepted", "rejected", "failed"), rows)
    for error in report.errors[:10]:
        print(f"error: {error}", file=sys.stderr)
    if len(report.errors) > 10:
        print(f"... and {len(report.errors) - 10} more errors", file=sys.stderr)
    return 0 if report.ok else 1


def _write(simulation: Simulation, out: Path, progress: Progress | None) -> int:
    from services.simulate.files import write_payloads

    try:
        report = write_payloads(simulation, out, progress)
    finally:
        _close(progress)
    rows = [
        (city, source, t.files, t.readings, f"{t.bytes / 1e6:,.1f}")
        for (city, source), t in report.totals.items()
    ]
    _table(("city", "source", "files", "readings", "MB"), rows)
    print(f"written under {report.directory}")
    return 0


def _count(simulation: Simulation, progress: Progress | None) -> int:
    totals: dict[tuple[str, str], list[int]] = {}
    try:
        for payload in simulation:
            entry = totals.setdefault((payload.city, payload.source), [0, 0, 0])
            entry[0] += 1
            entry[1] += payload.readings
            entry[2] += len(payload.body)
            if progress is not None:
                progress.advance(1)
    finally:
        _close(progress)
    rows = [(c, s, n, r, f"{b / 1e6:,.1f}") for (c, s), (n, r, b) in totals.items()]
    _table(("city", "source", "payloads", "readings", "MB"), rows)
    return 0


def _close(progress: Progress | None) -> None:
    if progress is not None:
        progress.close()


def _failures(totals: Any) -> str:
    if not totals.failed and not totals.skipped:
        return "0"
    return f"{totals.failed} (+{totals.skipped} skipped)" if totals.skipped else str(totals.failed)


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """Per city and source, sorted, with a total line for the counts."""
    cells = [
        tuple(f"{c:,}" if isinstance(c, int) else str(c) for c in row)
        for row in _sorted_with_total(len(header), rows)
    ]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(header)]
    print(_aligned(header, widths))
    for row in cells:
        print(_aligned(row, widths))


def _sorted_with_total(width: int, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows in the cities' order then by source, and a total of each count column
    (the first two columns name the city and source; text columns stay blank)."""
    rows = sorted(rows, key=lambda r: (CITIES.index(r[0]) if r[0] in CITIES else 99, r[1]))
    if not rows:
        return rows
    total = ["total", ""] + [
        sum(r[i] for r in rows) if isinstance(rows[0][i], int) else "" for i in range(2, width)
    ]
    return [*rows, tuple(total)]


def _aligned(cells: tuple[str, ...], widths: list[int]) -> str:
    """Names left-aligned, figures right-aligned."""
    return "  ".join(
        c.ljust(w) if i < 2 else c.rjust(w)
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def city_list(text: str) -> tuple[str, ...]:
    """``--cities paris,lyon``: known city codes, each once, in the order given."""
    names = tuple(dict.fromkeys(name.strip().lower() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in CITIES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown city {', '.join(unknown) or '(none)'}; choose among {','.join(CITIES)}"
        )
    return names


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


CITY_LIST = option(
    "--cities",
    type=city_list,
    default=DEFAULTS.cities,
    metavar="LIST",
    help=f"comma-separated cities (default: {','.join(CITIES)})",
)

SIMULATE = Command(
    "simulate",
    "generate sample data for the cities and push it (--url) or write it (--out)",
    run_simulate,
    description=DESCRIPTION,
    epilog=EPILOG,
    verbatim=True,
    options=(
        CITY_LIST,
        option(
            "--meters",
            type=_positive,
            default=DEFAULTS.meters,
            metavar="N",
            help=f"electricity meters per city (default {DEFAULTS.meters}; "
            "Lyon uses at most the registry's 600)",
        ),
        option(
            "--days",
            type=_positive,
            default=DEFAULTS.days,
            metavar="D",
            help=f"days to simulate (default {DEFAULTS.days})",
        ),
        option(
            "--start",
            type=date.fromisoformat,
            default=DEFAULTS.start,
            metavar="YYYY-MM-DD",
            help=f"first local day (default {DEFAULTS.start}, a winter Monday)",
        ),
        option(
            "--resolution-minutes",
            type=int,
            choices=RESOLUTIONS,
            default=DEFAULTS.resolution_minutes,
            help=f"length of a meter interval (default {DEFAULTS.resolution_minutes}); "
            "air and traffic are always hourly",
        ),
        option(
            "--seed",
            type=int,
            default=DEFAULTS.seed,
            help=f"random seed: same seed, same bytes (default {DEFAULTS.seed})",
        ),
        option("--no-air", action="store_true", help="leave out air quality"),
        option("--no-traffic", action="store_true", help="leave out traffic"),
        option(
            "--no-stations",
            action="store_true",
            help="leave out bike stations and counters, car parks, charging points and "
            "weather stations",
        ),
        option(
            "--city-files",
            type=Path,
            default=CITIES_DIR,
            metavar="DIR",
            help="directory of city files (default deploy/cities)",
        ),
        option("--quiet", action="store_true", help="no progress line on stderr"),
        option(
            "--attempts",
            type=_positive,
            default=6,
            metavar="N",
            help="with --url: times one payload is sent while the node is unreachable or "
            "busy, waiting 0.5 s, then twice as long each time, at most 30 s (default 6: "
            "about 15 s; raise it when the node restarts its services under you)",
        ),
        OneOf(
            (
                option(
                    "--url",
                    metavar="URL",
                    help="push to this ingest node, e.g. http://127.0.0.1:8000",
                ),
                option("--out", type=Path, metavar="DIR", help="write files under DIR"),
                option(
                    "--dry-run",
                    action="store_true",
                    help="generate and count, send and write nothing",
                ),
            ),
            required=True,
        ),
    ),
)

COMMANDS = (SIMULATE,)


if __name__ == "__main__":  # pragma: no cover - convenience for development
    main_parser = argparse.ArgumentParser(prog="citeplus")
    mount(main_parser, COMMANDS, dest="command")
    parsed = main_parser.parse_args()
    try:
        sys.exit(parsed.handler(parsed))
    except CiteplusError as exc:
        print(f"citeplus: error: {exc}", file=sys.stderr)
        sys.exit(2)
