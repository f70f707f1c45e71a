"""One RawRecord through its source's policy: pure, column by column.

``anonymise(record, policy, pseudonymiser)`` returns the AnonymisedRecord and
what was decided (counts only, never values); ``anonymise_by_epoch`` first
splits the record by the key epoch of each row's reading time (epochs.py) and
anonymises each part under its epoch's key. The work per message is one
pseudonym for the entity, one pass per column (per distinct value where values
must be read), and no per-reading Python object.

Decisions, counted in values (a column's present cells, an attribute, the
entity id):

- ``pseudonymised``: identifiers (and the entity id);
- ``generalised``: quasi-identifiers;
- ``kept``: measures (and qualifier columns of kept fields);
- ``removed-free-text``, ``dropped-by-policy``: free-text and drop fields;
- ``dropped-undeclared``: fields and attributes the policy does not name;
- ``removed-ungeneralisable``: quasi-identifier values that could not be read;
- ``removed-by-safety-net``: kept values holding personal data (also counted as
  incidents per detector);
- ``reported-by-safety-net``: kept values of a source that declares no personal
  data in which the net found a place or a person (a street named after someone,
  a position): kept, counted as incidents per detector;
- ``coarsened``: input rows folded into coarser buckets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.anonymise import columns, safety_net
from services.anonymise.coarsen import CoarseningError, coarsen
from services.anonymise.epochs import split_by_epoch
from services.anonymise.generalise import generalise
from services.anonymise.policy import (
    COARSENED_ATTRIBUTE,
    DROP,
    FREE_TEXT,
    IDENTIFIER,
    MEASURE,
    QUASI,
    FieldRule,
    Policy,
    Prefix,
)
from services.privacy.pseudonym import Pseudonymiser
from services.runtime.timeparse import parse_time_column

Column = dict[str, Any]

PSEUDONYMISED = "pseudonymised"
GENERALISED = "generalised"
KEPT = "kept"
REMOVED_FREE_TEXT = "removed-free-text"
DROPPED_BY_POLICY = "dropped-by-policy"
DROPPED_UNDECLARED = "dropped-undeclared"
REMOVED_UNGENERALISABLE = "removed-ungeneralisable"
REMOVED_SAFETY_NET = "removed-by-safety-net"
REPORTED_SAFETY_NET = "reported-by-safety-net"
COARSENED = "coarsened"
DECISIONS = (
    PSEUDONYMISED,
    GENERALISED,
    KEPT,
    REMOVED_FREE_TEXT,
    DROPPED_BY_POLICY,
    DROPPED_UNDECLARED,
    REMOVED_UNGENERALISABLE,
    REMOVED_SAFETY_NET,
    REPORTED_SAFETY_NET,
    COARSENED,
)
_REMOVED = {FREE_TEXT: REMOVED_FREE_TEXT, DROP: DROPPED_BY_POLICY}


class TransformError(Exception):
    """A record the policy cannot be applied to. The message never quotes a value
    nor an undeclared field name (both may be personal data)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class RecordAudit:
    """What was decided for one record."""

    rows: int = 0
    decisions: dict[str, int] = field(default_factory=dict)
    incidents: dict[str, int] = field(default_factory=dict)

    def add(self, decision: str, count: int) -> None:
        if count:
            self.decisions[decision] = self.decisions.get(decision, 0) + count

    def incident(self, counts: dict[str, int]) -> None:
        for name, count in counts.items():
            self.incidents[name] = self.incidents.get(name, 0) + count


@dataclass
class Applied:
    """The policy applied to a record's fields, before any coarsening."""

    entity_pseudonym: str
    entity_type: str | None
    columns: list[Column]
    attributes: dict[str, str]
    audit: RecordAudit


def _check_shape(record: dict[str, Any], policy: Policy) -> None:
    rows = record["row_count"]
    if rows < 0:
        raise TransformError("malformed-record", "row_count is negative")
    for column in record["columns"]:
        kind = column.get("kind")
        if kind not in columns.ARRAY_OF:
            raise TransformError("malformed-record", "a column has an unknown kind")
        length = len(column[columns.ARRAY_OF[kind]])
        missing = column["missing"]
        bad_missing = bool(missing) and (min(missing) < 0 or max(missing) >= rows)
        if length != rows or bad_missing:
            name = column["name"]
            label = repr(name) if name in policy.fields else "an undeclared field"
            raise TransformError(
                "malformed-record",
                f"{label} does not hold one value per row ({rows} rows); "
                "the record was built wrongly upstream",
            )
    times = record.get("event_times") or []
    if times and len(times) != rows:
        raise TransformError("malformed-record", "event_times does not hold one time per row")


def _net(policy: Policy) -> safety_net.Net:
    return safety_net.Net(policy.personal, policy.places)


def _scan(column: Column, audit: RecordAudit, net: safety_net.Net) -> Column:
    """The safety net over a kept column (strings, and numbers that may be identifiers)."""
    kind = column["kind"]
    if kind == "string":
        places = net.searches_places(column["name"])
        found = safety_net.scan(column["strings"], column["missing"], places=places)
    elif kind in ("long", "double"):
        found = safety_net.scan_numbers(columns.typed(column), column["missing"])
    else:
        return column
    if not found:
        return column
    removed, reported = net.split(found)
    audit.add(REMOVED_SAFETY_NET, len(removed))
    audit.add(REPORTED_SAFETY_NET, len(reported))
    audit.incident(safety_net.count(found))
    return columns.with_removed(column, removed)


def _scan_text(text: str, name: str, audit: RecordAudit, net: safety_net.Net) -> bool:
    """The safety net over one value (the entity type); whether it must go."""
    found = safety_net.scan([text], places=net.searches_places(name))
    if not found:
        return False
    removed, reported = net.split(found)
    audit.add(REMOVED_SAFETY_NET, len(removed))
    audit.add(REPORTED_SAFETY_NET, len(reported))
    audit.incident(safety_net.count(found))
    return bool(removed)


def _apply_column(
    column: Column,
    rule: FieldRule | None,
    by_name: dict[str, Column],
    pseudonymise: Pseudonymiser,
    audit: RecordAudit,
    net: safety_net.Net,
) -> list[Column]:
    count = columns.present(column)
    if rule is None:
        audit.add(DROPPED_UNDECLARED, count)
        return []
    if rule.cls == IDENTIFIER:
        audit.add(PSEUDONYMISED, count)
        return [columns.pseudonymised(column, pseudonymise)]
    if rule.cls == MEASURE:
        audit.add(KEPT, count)
        return [_scan(column, audit, net)]
    if rule.cls == QUASI:
        grid_lon = getattr(rule.generalisation, "lon", None)
        lon_column = by_name.get(grid_lon) if grid_lon else None
        if grid_lon and lon_column is None:
            audit.add(REMOVED_UNGENERALISABLE, count)
            return []
        outputs, generalised, removed = generalise(column, rule.generalisation, lon_column)
        audit.add(GENERALISED, generalised)
        audit.add(REMOVED_UNGENERALISABLE, removed)
        if isinstance(rule.generalisation, Prefix):
            outputs = [_scan(out, audit, net) for out in outputs]
        return outputs
    audit.add(_REMOVED[rule.cls], count)
    return []


def _apply_attribute(
    name: str,
    value: str,
    rule: FieldRule | None,
    pseudonymise: Pseudonymiser,
    audit: RecordAudit,
    net: safety_net.Net,
) -> str | None:
    if rule is None:
        audit.add(DROPPED_UNDECLARED, 1)
        return None
    if rule.cls in _REMOVED:
        audit.add(_REMOVED[rule.cls], 1)
        return None
    if rule.cls == IDENTIFIER:
        audit.add(PSEUDONYMISED, 1)
        return pseudonymise(value)
    column = columns.make(name, "string", [value])
    if rule.cls == QUASI:
        outputs, generalised, removed = generalise(column, rule.generalisation)
        audit.add(GENERALISED, generalised)
        audit.add(REMOVED_UNGENERALISABLE, removed)
        if not outputs or outputs[0]["missing"]:
            return None
        column = outputs[0]
        if column["kind"] != "string":
            return repr(columns.typed(column)[0])
    else:
        audit.add(KEPT, 1)
    column = _scan(column, audit, net)
    return None if column["missing"] else column["strings"][0]


def apply_columns(
    record_columns: list[Column], policy: Policy, pseudonymise: Pseudonymiser, audit: RecordAudit
) -> list[Column]:
    """Every column through ``policy``, counted in ``audit``. Row by row independent (a
    value's fate depends on the value and its column's rule only), so the columns of
    many records concatenated give the records' outputs concatenated (columnar.py).
    Columns are cleaned first: nothing hidden at a missing position or in another
    kind's array goes on."""
    record_columns = [columns.cleaned(column) for column in record_columns]
    by_name = {column["name"]: column for column in record_columns}
    net = _net(policy)
    out: list[Column] = []
    for column in record_columns:
        name = column["name"]
        if name in policy.partners:  # a grid's longitude: generalised with its latitude
            if policy.partners[name] not in by_name:
                audit.add(REMOVED_UNGENERALISABLE, columns.present(column))
            continue
        out.extend(_apply_column(column, policy.rule(name), by_name, pseudonymise, audit, net))
    return out


def apply_attributes(
    attributes: dict[str, str], policy: Policy, pseudonymise: Pseudonymiser, audit: RecordAudit
) -> dict[str, str]:
    """The record's attributes through ``policy`` (the ``attributes`` section)."""
    net = _net(policy)
    kept_attributes: dict[str, str] = {}
    for name, value in attributes.items():
        rule = policy.attributes.get(name)
        kept = _apply_attribute(name, value, rule, pseudonymise, audit, net)
        if kept is not None:
            kept_attributes[name] = kept
    return kept_attributes


def kept_entity_type(entity_type: str | None, policy: Policy, audit: RecordAudit) -> str | None:
    """The entity type, or None when the safety net removes it."""
    if entity_type and _scan_text(entity_type, "", audit, _net(policy)):
        return None
    return entity_type


def apply_policy(record: dict[str, Any], policy: Policy, pseudonymise: Pseudonymiser) -> Applied:
    """Every field and attribute of ``record`` through ``policy`` (no coarsening)."""
    _check_shape(record, policy)
    audit = RecordAudit(rows=record["row_count"])
    entity_pseudonym = pseudonymise(record["entity_id"])
    audit.add(PSEUDONYMISED, 1)
    out = apply_columns(record["columns"], policy, pseudonymise, audit)
    attributes = apply_attributes(record.get("attributes", {}), policy, pseudonymise, audit)
    entity_type = kept_entity_type(record.get("entity_type"), policy, audit)
    return Applied(entity_pseudonym, entity_type, out, attributes, audit)


def coarsening_times(record: dict[str, Any], policy: Policy) -> list[int | None]:
    """Per-row times for coarsening (UTC µs, None where unreadable): the event times,
    else the coarsen section's time field. Shared by the per-message and the daily path."""
    rows = record["row_count"]
    times = record.get("event_times") or []
    if len(times) == rows and rows:
        return list(times)
    spec = policy.coarsen.time if policy.coarsen else None
    if spec is None:
        raise TransformError(
            "no-event-time",
            "the record has no event times and the policy's coarsen section names no time "
            "field; declare coarsen.time",
        )
    column = next((c for c in record["columns"] if c["name"] == spec.field), None)
    if column is None:
        raise TransformError("missing-time-field", f"the time field {spec.field!r} is absent")
    if len(columns.typed(column)) != rows:
        raise TransformError("malformed-record", f"{spec.field!r} does not hold one value per row")
    parsed, _ = parse_time_column(columns.cells(column), spec)
    return parsed


def anonymise(
    record: dict[str, Any], policy: Policy, pseudonymise: Pseudonymiser
) -> tuple[dict[str, Any], RecordAudit]:
    """The AnonymisedRecord of ``record`` (avro/AnonymisedRecord.avsc) and its audit."""
    applied = apply_policy(record, policy, pseudonymise)
    audit = applied.audit
    out_columns = applied.columns
    rows = record["row_count"]
    event_times = list(record.get("event_times") or [])
    attributes = applied.attributes
    coarsening = policy.coarsening
    if coarsening is not None and rows:
        times = coarsening_times(record, policy)
        try:
            out_columns, event_times, rows = coarsen(
                out_columns, times, coarsening, policy.timezone
            )
        except CoarseningError as exc:
            raise TransformError("cannot-coarsen", str(exc)) from None
        audit.add(COARSENED, record["row_count"])
        attributes = {**attributes, COARSENED_ATTRIBUTE: coarsening.step}
    return {
        "city": record["city"],
        "source": record["source"],
        "dataset": record["dataset"],
        "format": record["format"],
        "entity_pseudonym": applied.entity_pseudonym,
        "entity_type": applied.entity_type,
        "key_epoch": pseudonymise.epoch,
        "policy_version": policy.version,
        "lineage_id": record["lineage_id"],
        "received_at": record["received_at"],
        "row_count": rows,
        "event_times": event_times,
        "columns": out_columns,
        "attributes": attributes,
    }, audit


def anonymise_by_epoch(
    record: dict[str, Any], policy: Policy, pseudonymiser_of: Callable[[str], Pseudonymiser]
) -> list[tuple[str, dict[str, Any], RecordAudit]]:
    """``(epoch, AnonymisedRecord, audit)`` per key epoch of the record's rows.

    Each row is pseudonymised under the key of its reading's epoch (epochs.py), so
    one meter in one day has one pseudonym whenever it is sent; a record whose rows
    span two months becomes two records. All or nothing: an error in any part
    rejects the whole record, as before.
    """
    _check_shape(record, policy)  # before slicing: malformed rows are never split
    return [
        (epoch, *anonymise(part, policy, pseudonymiser_of(epoch)))
        for epoch, part in split_by_epoch(record, policy)
    ]


def redacted_raw(
    record: dict[str, Any], policy: Policy | None, pseudonymise: Pseudonymiser | None
) -> dict[str, Any]:
    """A RawRecord safe for the dead-letter topic: the policy applied (no coarsening),
    the entity id pseudonymised; with no policy or if that fails, no field at all."""
    base = {
        "city": record["city"],
        "source": record["source"],
        "dataset": record["dataset"],
        "format": record["format"],
        "entity_id": "",
        "entity_type": None,
        "lineage_id": record["lineage_id"],
        "received_at": record["received_at"],
        "row_count": record["row_count"],
        "event_times": list(record.get("event_times") or []),
        "columns": [],
        "attributes": {"anonymise.redacted": "fields removed"},
    }
    if pseudonymise is None:
        return base
    base["entity_id"] = pseudonymise(record["entity_id"])
    if policy is None:
        return base
    try:
        applied = apply_policy(record, policy, pseudonymise)
    except Exception:  # a broken record keeps its metadata only
        return base
    return {
        **base,
        "entity_type": applied.entity_type,
        "columns": applied.columns,
        "attributes": {**applied.attributes, "anonymise.redacted": f"policy {policy.version}"},
    }
