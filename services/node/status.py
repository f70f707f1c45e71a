"""What `citeplus status` shows: per service, health, throughput, lag, dead
letters and restarts, from the supervisor's state and each /metrics endpoint.

Kafka's own lines (brokers, under-replicated partitions) come from
services/node/kafka_health.py, printed under this table. Several workers of a
stage belong here, one row each with the partitions it holds (the supervisor's
state and the worker's /metrics), so that the table stays the one place that
says what runs where."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from services.node.supervisor import split_label
from services.runtime.config import NodeConfig


@dataclass
class Sample:
    """Counters of one service at one instant."""

    at: float
    healthy: bool | None
    records_in: float = 0.0
    records_out: float = 0.0
    readings_out: float = 0.0
    dead_letters: float = 0.0
    lag: float = 0.0
    dead_letter_reasons: dict[str, float] = field(default_factory=dict)
    dropped_attributes: dict[str, float] = field(default_factory=dict)  # city/source -> count


def endpoint(
    node: NodeConfig, service: str, workers: Mapping[str, int] | None = None
) -> str | None:
    """Where ``service`` (a worker label: ``anonymise#1`` is anonymise's second worker)
    serves /metrics; ``workers``: how many workers each service runs (the supervisor
    state's ``workers``; 1 when absent).

    One ingest worker is read on the HTTP port, as before; several share that port,
    where whichever worker the kernel picks answers, so each is read on its own
    metrics port. None for an ingest worker beyond the count (nothing serves it)."""
    name, index = split_label(service)
    count = (workers or {}).get(name, 1)
    if name == "ingest" and count <= 1:
        return f"http://127.0.0.1:{node.ingest.port}" if index == 0 else None
    return f"http://{node.metrics.host}:{node.metrics_port(name, index)}"


def parse_metrics(text: str) -> Sample:
    sample = Sample(at=time.monotonic(), healthy=None)
    for family in text_string_to_metric_families(text):
        for metric in family.samples:
            name, value = metric.name, metric.value
            if name in ("citeplus_records_in_total", "citeplus_api_requests_total"):
                sample.records_in += value  # the api's "in" is the requests it answered
            elif name == "citeplus_records_out_total" and not metric.labels.get(
                "topic", ""
            ).startswith("dlq"):
                sample.records_out += value
            elif name == "citeplus_readings_out_total":
                sample.readings_out += value
            elif name == "citeplus_dead_letters_total":
                sample.dead_letters += value
                reason = metric.labels.get("reason", "?")
                sample.dead_letter_reasons[reason] = (
                    sample.dead_letter_reasons.get(reason, 0) + value
                )
            elif name == "citeplus_consumer_lag":
                sample.lag += value
            elif name == "citeplus_normalise_dropped_attributes_total":
                where = f"{metric.labels.get('city', '?')}/{metric.labels.get('source', '?')}"
                sample.dropped_attributes[where] = value
    return sample


def sample_service(
    node: NodeConfig,
    service: str,
    timeout: float = 2.0,
    workers: Mapping[str, int] | None = None,
) -> Sample | None:
    """The counters and health of ``service`` (a worker label) now; None when it does
    not answer. ``workers`` as for :func:`endpoint`."""
    base = endpoint(node, service, workers)
    if base is None:
        return None
    try:
        metrics = httpx.get(f"{base}/metrics", timeout=timeout)
        health = httpx.get(f"{base}/healthz", timeout=timeout)
    except httpx.HTTPError:
        return None
    sample = parse_metrics(metrics.text)
    sample.healthy = health.status_code == 200
    return sample


def rate(new: Sample | None, old: Sample | None, attribute: str) -> float | None:
    if new is None or old is None or new.at <= old.at:
        return None
    return max(0.0, (getattr(new, attribute) - getattr(old, attribute)) / (new.at - old.at))


def render_status(
    services: list[str],
    supervisor: dict,
    now: dict[str, Sample | None],
    before: dict[str, Sample | None],
) -> str:
    states = {s["name"]: s for s in supervisor.get("services", [])}
    header = (
        f"{'service':18} {'state':11} {'pid':>7} {'health':8} {'in/s':>9} {'out/s':>9} "
        f"{'readings/s':>11} {'lag':>8} {'dead':>6} {'restarts':>8}"
    )
    lines = [header, "-" * len(header)]
    for name in services:
        state = states.get(name, {})
        sample = now.get(name)
        if state.get("pid"):
            status = "running"
        elif state.get("next_start_at"):
            status = "restarting"
        else:
            status = "stopped"
        health = "-" if sample is None else ("ok" if sample.healthy else "failing")

        def fmt(value: float | None, digits: int = 0) -> str:
            return "-" if value is None else f"{value:,.{digits}f}"

        lines.append(
            f"{name:18} {status:11} {state.get('pid') or '-':>7} {health:8} "
            f"{fmt(rate(sample, before.get(name), 'records_in')):>9} "
            f"{fmt(rate(sample, before.get(name), 'records_out')):>9} "
            f"{fmt(rate(sample, before.get(name), 'readings_out')):>11} "
            f"{fmt(None if sample is None else sample.lag):>8} "
            f"{fmt(None if sample is None else sample.dead_letters):>6} "
            f"{state.get('restarts', 0):>8}"
        )
        if sample is not None and sample.dropped_attributes:
            lines.append(_dropped_attributes_line(sample.dropped_attributes))
        if state.get("last_exit") not in (None, 0) and status != "running":
            lines.append(
                f"{'':18} last exit {state['last_exit']}: "
                + " | ".join(state.get("last_log_lines", [])[-2:])[:160]
            )
    return "\n".join(lines)


def _dropped_attributes_line(counts: dict[str, float]) -> str:
    """Sources whose entities carry attributes the vocabulary does not know."""
    worst = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    shown = ", ".join(f"{where} {count:,.0f}" for where, count in worst[:5])
    more = f" (+{len(worst) - 5} sources)" if len(worst) > 5 else ""
    return (
        f"{'':18} attributes not in the vocabulary, not published: {shown}{more} "
        "(names: citeplus logs normalise)"
    )
