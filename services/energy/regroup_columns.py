"""energy.regrouped.v2 messages cut straight from an ObservationBatch's columns.

Why: on single readings (a thousand meters to a message) the regroup step took
every energy member out of its batch as a dict, gave it its carrier, zone and
sector, and imploded the dicts again into regrouped messages: a dict built, read
and taken apart per reading, about a third of the stage's time. A regrouped
message holds the same columns as the batch it comes from -- members chosen,
three dictionary fields filled in -- so it is cut here from the columns, with the
per-member work done as array operations.

The messages are exactly those :func:`services.energy.regrouped.regrouped_messages`
makes of the members' parts (same members, cuts, dictionaries and order:
tests/unit/test_energy_regroup_columns.py holds the two to it). Only what that
path would take as one part per member is cut here: a member with an unknown
interval (split into parts) sends the batch back to it (None).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from services.energy.readings import UNKNOWN_INTERVAL
from services.energy.regrouped import (
    MEMBER_BYTES,
    MESSAGE_BUDGET,
    READING_BYTES,
    observation_batching,
)
from services.runtime.stage import Emit

# The member strings a part's size counts (regrouped.part_bytes), beside the pseudonym.
_SIZED_WORDS = ("entity_type", "zone", "sector", "key_epoch")


@dataclass(frozen=True)
class CellNames:
    """How the regroup names a member's group and cell (the stage's rules, as data):
    the carrier its metric forces (None: the member's own, else the default), and
    the name of a missing zone or sector."""

    metric_carriers: Mapping[str, str | None]
    default_carrier: str
    unknown: str


class _Words:
    """The words the regrouped members use: the batch's dictionary, deduplicated,
    and the names the regroup fills in; a member's field is an id into it."""

    def __init__(self, dictionary: Sequence[str]):
        self.ids: dict[str, int] = {}
        self.old = np.array([self.id(w) for w in dictionary] + [-1], dtype=np.int64)

    def id(self, word: str) -> int:
        return self.ids.setdefault(word, len(self.ids))

    def words(self) -> list[str]:
        return list(self.ids)


def regrouped_from_columns(
    batch: Mapping[str, Any],
    chosen: Sequence[int],
    *,
    names: CellNames,
    lane_of: Callable[[str], tuple[str, int]],
    topic: str,
) -> list[Emit] | None:
    """The regrouped emits of the ``chosen`` members (screened: batch_screen.py);
    ``lane_of(carrier)`` gives a message's key and partition. None when a chosen
    member holds an unknown interval (the part path splits it)."""
    found = observation_batching()
    lay = found.layout
    members = np.asarray(chosen, dtype=np.int64)
    if _has_unknown_interval(batch, members):
        return None
    words = _Words(batch.get("dictionary") or [])
    fields = {name: _word_ids(batch, name, words, members) for name in lay.dictionary}
    fields["zone"] = _filled(fields["zone"], words, names.unknown)
    fields["sector"] = _filled(fields["sector"], words, names.unknown)
    fields["carrier"] = _carriers(fields["metric"], fields["carrier"], words, names)
    arrays = {name: _array_runs(batch, name, members) for name in lay.arrays}
    sizes = _part_sizes(batch, members, fields, arrays["values"][1], words)
    vocabulary = words.words()
    emits = []
    for carrier_id, rows in _lanes(fields["carrier"]):
        key, partition = lane_of(vocabulary[carrier_id])
        for cut in _cuts(sizes[rows]):
            picked = rows[cut]
            value = _batch(batch, members[picked], picked, fields, arrays, vocabulary)
            readings = int(arrays["values"][1][picked].sum())
            emits.append(
                Emit(topic, key, value, readings=readings, partition=partition, batched=True)
            )
    return emits


def _has_unknown_interval(batch: Mapping[str, Any], members: np.ndarray) -> bool:
    flags = np.asarray(batch.get("quality") or [], dtype=np.int64)
    if not flags.size:
        return False
    counts = np.asarray(batch["quality_counts"], dtype=np.int64)
    owner = np.repeat(np.arange(counts.size), counts)
    chosen = np.zeros(counts.size, dtype=bool)
    chosen[members] = True
    return bool(((flags & UNKNOWN_INTERVAL) != 0)[chosen[owner]].any())


def _word_ids(batch: Mapping[str, Any], name: str, words: _Words, members: np.ndarray):
    """Per chosen member, its ``name`` as a word id (-1: null)."""
    codes = np.asarray(batch.get(name) or [], dtype=np.int64)
    return words.old[codes[members]] if codes.size else np.full(members.size, -1)


def _filled(ids: np.ndarray, words: _Words, name: str) -> np.ndarray:
    """A null or empty name becomes ``name`` (``record.get(field) or name``)."""
    empty = words.ids.get("", -2)
    return np.where((ids < 0) | (ids == empty), words.id(name), ids)


def _carriers(metric: np.ndarray, own: np.ndarray, words: _Words, names: CellNames):
    """The carrier a metric forces, else the member's own, else the default."""
    own = np.where((own < 0) | (own == words.ids.get("", -2)), words.id(names.default_carrier), own)
    forced = np.full(len(words.ids) + len(names.metric_carriers) + 1, -1, dtype=np.int64)
    for metric_name, carrier in names.metric_carriers.items():
        if carrier is not None and metric_name in words.ids:
            forced[words.ids[metric_name]] = words.id(carrier)
    imposed = forced[metric]
    return np.where(imposed >= 0, imposed, own)


def _array_runs(batch: Mapping[str, Any], name: str, members: np.ndarray):
    """(where each chosen member's items start in the batch's array, how many)."""
    counts = np.asarray(batch.get(name + "_counts") or [], dtype=np.int64)
    if not counts.size:
        return np.zeros(members.size, dtype=np.int64), np.zeros(members.size, dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return starts[members], counts[members]


def _part_sizes(batch, members, fields, value_counts, words: _Words) -> np.ndarray:
    """regrouped.part_bytes of every chosen member's part."""
    lengths = np.array([len(w) for w in words.ids] + [0], dtype=np.int64)
    pseudonyms = batch["entity_pseudonym"]
    strings = np.fromiter((len(pseudonyms[i] or "") for i in members), np.int64, members.size)
    for name in _SIZED_WORDS:
        strings += lengths[fields[name]]  # -1 (null) reads the trailing 0
    return MEMBER_BYTES + 4 * strings + READING_BYTES * value_counts


def _lanes(carriers: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """The chosen members' rows per carrier, carriers in first-seen order."""
    ids, first = np.unique(carriers, return_index=True)
    return [(int(c), np.flatnonzero(carriers == c)) for c in ids[np.argsort(first)]]


def _cuts(sizes: np.ndarray) -> list[slice]:
    """A lane's messages: each takes members while they fit in MESSAGE_BUDGET (a
    member past it alone), as regrouped_messages cuts them."""
    ends = np.concatenate(([0], np.cumsum(sizes)))
    cuts, at = [], 0
    while at < sizes.size:
        stop = int(np.searchsorted(ends, ends[at] + MESSAGE_BUDGET, side="right")) - 1
        stop = max(stop, at + 1)
        cuts.append(slice(at, stop))
        at = stop
    return cuts


def _batch(batch, members, rows, fields, arrays, vocabulary) -> dict[str, Any]:
    """One regrouped ObservationBatch: the batch's shared fields, the members'
    scalars and arrays, their words re-coded into a dictionary of their own in the
    order implode writes it (fields in turn, members in order)."""
    lay = observation_batching().layout
    out: dict[str, Any] = {name: batch.get(name) for name in lay.shared}
    index = members.tolist()
    for name in lay.scalars:
        column = batch[name]
        out[name] = [column[i] for i in index]
    ids = np.stack([fields[name][rows] for name in lay.dictionary])
    used = ids[ids >= 0]
    seen, first = np.unique(used, return_index=True)
    order = seen[np.argsort(first)]
    recode = np.full(len(vocabulary) + 1, -1, dtype=np.int64)
    recode[order] = np.arange(order.size)
    for name, codes in zip(lay.dictionary, recode[ids].tolist(), strict=True):
        out[name] = codes
    out["dictionary"] = [vocabulary[i] for i in order.tolist()]
    for name in lay.arrays:
        starts, counts = arrays[name]
        items = batch.get(name) or []
        taken = zip(starts[rows].tolist(), counts[rows].tolist(), strict=True)
        out[name] = list(chain.from_iterable(items[s : s + n] for s, n in taken))
        out[name + "_counts"] = counts[rows].tolist()
    return out
