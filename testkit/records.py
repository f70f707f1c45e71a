"""Valid sample records of every contract, for round-trip tests and benches."""

from __future__ import annotations

from typing import Any

T0 = 1_763_769_600_000_000  # 2025-11-22T00:00:00Z in microseconds


def column(name: str, kind: str, values: list[Any], missing: list[int] | None = None) -> dict:
    col = {"name": name, "kind": kind, "strings": [], "doubles": [], "longs": [], "booleans": []}
    col[
        {"string": "strings", "double": "doubles", "long": "longs", "boolean": "booleans"}[kind]
    ] = values
    col["missing"] = missing or []
    return col


def raw_record(entity: str = "812164417227") -> dict:
    return {
        "city": "lyon",
        "source": "linky-gateway",
        "dataset": "load-curves",
        "format": "linky-tic",
        "entity_id": entity,
        "entity_type": "ElectricityMeter",
        "lineage_id": "batch-1",
        "received_at": T0,
        "row_count": 3,
        "event_times": [T0, T0 + 600_000_000, T0 + 1_200_000_000],
        "columns": [
            column("BASE", "string", ["000000104", "000000105", ""], missing=[2]),
            column("PAPP", "double", [330.0, 420.5, 0.0]),
        ],
        "attributes": {"mode": "historique"},
    }


def anonymised_record() -> dict:
    record = raw_record()
    del record["entity_id"]
    return {**record, "entity_pseudonym": "9f2c", "key_epoch": "2025-11", "policy_version": "1"}


def observation(points: int = 144, entity: str = "9f2c") -> dict:
    return {
        "city": "lyon",
        "domain": "energy",
        "metric": "electricity.active_energy",
        "unit": "kWh",
        "entity_pseudonym": entity,
        "entity_type": "ElectricityMeter",
        "zone": "69381-IRIS-0101",
        "position": {"lat": 45.76, "lon": 4.83},
        "start": T0,
        "step_seconds": 600,
        "times": [],
        "values": [0.1 * i for i in range(points)],
        "quality": [],
        "source": "linky-gateway",
        "dataset": "load-curves",
        "lineage_id": "batch-1",
        "key_epoch": "2025-11",
    }


def energy_aggregate() -> dict:
    return {
        "city": "lyon",
        "zone": "69381",
        "carrier": "electricity",
        "sector": "residential",
        "granularity": "PT1H",
        "window_start": T0,
        "window_end": T0 + 3_600_000_000,
        "version": 3,
        "energy_kwh": 1234.5,
        "meter_count": 57,
        "peak_kw": 310.2,
        "largest_share": 0.04,
        "suppressed": False,
        "suppression_reason": None,
        "computed_at": T0 + 7_200_000_000,
    }


def released_aggregate() -> dict:
    """An EnergyAggregateRelease (energy.aggregates.released.v2)."""
    return {
        "city": "lyon",
        "zone": "69381",
        "carrier": "electricity",
        "sector": "residential",
        "granularity": "PT1H",
        "window_start": T0,
        "window_end": T0 + 3_600_000_000,
        "energy_kwh": 1234.5,
        "meter_count": 57,
        "peak_kw": 310.2,
        "suppressed": False,
        "suppression_reason": None,
        "closed_by": "watermark",
        "released_at": T0 + 7_200_000_000,
    }


def dead_letter() -> dict:
    return {
        "stage": "ingest",
        "reason": "bad-checksum",
        "message": "PCOUP checksum",
        "city": "nice",
        "source": "linky",
        "source_topic": None,
        "source_partition": None,
        "source_offset": None,
        "original_key": None,
        "original_value": b"\x02ADSC\t...\x03",
        "failed_at": T0,
    }


SAMPLES_BY_TOPIC = {
    "raw.v1": raw_record,
    "anonymised.v1": anonymised_record,
    "observations.v1": observation,
    "energy.aggregates.v1": energy_aggregate,
    "dlq.v1": dead_letter,
}
