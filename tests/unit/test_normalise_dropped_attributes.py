"""Dropped attributes are counted per source (Prometheus), logged once per
(source, attribute), follow the batch's transaction, and show in `citeplus status`."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, generate_latest

from services.node.status import Sample, parse_metrics, render_status
from services.normalise.dropped_attributes import DroppedAttributes


def counts(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    sample = parse_metrics(generate_latest(registry).decode())
    return {tuple(k.split("/")): v for k, v in sample.dropped_attributes.items()}


def test_counted_per_source_at_commit_and_logged_once(caplog):
    registry = CollectorRegistry()
    dropped = DroppedAttributes(registry)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):  # three records of the same source, one batch
            dropped.end_record()
            dropped.note("angers", "air", ["PM2_5", "vendorIndex"])
        dropped.end_record()
        dropped.note("lyon", "noise", ["LAeq_night"])
        assert counts(registry) == {}  # nothing before the commit
        dropped.commit()
        dropped.end_record()
        dropped.note("angers", "air", ["PM2_5"])
        dropped.commit()
    assert counts(registry) == {("angers", "air"): 7.0, ("lyon", "noise"): 1.0}
    logged = [r.attribute for r in caplog.records if hasattr(r, "attribute")]
    assert sorted(logged) == ["LAeq_night", "PM2_5", "vendorIndex"]  # once each
    assert "deploy/sdm" in caplog.records[0].getMessage()


def test_a_failed_record_or_an_aborted_batch_counts_nothing():
    registry = CollectorRegistry()
    dropped = DroppedAttributes(registry)
    dropped.end_record()
    dropped.note("angers", "air", ["PM2_5"])
    dropped.end_record(failed=True)  # the record went to the dead letters
    dropped.note("angers", "air", ["PM2_5", "x"])
    dropped.abort()
    dropped.commit()
    assert counts(registry) == {}
    dropped.note("angers", "air", ["PM2_5"])
    dropped.commit()
    assert counts(registry) == {("angers", "air"): 1.0}


def test_status_shows_the_sources_that_drop_attributes():
    sample = Sample(at=1.0, healthy=True, dropped_attributes={"angers/air": 7, "lyon/noise": 1})
    supervisor = {"services": [{"name": "normalise", "pid": 42}]}
    table = render_status(["normalise"], supervisor, {"normalise": sample}, {})
    line = table.splitlines()[-1]
    assert "not in the vocabulary" in line
    assert line.index("angers/air 7") < line.index("lyon/noise 1")
    quiet = Sample(at=1.0, healthy=True)
    assert "vocabulary" not in render_status(["normalise"], supervisor, {"normalise": quiet}, {})


def test_structural_columns_are_not_counted_as_unknown_attributes():
    """Nice's meters as anonymise sends them coarsened to the day: `zone` and `sector`
    are the mapping's own fields and `coarsened_rows` is anonymise's; counting them as
    unknown attributes raised a false alarm in `citeplus status` on every record."""
    from services.runtime.cities import load_cities
    from services.runtime.paths import CITIES_DIR
    from testkit.normalise import normaliser, record

    rec = record(
        "nice",
        "compteurs-communicants",
        {
            "totalActiveEnergyImport": [121723.531],
            "totalActiveEnergyImport@unitCode": ["KWH"],
            "totalActiveEnergyImport@observedAt": ["2025-01-12T23:00:00Z"],
            "phaseType": ["threePhase"],
            "zone": ["060880106"],
            "sector": ["professional"],
            "coarsened_rows": [144],
        },
        entity_type="ThreePhaseAcMeasurement",
        attributes={"anonymise.coarsened": "P1D"},
        event_times=[1_736_722_800_000_000],
    )
    outcome = normaliser(*load_cities(CITIES_DIR).values()).normalise(rec, {}.get)
    assert outcome.dropped_attributes == []
    rec["columns"].append(dict(rec["columns"][-1], name="vendorIndex"))
    outcome = normaliser(*load_cities(CITIES_DIR).values()).normalise(rec, {}.get)
    assert outcome.dropped_attributes == ["vendorIndex"]
