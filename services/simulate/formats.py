"""Energy readings rendered in each city's own transport, byte for byte.

Each city's energy source has its own shape, as real feeds do (the city files
in ``deploy/cities/`` declare how ingest reads them, and every payload here
must parse there with no rejection):

- paris ``enedis-courbes-charge``: CSV ``;``, decimal comma, header
  ``prm;iris;secteur;horodate;pas;energie_kwh``, naive local time of the
  interval start, energy per interval in kWh, sector in French;
- bordeaux ``releves-compteurs``: NDJSON, energy per interval in integer Wh,
  interval start in epoch seconds, Enedis-style segments RES/PRO/ENT;
- lyon ``linky-habitat``: raw Linky standard-mode frames (STX...ETX), one per
  meter and interval, cumulative index registers in Wh, no zone (the registry
  gives it);
- nice ``compteurs-communicants``: NGSI-LD normalized ACMeasurement /
  ThreePhaseAcMeasurement entities, cumulative ``totalActiveEnergyImport`` in kWh;
- angers ``courbes-charge-compteurs``: CSV ``,`` without header, decimal
  point, UTC ISO 8601 interval start, average power over the interval in kW.

Renderers build text directly rather than through dicts and ``json.dumps``:
the default run writes millions of readings and must stay well under a minute.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.runtime.cities import SourceConfig
from services.runtime.errors import ConfigError
from services.simulate import tic
from services.simulate.loadcurve import HouseholdHabits
from services.simulate.population import Meter
from services.simulate.timegrid import epoch_seconds, utc_iso

CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "ndjson": "application/x-ndjson",
    "json": "application/json",
    "sdm-keyvalues": "application/json",
    "ngsi-v2-normalized": "application/json",
    "ngsi-ld": "application/ld+json",
    "linky-tic": "application/octet-stream",
}
EXTENSIONS = {
    "csv": "csv",
    "ndjson": "ndjson",
    "json": "json",
    "sdm-keyvalues": "json",
    "ngsi-v2-normalized": "json",
    "ngsi-ld": "jsonld",
    "linky-tic": "tic",
}

PARIS_COLUMNS = ("prm", "iris", "secteur", "horodate", "pas", "energie_kwh")
ANGERS_COLUMNS = ("pdl", "iris", "secteur", "debut_utc", "pas_minutes", "puissance_moyenne_kw")
FRENCH_SECTORS = {
    "residential": "residentiel",
    "professional": "professionnel",
    "tertiary": "tertiaire",
}
ENEDIS_SEGMENTS = {"residential": "RES", "professional": "PRO", "tertiary": "ENT"}
ENERGY_CONTEXT = (
    '["https://raw.githubusercontent.com/smart-data-models/dataModel.Energy/master/context.jsonld"]'
)


@dataclass(frozen=True)
class EnergyBlock:
    """Some meters over the intervals of one local day, ready to render.

    Per meter and interval: ``energy_wh`` consumed during the interval, and the
    cumulative registers at the interval START (``total_wh``, and ``offpeak_wh``
    for the off-peak register of meters on an off-peak tariff). ``offpeak`` says
    whether each interval is in the off-peak hours.
    """

    meters: list[Meter]
    starts: list[datetime]  # UTC
    local: list[datetime]  # the same instants in the city's time zone
    step: timedelta
    energy_wh: list[list[float]]
    total_wh: list[list[float]]
    offpeak_wh: list[list[float]]
    offpeak: list[bool]

    @property
    def readings(self) -> int:
        return len(self.meters) * len(self.starts)


Renderer = Callable[[SourceConfig, EnergyBlock], bytes]


def paris_csv(source: SourceConfig, block: EnergyBlock) -> bytes:
    """Enedis-style daily export: one line per meter and interval, meter after meter."""
    sep, decimal = _csv_marks(source)
    minutes = _minutes(block.step)
    times = [t.strftime("%Y-%m-%d %H:%M:%S") for t in block.local]
    lines = [sep.join(PARIS_COLUMNS)]
    for meter, energies in zip(block.meters, block.energy_wh, strict=True):
        head = f"{meter.entity}{sep}{meter.zone}{sep}{FRENCH_SECTORS[meter.sector]}{sep}"
        tail = f"{sep}PT{minutes}M{sep}"
        lines.extend(
            f"{head}{t}{tail}{_decimal(wh / 1000, decimal)}"
            for t, wh in zip(times, energies, strict=True)
        )
    return ("\n".join(lines) + "\n").encode("utf-8")


def bordeaux_ndjson(source: SourceConfig, block: EnergyBlock) -> bytes:
    """Supplier API export: one JSON object per meter and interval, integer Wh."""
    seconds = int(block.step.total_seconds())
    epochs = [epoch_seconds(t) for t in block.starts]
    lines = []
    for meter, energies in zip(block.meters, block.energy_wh, strict=True):
        head = (
            f'{{"pdl":"{meter.entity}","iris":"{meter.zone}",'
            f'"segment":"{ENEDIS_SEGMENTS[meter.sector]}","debut":'
        )
        lines.extend(
            f'{head}{epoch},"duree_s":{seconds},"energie_wh":{round(wh)}}}'
            for epoch, wh in zip(epochs, energies, strict=True)
        )
    return ("\n".join(lines) + "\n").encode("utf-8")


def angers_csv(source: SourceConfig, block: EnergyBlock) -> bytes:
    """Headerless export in UTC: average power (kW) over each interval."""
    sep, decimal = _csv_marks(source)
    if source.csv is None or source.csv.header or source.csv.columns != ANGERS_COLUMNS:
        raise ConfigError(
            f"the simulator writes a headerless CSV with columns {', '.join(ANGERS_COLUMNS)}; "
            "declare them as csv.columns with header: false",
            source=f"{source.city}.{source.id}",
            key="csv",
        )
    minutes = _minutes(block.step)
    to_kw = 60 / minutes / 1000
    times = [t.strftime("%Y-%m-%dT%H:%M:%S+00:00") for t in block.starts]
    lines = []
    for meter, energies in zip(block.meters, block.energy_wh, strict=True):
        head = f"{meter.entity}{sep}{meter.zone}{sep}{FRENCH_SECTORS[meter.sector]}{sep}"
        tail = f"{sep}{minutes}{sep}"
        lines.extend(
            f"{head}{t}{tail}{_decimal(wh * to_kw, decimal)}"
            for t, wh in zip(times, energies, strict=True)
        )
    return ("\n".join(lines) + "\n").encode("utf-8")


def nice_ngsi_ld(source: SourceConfig, block: EnergyBlock) -> bytes:
    """What the city's context broker forwards: one entity per meter and interval,
    time after time, with the cumulative import register in kWh."""
    times = [utc_iso(t) for t in block.starts]
    templates = []
    for meter in block.meters:
        model = "ACMeasurement" if meter.sector == "residential" else "ThreePhaseAcMeasurement"
        phase = "singlePhase" if model == "ACMeasurement" else "threePhase"
        head = (
            f'{{"id":{json.dumps(meter.entity)},"type":"{model}",'
            '"totalActiveEnergyImport":{"type":"Property","value":'
        )
        tail = (
            f'"}},"phaseType":{{"type":"Property","value":"{phase}"}},'
            f'"zone":{{"type":"Property","value":"{meter.zone}"}},'
            f'"sector":{{"type":"Property","value":"{meter.sector}"}},'
            f'"@context":{ENERGY_CONTEXT}}}'
        )
        templates.append((head, tail))
    entities = []
    for k, time in enumerate(times):
        for (head, tail), registers in zip(templates, block.total_wh, strict=True):
            wh = int(registers[k])
            entities.append(
                f'{head}{wh // 1000}.{wh % 1000:03d},"unitCode":"KWH","observedAt":"{time}{tail}'
            )
    return ("[\n" + ",\n".join(entities) + "\n]\n").encode("utf-8")


def lyon_tic(source: SourceConfig, block: EnergyBlock) -> bytes:
    """A gateway's raw capture: every meter's frame at each interval boundary.

    Meters with an off-peak water heater are on the Heures Creuses option:
    EASF01 counts off-peak energy, EASF02 peak energy; others are on BASE.
    SINSTS is the mean apparent power of the interval starting at the frame.
    """
    dates = [tic.group("DATE", "", tic.horodate(t)) for t in block.local]
    hours = block.step.total_seconds() / 3600
    fixed = [_TicMeter.of(meter) for meter in block.meters]
    frames = []
    for k, date_group in enumerate(dates):
        offpeak = block.offpeak[k]
        for meter, energies, totals, offpeaks in zip(
            fixed, block.energy_wh, block.total_wh, block.offpeak_wh, strict=True
        ):
            total = int(totals[k])
            if meter.hchp:
                low = int(offpeaks[k])
                registers = (
                    tic.group("EAST", tic.index(total))
                    + tic.group("EASF01", tic.index(low))
                    + tic.group("EASF02", tic.index(total - low))
                )
            else:
                registers = tic.group("EAST", tic.index(total)) + tic.group(
                    "EASF01", tic.index(total)
                )
            va = min(99_999, round(energies[k] / hours / 0.95))
            frames.append(
                b"".join(
                    (
                        tic.STX,
                        meter.head,
                        date_group,
                        meter.tariff[offpeak],
                        registers,
                        tic.group("IRMS1", f"{min(999, round(va / 230)):03d}"),
                        meter.middle,
                        tic.group("SINSTS", f"{va:05d}"),
                        meter.trailer[offpeak],
                        tic.ETX,
                    )
                )
            )
    return b"".join(frames)


@dataclass(frozen=True)
class _TicMeter:
    """The groups of a meter's frame that do not depend on its readings."""

    head: bytes  # ADSC, VTIC
    tariff: dict[bool, bytes]  # NGTF, LTARF; keyed by "in off-peak hours"
    middle: bytes  # URMS1, PREF, PCOUP
    trailer: dict[bool, bytes]  # STGE, PRM, RELAIS, NTARF, NJOURF, NJOURF+1
    hchp: bool

    @classmethod
    def of(cls, meter: Meter) -> _TicMeter:
        hchp = isinstance(meter.profile, HouseholdHabits) and meter.profile.water_heater
        kva = f"{min(meter.subscribed_kva, 36):02d}"
        before = tic.group("STGE", "003A0001") + tic.group("PRM", linky_prm(meter.entity))
        before += tic.group("RELAIS", "000")
        after = tic.group("NJOURF", "00") + tic.group("NJOURF+1", "00")
        if hchp:
            option = tic.group("NGTF", "H PLEINE/CREUSE ")
            tariff = {
                True: option + tic.group("LTARF", "  HEURE CREUSE  "),
                False: option + tic.group("LTARF", "  HEURE PLEINE  "),
            }
            trailer = {
                True: before + tic.group("NTARF", "01") + after,
                False: before + tic.group("NTARF", "02") + after,
            }
        else:
            base = tic.group("NGTF", "     BASE       ") + tic.group("LTARF", "      BASE      ")
            tariff = {True: base, False: base}
            plain = before + tic.group("NTARF", "01") + after
            trailer = {True: plain, False: plain}
        return cls(
            head=tic.group("ADSC", meter.entity) + tic.group("VTIC", "02"),
            tariff=tariff,
            middle=tic.group("URMS1", "231") + tic.group("PREF", kva) + tic.group("PCOUP", kva),
            trailer=trailer,
            hchp=hchp,
        )


def linky_prm(adsc: str) -> str:
    """The 14-digit delivery point a meter serves; stable for a given meter serial."""
    digest = hashlib.sha256(f"prm:{adsc}".encode()).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 10**14:014d}"


ENERGY_RENDERERS: dict[str, Renderer] = {
    "paris": paris_csv,
    "bordeaux": bordeaux_ndjson,
    "lyon": lyon_tic,
    "nice": nice_ngsi_ld,
    "angers": angers_csv,
}


def _csv_marks(source: SourceConfig) -> tuple[str, str]:
    options = source.csv
    if options is None:
        raise ConfigError(
            "expected a csv source", source=f"{source.city}.{source.id}", key="format"
        )
    return options.separator, options.decimal


def _decimal(value: float, mark: str) -> str:
    text = f"{value:.3f}"
    return text.replace(".", mark) if mark != "." else text


def _minutes(step: timedelta) -> int:
    return int(step.total_seconds() // 60)
