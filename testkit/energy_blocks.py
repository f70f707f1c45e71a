"""The same meters and the same integer-Wh readings for every city's energy format:
what the cross-city normalise test and anonymise's daily coarsening test both feed in."""

from __future__ import annotations

import random
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from services.simulate.formats import EnergyBlock
from services.simulate.loadcurve import is_offpeak
from services.simulate.population import Site, simulate_meters
from services.simulate.timegrid import day_starts

PARIS = ZoneInfo("Europe/Paris")
STEP = timedelta(minutes=10)
SITES = [
    Site("041964309552", "693810202", "residential"),
    Site("812070232773", "693810203", "tertiary"),
    Site("503112778120", "693810204", "professional"),
]


def blocks(first_day: date, days: int) -> tuple[list, list[EnergyBlock]]:
    """The same meters and readings for every city: integer Wh, registers that add up."""
    meters = simulate_meters(SITES, "lyon", 42)
    rng = random.Random(7)
    registers = [m.start_index_wh for m in meters]
    out = []
    for d in range(days):
        starts = day_starts(first_day + timedelta(days=d), PARIS, STEP)
        energy, totals = [], []
        for i, _ in enumerate(meters):
            wh = [rng.randint(0, 450) for _ in starts]
            values, running = [], registers[i]
            for w in wh:
                values.append(running)
                running += w
            registers[i] = running
            energy.append(wh)
            totals.append(values)
        local = [t.astimezone(PARIS) for t in starts]
        out.append(
            EnergyBlock(
                meters, starts, local, STEP, energy, totals, totals, [is_offpeak(t) for t in local]
            )
        )
    return meters, out
