"""What the SQL check costs each query: ``SqlAccess.authorize`` for the node's own
analyst (one ClickHouse re-write, one parse) and for a partner's analyst (the same
plus the analyser's resolution in its database), beside the time the README's
questions take to run, on a chDB warehouse of --readings observations.

Prints median and p99 per kind of user and question, in milliseconds. A partner's
rollups are computed from its rows at each query (the stored rollups have no
source to filter on): the "run" lines show what that costs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from services.policy.sharing import SharingPolicy
from services.publish.partner_views import refresh_partner_views
from services.publish.questions import QUESTIONS
from services.publish.sql_access import SqlAccess
from services.publish.sql_users import UserStore, ensure_operator
from services.runtime.cities import CityConfig, SourceConfig
from services.warehouse.chdb_embedded import ChdbWarehouse
from services.warehouse.migrations import migrate

SOURCES = {"linky": {"level": "shared", "partners": ["grenoble"]}, "staff": None}


def fill(warehouse: ChdbWarehouse, readings: int) -> None:
    """Half the readings in a dataset shared with the partner, half internal."""
    warehouse.command(
        "INSERT INTO observations (city, domain, metric, unit, entity, entity_type, zone, "
        "sector, carrier, ts, local_day, value, quality, step_seconds, source, dataset, "
        "lineage_id, _topic, _partition, _offset) "
        "SELECT 'lyon', 'energy', 'active_energy_import', 'kWh', "
        "concat('m', toString(number % 2000)), 'meter', concat('z', toString(number % 40)), "
        "'residential', 'electricity', toDateTime64('2026-01-01', 3, 'UTC') + "
        "toIntervalMinute(10 * intDiv(number, 2000)), toDate('2026-01-01') + "
        "intDiv(number, 288000), 0.1, 0, 600, if(number % 2 = 0, 'linky', 'staff'), "
        f"'d', 'l', 't', 0, number FROM numbers({readings})"
    )


def timed(call: Callable[[], object], repeat: int) -> list[float]:
    spent = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        spent.append((time.perf_counter() - started) * 1000)
    return spent


def line(label: str, spent: list[float]) -> str:
    p99 = sorted(spent)[max(0, int(len(spent) * 0.99) - 1)]
    return f"{label:<52} median {statistics.median(spent):8.2f} ms   p99 {p99:8.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        warehouse = ChdbWarehouse(state / "warehouse")
        migrate(warehouse)
        fill(warehouse, args.readings)
        sources = tuple(
            SourceConfig("lyon", s, "csv", s, "energy", "id", "t", sharing=sharing)
            for s, sharing in SOURCES.items()
        )
        cities = {"lyon": CityConfig("lyon", "Lyon", "Europe/Paris", sources)}
        refresh_partner_views(warehouse, cities, SharingPolicy("shared", ("grenoble",)))
        ensure_operator(state)
        store = UserStore(state)
        store.add("staff")
        store.add("ana", partner="grenoble")
        access = SqlAccess(warehouse, store)
        print(f"SQL check on {args.readings:,} readings, {args.repeat} runs each")
        for asked in QUESTIONS[:3]:
            for user in ("staff", "ana"):
                query = access.authorize(user, asked.sql)
                check = timed(partial(access.authorize, user, asked.sql), args.repeat)
                run = timed(partial(access.run, query), args.repeat)
                who = "partner" if user == "ana" else "internal"
                print(line(f"{asked.slug} {who}: check", check))
                print(line(f"{asked.slug} {who}: run", run))
        warehouse.close()


if __name__ == "__main__":
    main()
